/**
 * Keepers (issue 11): a peer's catalog reaches a companion it was never
 * online with at the same time, through an always-on keeper; deny by
 * default; and a keeper is never trusted for who owns which catalog.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { peer, nextEvent, until, tempDir } from '../helpers/peers.ts'
import { createNewPiecePlease, KeeperRefusedError, type NewPiecePlease } from '../../src/index.ts'
import { LOOPBACK } from '../helpers/peers.ts'

/** `who` holds `count` pieces of `owner` played on `instrument` (in its replica, or its own catalog). */
async function holds (who: NewPiecePlease, owner: string, instrument: string, count: number): Promise<void> {
  const n = async (): Promise<number> => (await who.queryCatalog({ instrument }, { timeout: 2000 })).results.filter(r => r.owner === owner).length
  await until(who, 'catalog:update', async () => await n() === count, 20_000)
}

describe('keepers', () => {
  it('A writes and goes offline; B starts afterwards and, through the keeper alone, finds A and searches A\'s latest catalog', async () => {
    const keeper = await peer({ username: 'keeper', keeper: { open: true } })
    const keepers = [keeper.getMultiaddrs()[0]!]
    const dirA = await tempDir()
    const a = await createNewPiecePlease({ directory: dirA, listen: LOOPBACK, username: 'ada', keepers })
    const aId = a.peerId
    try {
      const registered = nextEvent(a, 'keeper:registered', s => s.peerId === keeper.peerId)
      await a.addNewPiece('QmKept1', 'Oboe')
      await registered
      await a.addNewPiece('QmKept2', 'Oboe')
      await a.addNewPiece('QmKeptLatest', 'Oboe', { title: 'written last' })
      // the keeper holds all of it before A goes
      await holds(keeper, aId, 'Oboe', 3)
      assert.deepEqual(a.keepers().map(k => [k.peerId, k.registered]), [[keeper.peerId, true]])
    } finally {
      await a.stop()
    }

    // B has never met A, and A is offline
    const b = await peer({ username: 'bea', keepers })
    const introduced = await nextEvent(b, 'db:discovered', c => c.nodeId === aId, 20_000)
    assert.equal(introduced.introducedBy, keeper.peerId)
    await holds(b, aId, 'Oboe', 3)
    const { results, sources } = await b.queryCatalog({ hash: 'QmKeptLatest' })
    assert.deepEqual(results.map(r => [r.owner, r.title]), [[aId, 'written last']])
    const source = sources.find(s => s.owner === aId)
    assert.equal(source?.status, 'ok', 'synced through the keeper, with the owner away')
    assert.equal(b.keepers()[0]?.introduced, 1)
  })

  it('denies by default: a peer not on the allowlist is refused with a typed reason, and kept once allowed', async () => {
    const keeper = await peer({ username: 'strict-keeper', keeper: { allow: [] } })
    const a = await peer({ username: 'cid', keepers: [keeper.getMultiaddrs()[0]!] })
    const refused = await nextEvent(a, 'keeper:refused', s => s.peerId === keeper.peerId)
    assert.ok(refused.error instanceof KeeperRefusedError)
    assert.equal(refused.error.reason, 'not-allowed')
    assert.equal(a.keepers()[0]?.refused, 'not-allowed')
    assert.deepEqual(keeper.keeperService?.kept(), [])
    // its announcement does not make it a kept user either
    assert.deepEqual(await keeper.getCompanions(), [])

    keeper.keeperService?.allow(a.peerId)
    keeper.keeperService?.allow(a.peerId) // idempotent
    assert.deepEqual(keeper.keeperService?.allowlist(), [a.peerId])
    // at the next connection (the peer relinks to its keeper) it is kept
    const registered = nextEvent(a, 'keeper:registered', s => s.peerId === keeper.peerId, 20_000)
    await keeper.libp2p.hangUp(a.libp2p.peerId)
    await registered
    assert.deepEqual(keeper.keeperService?.kept().map(k => k.nodeId), [a.peerId])
  })

  it('a keeper that lies about who owns a catalog is not believed: the profile must prove its peer', async () => {
    const [a, c] = await Promise.all([peer({ username: 'dot' }), peer({ username: 'eli' })])
    const liar = await peer({ username: 'liar', keeper: { open: true } })
    // a profile of the liar's own that names C, over the liar's catalog: it
    // has C's name, but only C's key could sign its proof
    await liar.databases.user.put('nodeId', c.peerId)
    const service = liar.keeperService as any
    service.kept = () => [
      { nodeId: c.peerId, address: liar.databases.user.address, listed: true },
      // honest A's profile as if it were C's, and C's as A's
      { nodeId: c.peerId, address: a.databases.user.address, listed: true },
      { nodeId: a.peerId, address: c.databases.user.address, listed: true }
    ]
    // the blocks are there to be read: A and C are linked to the liar
    await a.connectToPeer(liar.getMultiaddrs()[0]!)
    await c.connectToPeer(liar.getMultiaddrs()[0]!)
    const b = await peer({ username: 'fay', keepers: [liar.getMultiaddrs()[0]!] })
    await nextEvent(b, 'keeper:introduced', s => s.peerId === liar.peerId, 30_000)
    assert.deepEqual(await b.getCompanions(), [], 'neither swapped profile was taken')
    assert.equal(b.keepers()[0]?.introduced, 0)
  })
})
