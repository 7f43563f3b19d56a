import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { cp } from 'node:fs/promises'
import { createServer } from 'node:net'
import { createNewPiecePlease, StorageLockedError, type NewPiecePlease } from '../../src/index.ts'
import { ProcessPeer } from '../helpers/process-peer.ts'
import { peer, tempDir, befriend, nextEvent, until, LOOPBACK } from '../helpers/peers.ts'

describe('offline companions, restarts and reconnects', () => {
  it('a node restarts from its directory with the same peer id, pieces, profile, counters and companions', async () => {
    const dir = await tempDir()
    const friend = await peer({ username: 'friend' })
    await friend.addNewPiece('QmFriend', 'Oboe')

    let npp: NewPiecePlease = await createNewPiecePlease({ directory: join(dir, 'me'), listen: LOOPBACK, username: 'me' })
    const peerId = npp.peerId
    const addresses = { pieces: npp.databases.pieces.address, user: npp.databases.user.address }
    await npp.addNewPiece('QmKeep', 'Cello', { title: 'Kol Nidrei' })
    await npp.addNewPiece('QmGone', 'Cello')
    await npp.deletePieceByHash('QmGone')
    await npp.incrementPracticeCounter('QmKeep', 3)
    await npp.updateProfileField('city', 'Lyon')
    await befriend(npp, friend)
    await npp.stop()

    npp = await createNewPiecePlease({ directory: join(dir, 'me'), listen: LOOPBACK, username: 'ignored-on-restart' })
    try {
      assert.equal(npp.peerId, peerId)
      assert.equal(npp.databases.pieces.address, addresses.pieces)
      assert.equal(npp.databases.user.address, addresses.user)
      assert.deepEqual(await npp.getAllPieces(), [{ hash: 'QmKeep', instrument: 'Cello', title: 'Kol Nidrei' }])
      assert.equal(await npp.getPracticeCount('QmKeep'), 3)
      assert.equal(await npp.getProfileField('username'), 'me')
      assert.equal(await npp.getProfileField('city'), 'Lyon')
      const companions = await npp.getCompanions()
      assert.deepEqual(companions.map(c => [c.nodeId, c.username]), [[friend.peerId, 'friend']])
      // the friend's catalog was replicated and is queryable from disk
      const { results } = await npp.queryCatalog({ instrument: 'Oboe' })
      assert.deepEqual(results.map(r => [r.hash, r.owner]), [['QmFriend', friend.peerId]])
    } finally {
      await npp.stop()
    }
  })

  it('a stopped companion still answers from its replica on time, shows offline, and reconnects when it returns', async () => {
    const dir = await tempDir()
    const me = await peer({ reconnectInterval: 300, queryTimeout: 1500 })
    const start = async (): Promise<NewPiecePlease> => await createNewPiecePlease({ directory: join(dir, 'away'), listen: LOOPBACK })
    let away = await start()
    const awayId = away.peerId
    for (let i = 0; i < 20; i++) await away.addNewPiece(`QmAway${i}`, i % 2 === 0 ? 'Piano' : 'Guitar')
    await befriend(me, away)
    const before = await me.queryCatalog({ instrument: 'Piano' })
    assert.equal(before.results.filter(r => r.owner === awayId).length, 10)

    const offline = nextEvent(me, 'companion:offline', c => c.nodeId === awayId)
    let notFound = 0
    me.oncompanionnotfound = () => { notFound++ }
    await away.stop()
    await offline
    assert.equal(notFound, 1)
    assert.equal((await me.getCompanions())[0]?.online, false)

    const started = Date.now()
    const { results, sources } = await me.queryCatalog({ instrument: 'Piano' })
    const elapsed = Date.now() - started
    assert.ok(elapsed < 1500, `answered within the query timeout (${elapsed} ms)`)
    assert.equal(results.filter(r => r.owner === awayId).length, 10, 'replicated pieces still answer')
    const report = sources.find(s => s.owner === awayId)
    assert.equal(report?.status, 'ok')
    assert.equal(report?.online, false)

    // the companion comes back on a new port: it dials us at start (bootstrap),
    // and our reconnect loop dials it from what it announced
    const online = nextEvent(me, 'companion:online', c => c.nodeId === awayId, 20_000)
    away = await createNewPiecePlease({ directory: join(dir, 'away'), listen: LOOPBACK, bootstrap: [me.getMultiaddrs()[0]!] })
    try {
      assert.equal(away.peerId, awayId)
      await online
      assert.equal((await me.getCompanions())[0]?.online, true)
      // and it sees us as its companion, from its own disk
      assert.deepEqual((await away.getCompanions()).map(c => c.nodeId), [me.peerId])
    } finally {
      await away.stop()
    }
  })

  it('the reconnect interval redials a companion that restarted on its old address', async () => {
    const dir = await tempDir()
    const me = await peer({ reconnectInterval: 200 })
    let away = await createNewPiecePlease({ directory: join(dir, 'away2'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    const awayId = away.peerId
    const port = away.getMultiaddrs()[0]!.split('/')[4]
    await befriend(me, away)
    const offline = nextEvent(me, 'companion:offline', c => c.nodeId === awayId)
    // no memory of us in its peer store either (libp2p would redial a KEEP_ALIVE companion at start)
    await away.libp2p.peerStore.delete(me.libp2p.peerId)
    await away.stop()
    await offline
    // back on the same port with the same key but no memory of us (a fresh
    // directory holding only its datastore), so it will not dial us: only
    // our reconnect interval can bring it back
    await cp(join(dir, 'away2', 'datastore'), join(dir, 'away3', 'datastore'), { recursive: true })
    const online = nextEvent(me, 'companion:online', c => c.nodeId === awayId, 20_000)
    away = await createNewPiecePlease({ directory: join(dir, 'away3'), listen: [`/ip4/127.0.0.1/tcp/${port}`] })
    try {
      assert.equal(away.peerId, awayId)
      await online
      // by our side: libp2p's reconnect queue (companions are tagged KEEP_ALIVE) or our redial round
      assert.ok(me.libp2p.getConnections(away.libp2p.peerId).some(c => c.direction === 'outbound'), 'reconnected by us')
      assert.equal(away.stats.redials, 0, 'it did not dial us')
      assert.ok(me.getIpfsPeers().includes(awayId))
      // and it learns about us again through discovery
      await nextEvent(away, 'db:discovered', c => c.nodeId === me.peerId)
    } finally {
      await away.stop()
    }
  })

  it('after a dropped connection the interval reconnects and the replica catches up with what was written meanwhile', async () => {
    const [me, other] = await Promise.all([peer({ reconnectInterval: 200 }), peer()])
    await befriend(me, other)
    await me.queryCatalog()
    for (let round = 0; round < 2; round++) {
      const offline = nextEvent(me, 'companion:offline', c => c.nodeId === other.peerId)
      await me.libp2p.hangUp(other.libp2p.peerId)
      await offline
      await other.addNewPiece(`QmWhileApart${round}`, 'Bassoon')
      await nextEvent(me, 'companion:online', c => c.nodeId === other.peerId)
      await until(me, 'catalog:update', async () => (await me.queryCatalog({ hash: `QmWhileApart${round}` })).results.length === 1)
    }
    const { results } = await me.queryCatalog({ instrument: 'Bassoon' })
    assert.deepEqual(results.map(r => r.owner), [other.peerId, other.peerId])
  })

  it('a directory in use is refused with StorageLockedError, in this process or another; it opens again once the holder stops or is killed', async () => {
    const dir = await tempDir()
    const first = await createNewPiecePlease({ directory: dir, listen: LOOPBACK })
    await first.addNewPiece('QmMine', 'Lute')
    await assert.rejects(createNewPiecePlease({ directory: dir, listen: LOOPBACK }), StorageLockedError)
    const busyPort = first.getMultiaddrs()[0]!.split('/')[4]
    await first.stop()

    // a start that fails after taking the lock (its port is taken) gives it back
    const squatter = createServer()
    await new Promise<void>(resolve => squatter.listen(Number(busyPort), '127.0.0.1', resolve))
    try {
      await assert.rejects(createNewPiecePlease({ directory: dir, listen: [`/ip4/127.0.0.1/tcp/${busyPort}`] }), (err: any) => !(err instanceof StorageLockedError))
    } finally {
      squatter.close()
    }

    const holder = await ProcessPeer.start({ directory: dir, listen: LOOPBACK })
    await assert.rejects(createNewPiecePlease({ directory: dir, listen: LOOPBACK }), (err: any) => err instanceof StorageLockedError && err.message.includes(dir))
    holder.kill() // no clean stop: the OS releases the lock with the process
    await holder.exited
    const again = await createNewPiecePlease({ directory: dir, listen: LOOPBACK })
    assert.equal(again.peerId, first.peerId)
    assert.equal((await again.getPieceByHash('QmMine'))?.instrument, 'Lute', 'the refused attempts left the data alone')
    await again.stop()
  })
})
