/**
 * `npm start`: three musicians on this machine (loopback only, memory
 * storage) discover each other, exchange catalogs and run a distributed
 * query, narrating each step with its timing.
 */
import { createNewPiecePlease, type NewPiecePlease } from 'new-piece-please'

const t0 = performance.now()
let last = t0
function say (text: string): void {
  const now = performance.now()
  console.log(`[${(now - t0).toFixed(0).padStart(5)} ms | +${(now - last).toFixed(0).padStart(4)} ms] ${text}`)
  last = now
}

function companionsOf (npp: NewPiecePlease, count: number): Promise<void> {
  return new Promise(resolve => {
    const check = async (): Promise<void> => {
      if ((await npp.getCompanions()).length >= count) {
        npp.removeEventListener('db:discovered', onDiscovered)
        resolve()
      }
    }
    const onDiscovered = (): void => { void check() }
    npp.addEventListener('db:discovered', onDiscovered)
    void check()
  })
}

say('starting three peers: ana, ben and cai (libp2p over TCP on 127.0.0.1, OrbitDB on Helia)')
const names = ['ana', 'ben', 'cai'] as const
const peers = await Promise.all(names.map(async username => await createNewPiecePlease({ storage: 'memory', username })))
const [ana, ben, cai] = peers as [NewPiecePlease, NewPiecePlease, NewPiecePlease]
const name = (peerId: string): string => names[peers.findIndex(p => p.peerId === peerId)] ?? peerId
peers.forEach((npp, i) => { say(`${names[i]} is ${npp.peerId} on ${npp.getMultiaddrs()[0]}`) })

await ana.addNewPiece('QmNR2n4zywCV61MeMLB6JwPueAPqheqpfiA4fLPMxouEmQ', 'Piano', { title: 'Clair de lune', composer: 'Debussy' })
await ana.addNewPiece('QmYkZ4yi7BbxUGfPmcNF2xHXMbvi8cu9pXbZNgzXHzbL8F', 'Harpsichord', { title: 'Goldberg Variations', composer: 'Bach' })
await ben.addNewPiece('QmdoQ1k7Vf8Wv3VskVwX8hmj1C7Y4hu3TdUZqzEhFT1gFJ', 'Piano', { title: 'Gymnopédie No. 1', composer: 'Satie' })
await ben.addNewPiece('QmWj1wbm6Rqs6JNX2Uh7s6ZL3vkJhnAcUnUNxSdjcmgrWP', 'Violin', { title: 'Partita No. 2', composer: 'Bach' })
await cai.addNewPiece('QmZ8VDu7hW6YXwwJ4FjcYHCJHLAp6kEKhwcS7tDMv5H3Rv', 'Piano', { title: 'Nocturne Op. 9 No. 2', composer: 'Chopin' })
await cai.incrementPracticeCounter('QmZ8VDu7hW6YXwwJ4FjcYHCJHLAp6kEKhwcS7tDMv5H3Rv', 3)
say('each catalogued their pieces (ana 2, ben 2, cai 1); cai practised the Nocturne 3 times')

let t = performance.now()
const anaBen = Promise.all([companionsOf(ana, 1), companionsOf(ben, 1)])
await ben.connectToPeer(ana.getMultiaddrs()[0]!)
say('ben dialed ana; each sends the address of its user database to the other\'s peer-id topic')
await anaBen
say(`ana and ben validated each other's profile and replicated catalogs: companions in ${(performance.now() - t).toFixed(0)} ms`)

t = performance.now()
const all = Promise.all([companionsOf(ana, 2), companionsOf(ben, 2), companionsOf(cai, 2)])
await cai.connectToPeer(ana.getMultiaddrs()[0]!)
await cai.connectToPeer(ben.getMultiaddrs()[0]!)
await all
say(`cai joined and all three are companions of each other in ${(performance.now() - t).toFixed(0)} ms`)

t = performance.now()
const { results, sources } = await ana.queryCatalog({ instrument: 'Piano' })
say(`ana searched every catalog for Piano pieces in ${(performance.now() - t).toFixed(1)} ms:`)
for (const piece of results) console.log(`      ${String(piece.title).padEnd(22)} ${String(piece.composer).padEnd(8)} from ${name(piece.owner)}`)
console.log(`      sources: ${sources.map(s => `${name(s.owner)} ${s.status} (${s.count})`).join(', ')}`)

t = performance.now()
const caiGone = new Promise(resolve => {
  ana.addEventListener('companion:offline', (e) => { if (e.detail.nodeId === cai.peerId) resolve(undefined) })
})
await cai.stop()
await caiGone
say('cai went offline (ana noticed)')
const offline = await ana.queryCatalog({ composer: 'Chopin' })
say(`ana's search still finds cai's Chopin from the replica in ${(performance.now() - t).toFixed(0)} ms: ${offline.results.map(r => r.title).join(', ')} (cai online: ${String(offline.sources.find(s => s.owner === cai.peerId)?.online)})`)

await Promise.all([ana.stop(), ben.stop()])
say('all peers stopped. Done.')
