/**
 * Peers find their way back to their hub and to each other: a relay that
 * restarts, a relay that is down when a peer starts, and crowds behind one
 * address (every peer here is on 127.0.0.1, as a class behind a school NAT).
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { relay, tcpOf } from '../helpers/relay.ts'
import { RelayUnavailableError, type NewPiecePlease } from '../../src/index.ts'
import { peer, tempDir, nextEvent } from '../helpers/peers.ts'

/** Resolve once `p` has a connection to `peerId` (checked on every peer:connect, bounded). */
async function connectedTo (p: NewPiecePlease, peerId: string, ms = 20_000): Promise<void> {
  if (p.getIpfsPeers().includes(peerId)) return
  await nextEvent(p, 'peer:connect', e => e.peerId === peerId, ms)
}

/** Resolve once `p` announces an address through the relay `relayId` (a reservation), bounded. */
async function reservedOn (p: NewPiecePlease, relayId: string, ms = 15_000): Promise<void> {
  const reserved = (): boolean => p.getMultiaddrs().some(m => m.includes(`/p2p/${relayId}/p2p-circuit`))
  const deadline = Date.now() + ms
  while (!reserved()) {
    if (Date.now() > deadline) throw new Error(`no reservation on ${relayId}: ${p.getMultiaddrs().join(', ')}`)
    await new Promise<void>(resolve => {
      const timer = setTimeout(resolve, deadline - Date.now())
      p.libp2p.addEventListener('self:peer:update', () => { clearTimeout(timer); resolve() }, { once: true })
    })
  }
}

describe('hub links', () => {
  it('peers come back to a restarted relay (same key, same port) within seconds, and meet newcomers through it', async () => {
    const keyFile = join(await tempDir(), 'relay.key')
    const first = await relay({ keyFile, listen: ['/ip4/127.0.0.1/tcp/0'] })
    const addr = tcpOf(first)
    const [a, b] = await Promise.all([peer({ relay: addr }), peer({ relay: addr })])
    await Promise.all([connectedTo(a, first.peerId), connectedTo(b, first.peerId)])
    const gone = Promise.all([a, b].map(async p => await nextEvent(p, 'peer:disconnect', e => e.peerId === first.peerId)))
    await first.stop()
    await gone
    // the same multiaddr: same key, same port
    const port = addr.split('/tcp/')[1]!.split('/')[0]!
    const second = await relay({ keyFile, listen: [`/ip4/127.0.0.1/tcp/${port}`] })
    assert.equal(tcpOf(second), addr)
    await Promise.all([connectedTo(a, second.peerId, 15_000), connectedTo(b, second.peerId, 15_000)])
    // and hold a reservation on it again (browsers reach them through it)
    await Promise.all([a, b].map(async p => { await reservedOn(p, second.peerId) }))
    // a newcomer that only knows the relay finds a peer that was there before the restart
    const c = await peer({ relay: addr })
    await nextEvent(c, 'db:discovered', d => d.nodeId === a.peerId, 20_000)
  })

  it('a peer whose relay is down starts with its local data, and links to the relay once it is up', async () => {
    const keyFile = join(await tempDir(), 'relay.key')
    const probe = await relay({ keyFile, listen: ['/ip4/127.0.0.1/tcp/0'] })
    const addr = tcpOf(probe)
    await probe.stop()
    const directory = await tempDir()
    const p = await peer({ relay: addr, storage: 'persistent', directory })
    await p.addNewPiece('QmOffline', 'Piano')
    assert.equal((await p.getPieceByHash('QmOffline'))?.instrument, 'Piano')
    const hubUp = nextEvent(p, 'hub:connected', h => h.peerId === probe.peerId, 20_000)
    const port = addr.split('/tcp/')[1]!.split('/')[0]!
    await relay({ keyFile, listen: [`/ip4/127.0.0.1/tcp/${port}`] })
    await hubUp
    assert.ok(p.getIpfsPeers().includes(probe.peerId))
    assert.deepEqual(p.hubs().map(h => [h.peerId, h.connected]), [[probe.peerId, true]])
  })

  it('requireRelay: true keeps the strict start: no relay, no start', async () => {
    const probe = await relay({ listen: ['/ip4/127.0.0.1/tcp/0'] })
    const addr = tcpOf(probe)
    await probe.stop()
    await assert.rejects(peer({ relay: addr, requireRelay: true, dialTimeout: 2000 }), RelayUnavailableError)
  })

  it('a relay takes a crowd of peers starting at once from one address', async () => {
    const r = await relay({ listen: ['/ip4/127.0.0.1/tcp/0'] })
    const crowd = await Promise.all(Array.from({ length: 10 }, async () => await peer({ relay: tcpOf(r), pubsubDiscovery: false })))
    // libp2p's default refuses a 6th inbound connection per second from one host
    await Promise.all(crowd.map(async p => { await connectedTo(p, r.peerId, 15_000) }))
  })

  it('a peer hears all of 16 peers that share one address (gossipsub does not graylist them)', async () => {
    const hub = await peer({ pubsubDiscovery: true })
    const hubAddr = hub.getMultiaddrs()[0]!
    const discovered = new Set<string>()
    hub.addEventListener('db:discovered', e => { discovered.add(e.detail.nodeId) })
    const crowd = await Promise.all(Array.from({ length: 16 }, async () => await peer({ bootstrap: [hubAddr] })))
    const all = (): boolean => crowd.every(p => discovered.has(p.peerId))
    const deadline = Date.now() + 45_000
    while (!all() && Date.now() < deadline) {
      await nextEvent(hub, 'db:discovered', () => true, deadline - Date.now()).catch(() => {})
    }
    assert.equal(crowd.filter(p => discovered.has(p.peerId)).length, 16)
  })
})
