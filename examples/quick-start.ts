import { createNewPiecePlease } from 'new-piece-please'

// two musicians on this machine (memory storage: nothing is written to disk)
const ana = await createNewPiecePlease({ storage: 'memory', username: 'ana' })
const ben = await createNewPiecePlease({ storage: 'memory', username: 'ben' })

await ana.addNewPiece('QmNR2n4zywCV61MeMLB6JwPueAPqheqpfiA4fLPMxouEmQ', 'Harpsichord', { title: 'Goldberg Variations' })
await ben.addNewPiece('QmRn99VSCVdCWmyQCFFpgvQFgi8R4Hqd4c9UeB1dU4qhcZ', 'Harpsichord')
await ben.incrementPracticeCounter('QmRn99VSCVdCWmyQCFFpgvQFgi8R4Hqd4c9UeB1dU4qhcZ')

// when they connect, each records the other as a companion
const discovered = new Promise(resolve => { ana.addEventListener('db:discovered', resolve, { once: true }) })
await ana.connectToPeer(ben.getMultiaddrs()[0]!)
await discovered

// search both catalogs at once: every result says whose catalog it came from
const { results, sources } = await ana.queryCatalog({ instrument: 'Harpsichord' })
for (const piece of results) {
  console.log(piece.hash, piece.owner === ana.peerId ? 'ana' : 'ben')
}
console.log(sources.map(s => `${s.owner.slice(-6)}: ${s.status}`).join(', '))

await ana.stop()
await ben.stop()
