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
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Level } from 'level'

/** `who` holds `count` pieces of `owner` played on `instrument` (in its replica, or its own catalog). */
async function holds (who: NewPiecePlease, owner: string, instrument: string, count: number): Promise<void> {
  const n = async (): Promise<number> => (await who.queryCatalog({ instrument }, { timeout: 2000 })).results.filter(r => r.owner === owner).length
  await until(who, 'catalog:update', async () => await n() === count, 20_000)
}

/** The keeper `keeper` keeps `count` pieces of `owner` (its replicas are bare logs: it does not search them). */
async function keeps (keeper: NewPiecePlease, owner: string, count: number): Promise<void> {
  const n = (): number | undefined => keeper.keeperService?.kept().find(k => k.peerId === owner)?.pieces
  await until(keeper, 'keeper:kept', () => n() === count, 20_000)
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
      await keeps(keeper, aId, 3)
      assert.deepEqual(a.keepers().map(k => [k.peerId, k.registered]), [[keeper.peerId, true]])
    } finally {
      await a.stop()
    }

    // B has never met A, and A is offline
    const b = await peer({ username: 'bea', keepers, reconnectInterval: 500 })
    const introduced = await nextEvent(b, 'db:discovered', c => c.nodeId === aId, 20_000)
    assert.equal(introduced.introducedBy, keeper.peerId)
    await holds(b, aId, 'Oboe', 3)
    const { results, sources } = await b.queryCatalog({ hash: 'QmKeptLatest' })
    assert.deepEqual(results.map(r => [r.owner, r.title]), [[aId, 'written last']])
    const source = sources.find(s => s.owner === aId)
    assert.equal(source?.status, 'ok', 'synced through the keeper, with the owner away')
    assert.equal(b.keepers()[0]?.introduced, 1)

    // A comes back (same data, new port): B learns where from the keeper and they link directly
    const linked = nextEvent(b, 'companion:online', c => c.nodeId === aId, 20_000)
    const back = await createNewPiecePlease({ directory: dirA, listen: LOOPBACK, keepers })
    try {
      await linked
      assert.ok(b.libp2p.getConnections(back.libp2p.peerId).some(c => c.limits == null), 'a direct connection')
      await back.addNewPiece('QmBackAgain', 'Oboe')
      await holds(b, aId, 'Oboe', 4)
    } finally {
      await back.stop()
    }
  })

  it('quotas: a user whose catalog grows over its quota is dropped, then refused as over-quota', async () => {
    const keeper = await peer({ username: 'small-keeper', keeper: { open: true, maxPiecesPerUser: 2 } })
    const a = await peer({ username: 'gus', keepers: [keeper.getMultiaddrs()[0]!] })
    await a.addNewPiece('QmQuota1', 'Viola')
    await nextEvent(a, 'keeper:registered', s => s.peerId === keeper.peerId)
    await keeps(keeper, a.peerId, 1)
    const dropped = nextEvent(keeper, 'keeper:dropped', d => d.peerId === a.peerId)
    await a.addNewPiece('QmQuota2', 'Viola')
    await a.addNewPiece('QmQuota3', 'Viola')
    assert.equal((await dropped).reason, 'over-quota')
    assert.deepEqual(keeper.keeperService?.kept(), [])
    // asked again (at the next connection), it is refused with the reason
    const refused = nextEvent(a, 'keeper:refused', s => s.peerId === keeper.peerId, 20_000)
    await keeper.libp2p.hangUp(a.libp2p.peerId)
    const { error } = await refused
    assert.equal(error.reason, 'over-quota')
    assert.match(error.message, /3 pieces, over this keeper's 2 per user/)
  })

  it('two keepers: with one gone, the other still brings a catalog; a restarted keeper keeps every replica', async () => {
    const dirK = await tempDir()
    let k1 = await createNewPiecePlease({ directory: dirK, listen: LOOPBACK, keeper: { open: true } })
    const k2 = await peer({ username: 'k2', keeper: { open: true } })
    const k1Addr = k1.getMultiaddrs()[0]!
    const a = await peer({ username: 'hua', keepers: [k1Addr, k2.getMultiaddrs()[0]!] })
    const both = Promise.all([k1.peerId, k2.peerId].map(async id => await nextEvent(a, 'keeper:registered', s => s.peerId === id)))
    await a.addNewPiece('QmTwice', 'Harp')
    await both
    await Promise.all([keeps(k1, a.peerId, 1), keeps(k2, a.peerId, 1)])
    await a.stop()

    // k1 goes away: B, configured with both, gets A's catalog from k2
    await k1.stop()
    const b = await peer({ username: 'ian', keepers: [k1Addr, k2.getMultiaddrs()[0]!] })
    await nextEvent(b, 'db:discovered', c => c.nodeId === a.peerId, 20_000)
    await holds(b, a.peerId, 'Harp', 1)

    // k1 restarts from its directory with A's replicas, while A is still away
    k1 = await createNewPiecePlease({ directory: dirK, listen: LOOPBACK, keeper: { open: true } })
    try {
      // what it keeps is known without opening anything: databases open when wanted
      assert.deepEqual(k1.keeperService?.kept().map(k => [k.peerId, k.pieces]), [[a.peerId, 1]])
      assert.equal(k1.keeperService?.storage().active, 0)
      const opened = nextEvent(k1, 'keeper:activity', d => d.peerId === a.peerId && d.open, 20_000)
      const c = await peer({ username: 'jay', keepers: [k1.getMultiaddrs()[0]!] })
      await nextEvent(c, 'db:discovered', d => d.nodeId === a.peerId, 20_000)
      await opened
      await holds(c, a.peerId, 'Harp', 1)
    } finally {
      await k1.stop()
    }
  })

  it('a kept user\'s databases close once nobody uses them, and open again when a peer wants them', async () => {
    const keeper = await peer({ username: 'idle-keeper', keeper: { open: true, idleTimeout: 300 } })
    const a = await peer({ username: 'kim', keepers: [keeper.getMultiaddrs()[0]!] })
    await a.addNewPiece('QmIdle', 'Lute')
    await nextEvent(a, 'keeper:registered', s => s.peerId === keeper.peerId)
    await keeps(keeper, a.peerId, 1)
    assert.equal(keeper.keeperService?.storage().active, 1, 'open while A is connected')
    const closed = nextEvent(keeper, 'keeper:activity', d => d.peerId === a.peerId && !d.open, 20_000)
    await a.stop()
    await closed
    assert.equal(keeper.keeperService?.storage().active, 0)
    assert.deepEqual(keeper.keeperService?.kept().map(k => [k.peerId, k.pieces]), [[a.peerId, 1]], 'still kept, on disk')

    // a newcomer introduced to A opens A's databases on the keeper, and gets the catalog
    const opened = nextEvent(keeper, 'keeper:activity', d => d.peerId === a.peerId && d.open, 20_000)
    const b = await peer({ username: 'lee', keepers: [keeper.getMultiaddrs()[0]!] })
    await opened
    await holds(b, a.peerId, 'Lute', 1)
  })

  it('a peer the keeper does not serve opens nothing by subscribing to a kept user\'s topics, nor keeps them open', async () => {
    const keeper = await peer({ username: 'guarded-keeper', keeper: { allow: [], idleTimeout: 300 } })
    const a = await peer({ username: 'ola', keepers: [keeper.getMultiaddrs()[0]!] })
    await nextEvent(a, 'keeper:refused', s => s.peerId === keeper.peerId)
    keeper.keeperService?.allow(a.peerId)
    const registered = nextEvent(a, 'keeper:registered', s => s.peerId === keeper.peerId, 20_000)
    await keeper.libp2p.hangUp(a.libp2p.peerId)
    await registered
    const userDb = a.databases.user.address
    const catalog = a.databases.pieces.address
    const closed = nextEvent(keeper, 'keeper:activity', d => d.peerId === a.peerId && !d.open, 20_000)
    await a.stop()
    await closed

    // a stranger links to the keeper and subscribes to A's profile
    const stranger = await peer({ username: 'stranger' })
    await stranger.libp2p.dial(keeper.libp2p.getMultiaddrs()[0]!)
    const seen = (topic: string, from = stranger.peerId): Promise<number> => new Promise(resolve => {
      // heard after the keeper's own listener (added at its start): what it did is done
      const onChange = (evt: CustomEvent<{ peerId: unknown, subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
        if (String(evt.detail.peerId) !== from || !evt.detail.subscriptions.some(s => s.topic === topic && s.subscribe)) return
        keeper.libp2p.services.pubsub.removeEventListener('subscription-change', onChange)
        resolve(keeper.keeperService?.storage().active ?? -1)
      }
      keeper.libp2p.services.pubsub.addEventListener('subscription-change', onChange)
    })
    const strangerSeen = seen(userDb)
    stranger.libp2p.services.pubsub.subscribe(userDb)
    assert.equal(await strangerSeen, 0, 'nothing opened for a peer the keeper does not serve')

    // a peer it serves opens A's databases by subscribing
    const friend = await peer({ username: 'friend' })
    keeper.keeperService?.allow(friend.peerId)
    await friend.libp2p.dial(keeper.libp2p.getMultiaddrs()[0]!)
    const opened = nextEvent(keeper, 'keeper:activity', d => d.peerId === a.peerId && d.open, 20_000)
    const friendSeen = seen(catalog, friend.peerId)
    friend.libp2p.services.pubsub.subscribe(catalog)
    assert.equal(await friendSeen, 1)
    await opened
    // and once it leaves they close, the stranger's subscription keeping nothing open
    const closedAgain = nextEvent(keeper, 'keeper:activity', d => d.peerId === a.peerId && !d.open, 20_000)
    friend.libp2p.services.pubsub.unsubscribe(catalog)
    await closedAgain
    assert.deepEqual(keeper.libp2p.services.pubsub.getSubscribers(userDb).map(String), [stranger.peerId], 'the stranger is still subscribed')
  })

  it('a keeper without saved usage (kept before it was saved) measures its users after start and closes them again', async () => {
    const dirK = await tempDir()
    let k = await createNewPiecePlease({ directory: dirK, listen: LOOPBACK, keeper: { open: true } })
    const a = await peer({ username: 'uma', keepers: [k.getMultiaddrs()[0]!] })
    await a.addNewPiece('QmUpgrade1', 'Sitar')
    await a.addNewPiece('QmUpgrade2', 'Sitar')
    await keeps(k, a.peerId, 2)
    await a.stop()
    await k.stop()
    // what a keeper from before left: no usage saved
    const level = new Level(join(dirK, 'orbitdb', 'shared'))
    await level.open()
    await level.sublevel('npp-keeper-usage').clear()
    await level.close()

    k = await createNewPiecePlease({ directory: dirK, listen: LOOPBACK, keeper: { open: true } })
    try {
      const storage = (): Record<string, number> => k.keeperService?.storage() ?? {}
      await until(k, 'keeper:kept', () => k.keeperService?.kept().find(u => u.peerId === a.peerId)?.pieces === 2, 20_000)
      assert.equal(storage().unmeasured, 0)
      assert.ok((storage().bytes ?? 0) > 0)
      // opened to be measured, closed again: nobody wants them
      await until(k, 'keeper:activity', () => storage().active === 0, 20_000)
    } finally {
      await k.stop()
    }
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
    assert.deepEqual(keeper.keeperService?.kept().map(k => k.peerId), [a.peerId])
  })

  it('deny refuses a peer on an open keeper too, until it is allowed again', async () => {
    const keeper = await peer({ username: 'open-keeper', keeper: { open: true } })
    const a = await peer({ username: 'pia', keepers: [keeper.getMultiaddrs()[0]!] })
    await nextEvent(a, 'keeper:registered', s => s.peerId === keeper.peerId)
    const dropped = nextEvent(keeper, 'keeper:dropped', d => d.peerId === a.peerId)
    await keeper.keeperService?.deny(a.peerId)
    assert.equal((await dropped).reason, 'not-allowed')
    assert.deepEqual(keeper.keeperService?.deniedPeers(), [a.peerId])
    // asked again at the next connection: refused, open keeper or not
    const refused = nextEvent(a, 'keeper:refused', s => s.peerId === keeper.peerId, 20_000)
    await keeper.libp2p.hangUp(a.libp2p.peerId)
    assert.equal((await refused).error.reason, 'not-allowed')
    assert.deepEqual(keeper.keeperService?.kept(), [])

    keeper.keeperService?.allow(a.peerId)
    assert.deepEqual(keeper.keeperService?.deniedPeers(), [])
    const registered = nextEvent(a, 'keeper:registered', s => s.peerId === keeper.peerId, 20_000)
    await keeper.libp2p.hangUp(a.libp2p.peerId)
    await registered
  })

  it('a keeper that lies about who owns a catalog is not believed: the profile must prove its peer', async () => {
    const [a, c] = await Promise.all([peer({ username: 'dot' }), peer({ username: 'eli' })])
    const liar = await peer({ username: 'liar', keeper: { open: true } })
    // a profile of the liar's own that names C, over the liar's catalog: it
    // has C's name, but only C's key could sign its proof
    await liar.databases.user.put('nodeId', c.peerId)
    const service = liar.keeperService as any
    service.kept = () => [
      { peerId: c.peerId, userDb: liar.databases.user.address, listed: true },
      // honest A's profile as if it were C's, and C's as A's
      { peerId: c.peerId, userDb: a.databases.user.address, listed: true },
      { peerId: a.peerId, userDb: c.databases.user.address, listed: true }
    ]
    // the blocks are there to be read: A and C are linked to the liar
    await a.connectToPeer(liar.getMultiaddrs()[0]!)
    await c.connectToPeer(liar.getMultiaddrs()[0]!)
    const b = await peer({ username: 'fay', keepers: [liar.getMultiaddrs()[0]!] })
    await nextEvent(b, 'keeper:introduced', s => s.peerId === liar.peerId, 30_000)
    assert.deepEqual(await b.getCompanions(), [], 'neither swapped profile was taken')
    assert.equal(b.keepers()[0]?.introduced, 0)
  })

  it('a keeper listed in the relay\'s /config counts as a keeper', async () => {
    const keeper = await peer({ username: 'listed-keeper', keeper: { open: true } })
    const addr = keeper.getMultiaddrs()[0]!
    // a relay config naming the keeper (the keeper's node stands in for the relay's)
    const server = createServer((_req, res) => { res.end(JSON.stringify({ peerId: keeper.peerId, multiaddrs: [addr], keepers: [addr, 'not a multiaddr', '/ip4/127.0.0.1/tcp/1'] })) })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/config`
      const a = await peer({ username: 'kai', relay: url })
      await nextEvent(a, 'keeper:registered', st => st.peerId === keeper.peerId, 20_000)
      assert.deepEqual(a.keepers().map(k => k.configured), [addr], 'malformed and peer-less entries are left out')
    } finally {
      server.close()
    }
  })
})
