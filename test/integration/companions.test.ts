import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { Documents, IPFSAccessController } from '@orbitdb/core'
import type { NewPiecePlease } from '../../src/index.ts'
import { peer, befriend, nextEvent, dbCondition } from '../helpers/peers.ts'

describe('three peers on loopback', () => {
  let a: NewPiecePlease, b: NewPiecePlease, c: NewPiecePlease

  before(async () => {
    [a, b, c] = await Promise.all([peer({ username: 'ana' }), peer({ username: 'ben' }), peer({ username: 'cai' })])
    await a.addNewPiece('QmA-piano', 'Piano', { title: 'Nocturne' })
    await a.addNewPiece('QmA-harp', 'Harp')
    await b.addNewPiece('QmB-piano', 'Piano')
    await b.addNewPiece('QmB-violin', 'Violin')
    await c.addNewPiece('QmC-piano', 'Piano')
  })

  it('two peers that connect become each other\'s companions', async (t) => {
    const events: string[] = []
    a.ondbdiscovered = (companion) => { events.push(`callback:${companion.username}`) }
    a.addEventListener('companion:online', (e) => { events.push(`online:${e.detail.username}`) })
    const started = Date.now()
    await befriend(a, b)
    const elapsed = Date.now() - started
    t.diagnostic(`discovery (connect to companion recorded both ways): ${elapsed} ms`)

    const [companion] = await a.getCompanions()
    assert.equal(companion?.nodeId, b.peerId)
    assert.equal(companion?.username, 'ben')
    assert.equal(companion?.pieces, await b.getProfileField('pieces'))
    assert.equal(companion?.address, b.databases.user.address)
    assert.equal(companion?.online, true)
    assert.ok(companion!.multiaddrs.length > 0 && companion!.multiaddrs.every(m => m.startsWith('/ip4/127.0.0.1/')))
    assert.ok(companion!.lastSeen <= Date.now() && companion!.lastSeen > started - 1000)
    assert.deepEqual((await b.getCompanions()).map(x => x.nodeId), [a.peerId])
    assert.ok(events.includes('callback:ben') && events.includes('online:ben'), events.join(','))
    assert.ok(a.getIpfsPeers().includes(b.peerId))
  })

  it('a third peer joins and is found by both', async () => {
    const aSeesC = nextEvent(a, 'db:discovered', x => x.nodeId === c.peerId)
    const bSeesC = nextEvent(b, 'db:discovered', x => x.nodeId === c.peerId)
    const cSeesBoth = Promise.all([
      nextEvent(c, 'db:discovered', x => x.nodeId === a.peerId),
      nextEvent(c, 'db:discovered', x => x.nodeId === b.peerId)
    ])
    await c.connectToPeer(a.getMultiaddrs()[0]!)
    await c.connectToPeer(b.getMultiaddrs()[0]!)
    await Promise.all([aSeesC, bSeesC, cSeesBoth])
    assert.deepEqual((await c.getCompanions()).map(x => x.nodeId).sort(), [a.peerId, b.peerId].sort())
  })

  it('queryCatalog returns every catalog\'s matches with their owners, without duplicates', async (t) => {
    const started = Date.now()
    const { results, sources, complete } = await a.queryCatalog({ instrument: 'Piano' })
    t.diagnostic(`queryCatalog across three peers: ${Date.now() - started} ms`)
    assert.equal(complete, true)
    assert.deepEqual(results.map(r => `${r.owner === a.peerId ? 'a' : r.owner === b.peerId ? 'b' : 'c'}:${r.hash}`).sort(), ['a:QmA-piano', 'b:QmB-piano', 'c:QmC-piano'])
    assert.equal(results.find(r => r.hash === 'QmA-piano')?.title, 'Nocturne')
    assert.deepEqual(sources.map(s => s.status), ['ok', 'ok', 'ok'])
    assert.equal(sources[0]?.owner, a.peerId)

    const fn = await b.queryCatalog(p => p.hash.endsWith('harp'))
    assert.deepEqual(fn.results.map(r => [r.hash, r.owner]), [['QmA-harp', a.peerId]])
    const all = await c.queryCatalog()
    assert.equal(all.results.length, 5)
    assert.equal(new Set(all.results.map(r => `${r.owner}/${r.hash}`)).size, 5)
  })

  it('a companion\'s new piece reaches the others live', async () => {
    const update = nextEvent(a, 'catalog:update', u => u.owner === b.peerId)
    await b.addNewPiece('QmB-new', 'Piano')
    await update
    const { results } = await a.queryCatalog({ hash: 'QmB-new' })
    assert.deepEqual(results.map(r => r.owner), [b.peerId])
  })

  it('sendMessage delivers a JSON object to the peer\'s topic', async () => {
    const received = nextEvent(b, 'message', m => m.from === a.peerId && m.data.hello === 'ben')
    let viaCallback: unknown
    b.onmessage = (m) => { viaCallback = m.data }
    await a.sendMessage(b.peerId, { hello: 'ben' })
    const message = await received
    assert.equal(message.topic, b.peerId)
    assert.deepEqual(viaCallback, { hello: 'ben' })
  })

  it('a peer cannot write another peer\'s databases', async () => {
    const address = a.databases.pieces.address
    const foreign = await b.orbitdb.open<any>(address, { Database: Documents({ indexBy: 'hash' }) })
    await assert.rejects(foreign.put({ hash: 'QmEvil', instrument: 'Kazoo' }), /not allowed to write/)
    const user = await b.orbitdb.open<any>(a.databases.user.address)
    await assert.rejects(user.put('username', 'pwned'), /not allowed to write/)
    assert.equal(await a.getPieceByHash('QmEvil'), undefined)
    assert.equal(await a.getProfileField('username'), 'ana')
    assert.deepEqual(a.databases.pieces.access.write, [a.orbitdb.identity.id])
    assert.deepEqual(a.databases.companions.access.write, [a.orbitdb.identity.id])
  })

  it('an entry forged by another identity is refused when it arrives', async () => {
    // b builds a db with a's name but b's own writer list: a different address, so a never adopts it
    const fake = await b.orbitdb.open<any>('pieces', { Database: Documents({ indexBy: 'hash' }), AccessController: IPFSAccessController({ write: [b.orbitdb.identity.id] }) })
    assert.notEqual(fake.address, a.databases.pieces.address)
    await fake.put({ hash: 'QmFake', instrument: 'Kazoo' })
    assert.equal(await a.getPieceByHash('QmFake'), undefined)
    const { results } = await a.queryCatalog({ hash: 'QmFake' })
    assert.deepEqual(results, [])
  })

  it('counters from two writers merge without losing increments', async () => {
    const { Counters } = await import('../../src/index.ts')
    const writers = IPFSAccessController({ write: [a.orbitdb.identity.id, b.orbitdb.identity.id] })
    const mine: any = await a.orbitdb.open('shared-practice', { type: Counters.type, Database: Counters(), AccessController: writers })
    const joined = dbCondition(mine, 'join', () => mine.peers.size > 0)
    const theirs: any = await b.orbitdb.open(mine.address, { Database: Counters() })
    await joined
    // both increment at the same time, one of them with identical operations
    await Promise.all([mine.increment('QmX'), theirs.increment('QmX'), mine.increment('QmX', 2), theirs.increment('QmY')])
    await Promise.all([
      dbCondition(mine, 'update', async () => (await mine.value('QmX')) === 4 && (await mine.value('QmY')) === 1),
      dbCondition(theirs, 'update', async () => (await theirs.value('QmX')) === 4)
    ])
    assert.equal(await mine.value('QmX'), 4)
    assert.equal(await theirs.value('QmX'), 4)
    assert.equal(await mine.value('QmY'), 1)
    assert.deepEqual(await theirs.all(), { QmX: 4, QmY: 1 })
  })
})
