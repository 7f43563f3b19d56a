import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { ProcessPeer } from '../helpers/process-peer.ts'
import { peer, tempDir, nextEvent, LOOPBACK } from '../helpers/peers.ts'

describe('peers in separate OS processes', () => {
  const children: ProcessPeer[] = []
  after(() => { for (const c of children) c.kill() })

  it('discover each other, answer queries, survive a crashed companion, and exit on their own after stop()', async () => {
    const dir = await tempDir()
    const [p1, p2] = await Promise.all([
      ProcessPeer.start({ directory: join(dir, 'p1'), listen: LOOPBACK, username: 'p1' }),
      ProcessPeer.start({ directory: join(dir, 'p2'), listen: LOOPBACK, username: 'p2' })
    ])
    children.push(p1, p2)
    await p1.call('addNewPiece', 'QmP1', 'Piano')
    await p2.call('addNewPiece', 'QmP2', 'Piano')
    await p2.call('addNewPiece', 'QmP2b', 'Drums')

    // two processes become companions
    await p2.call('connectToPeer', p1.multiaddrs[0])
    await Promise.all([
      p1.waitFor(e => e.event === 'db:discovered' && e.detail.nodeId === p2.peerId),
      p2.waitFor(e => e.event === 'db:discovered' && e.detail.nodeId === p1.peerId)
    ])

    // a third peer (this process) joins and is found by both
    const me = await peer({ username: 'me' })
    await me.addNewPiece('QmMe', 'Piano')
    const meSeesBoth = Promise.all([
      nextEvent(me, 'db:discovered', c => c.nodeId === p1.peerId),
      nextEvent(me, 'db:discovered', c => c.nodeId === p2.peerId)
    ])
    await me.connectToPeer(p1.multiaddrs[0]!)
    await me.connectToPeer(p2.multiaddrs[0]!)
    await meSeesBoth
    await Promise.all([
      p1.waitFor(e => e.event === 'db:discovered' && e.detail.nodeId === me.peerId),
      p2.waitFor(e => e.event === 'db:discovered' && e.detail.nodeId === me.peerId)
    ])

    const query = await p1.call('queryCatalog', { instrument: 'Piano' })
    assert.deepEqual(query.results.map((r: any) => `${r.owner}:${r.hash}`).sort(),
      [`${me.peerId}:QmMe`, `${p1.peerId}:QmP1`, `${p2.peerId}:QmP2`].sort())
    assert.equal(query.complete, true)

    // our own search waits for the companions' first sync, so it sees everything
    const ours = await me.queryCatalog({ instrument: 'Piano' })
    assert.equal(ours.results.length, 3)
    assert.equal(ours.complete, true)

    // p2 crashes (no clean stop): p1 and we still answer on time from the replicas
    const offline = nextEvent(me, 'companion:offline', c => c.nodeId === p2.peerId)
    p2.kill()
    assert.notEqual(await p2.exited, 0)
    await offline
    const started = Date.now()
    const { results, sources } = await me.queryCatalog({ instrument: 'Piano' }, { timeout: 2000 })
    assert.ok(Date.now() - started < 2000)
    assert.ok(results.some(r => r.owner === p2.peerId && r.hash === 'QmP2'))
    assert.equal(sources.find(s => s.owner === p2.peerId)?.online, false)

    // a clean stop ends the process by itself: nothing is left holding it open
    await p1.call('stop')
    assert.equal(await p1.exited, 0)
  })
})
