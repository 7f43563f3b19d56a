import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { MultiaddrConnection } from '@libp2p/interface'
import { inboundGate, StalledUpgradeError, type InboundGateInit } from '../../../src/peering/inbound-gate.ts'
import { crowdConnectionLimits } from '../../../src/peering/crowd.ts'
import { NODE_CONNECTION_LIMITS } from '../../../src/platform/node.ts'
import { BROWSER_CONNECTION_LIMITS } from '../../../src/platform/browser.ts'

/** A raw inbound connection from `host`: closes (and says so) when aborted. */
function conn (host: string, port = Math.floor(Math.random() * 60_000) + 1024, tail = ''): MultiaddrConnection & { aborted?: Error, close(): void } {
  const c = Object.assign(new EventTarget(), {
    remoteAddr: multiaddr(`/ip4/${host}/tcp/${port}${tail}`),
    status: 'open',
    aborted: undefined as Error | undefined,
    abort (err: Error) { c.aborted = err; c.close() },
    close () { c.status = 'closed'; c.dispatchEvent(new Event('close')) }
  })
  return c as any
}

const LIMITS: InboundGateInit = { pendingPerHost: 2, maxPending: 3, connectionsPerHost: 2, stalledAfter: 60_000 }

describe('inboundGate', () => {
  it('refuses a connection beyond the pending limit of its address while the others are fresh; other addresses still get in', async () => {
    const gate = inboundGate(LIMITS)
    assert.equal(await gate.denyInboundConnection!(conn('10.0.0.1')), false)
    assert.equal(await gate.denyInboundConnection!(conn('10.0.0.1')), false)
    assert.equal(await gate.denyInboundConnection!(conn('10.0.0.1')), true)
    assert.equal(await gate.denyInboundConnection!(conn('10.0.0.2')), false)
    // three pending in all
    assert.equal(await gate.denyInboundConnection!(conn('10.0.0.3')), true)
    assert.deepEqual(gate.stats(), { refused: 2, dropped: 0, pending: 3 })
  })

  it('drops the oldest stalled connection of the address to make room, not a newcomer', async () => {
    const gate = inboundGate({ ...LIMITS, stalledAfter: 0 })
    const [first, second] = [conn('10.0.0.1'), conn('10.0.0.1')]
    const other = conn('10.0.0.2')
    for (const c of [other, first, second]) assert.equal(await gate.denyInboundConnection!(c), false)
    const third = conn('10.0.0.1')
    assert.equal(await gate.denyInboundConnection!(third), false)
    assert.ok((first.aborted as unknown) instanceof StalledUpgradeError)
    assert.equal(first.aborted?.name, 'StalledUpgradeError')
    assert.equal(other.aborted, undefined, 'older, but from another address')
    assert.equal(second.aborted, undefined)
    // all addresses together: the oldest of any address goes
    assert.equal(await gate.denyInboundConnection!(conn('10.0.0.3')), false)
    assert.ok((other.aborted as unknown) instanceof StalledUpgradeError)
    assert.deepEqual(gate.stats(), { refused: 0, dropped: 2, pending: 3 })
  })

  it('frees the slot of a connection that upgraded or closed; counts open connections per address until they close', async () => {
    const gate = inboundGate(LIMITS)
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const [a, b] = [conn('10.0.0.1'), conn('10.0.0.1')]
    await gate.denyInboundConnection!(a)
    await gate.denyInboundConnection!(b)
    assert.equal(await gate.denyInboundUpgradedConnection!(peer, a), false)
    assert.equal(await gate.denyInboundUpgradedConnection!(peer, b), false)
    assert.equal(gate.stats().pending, 0)
    // two open from 10.0.0.1: a third is refused until one closes
    assert.equal(await gate.denyInboundConnection!(conn('10.0.0.1')), true)
    a.close()
    const c = conn('10.0.0.1')
    assert.equal(await gate.denyInboundConnection!(c), false)
    c.close()
    assert.equal(gate.stats().pending, 0)
  })

  it('counts a relayed connection against its peer, not the relay\'s address everybody behind the relay shares', async () => {
    const gate = inboundGate(LIMITS)
    const [relay, ...remotes] = await Promise.all(Array.from({ length: 4 }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
    const relayed = remotes.map(r => conn('10.0.0.9', 4001, `/p2p/${relay}/p2p-circuit/p2p/${r}`))
    assert.deepEqual(await Promise.all(relayed.slice(0, 3).map(async c => await gate.denyInboundConnection!(c))), [false, false, false])
    // the total still applies
    assert.equal(await gate.denyInboundConnection!(conn('10.0.0.9', 4001, `/p2p/${relay}/p2p-circuit/p2p/${relay}`)), true)
  })

  it('asks the inner gater first, and has only the other methods it has (a browser\'s libp2p fills in its own dial filter otherwise)', async () => {
    const bare = inboundGate(LIMITS)
    assert.equal(bare.denyDialMultiaddr, undefined)
    const inner = { denyDialMultiaddr: () => true, denyInboundConnection: () => true }
    const gate = inboundGate(LIMITS, inner)
    assert.equal(await gate.denyDialMultiaddr!(multiaddr('/ip4/10.0.0.1/tcp/1')), true)
    assert.equal(await gate.denyInboundConnection!(conn('10.0.0.1')), true)
    assert.equal(gate.stats().pending, 0)
  })

  it('limits for a crowd: as many per address as peers expected there, libp2p\'s own pending limit above the gate\'s', () => {
    for (const platform of [NODE_CONNECTION_LIMITS, BROWSER_CONNECTION_LIMITS]) {
      const { connectionManager, gate } = crowdConnectionLimits(64, platform)
      assert.equal(gate.pendingPerHost, 64)
      assert.equal(connectionManager.inboundConnectionThreshold, 64)
      assert.ok(gate.maxPending >= gate.pendingPerHost)
      assert.ok(connectionManager.maxIncomingPendingConnections! > gate.maxPending)
      assert.ok(gate.stalledAfter < connectionManager.inboundUpgradeTimeout!)
    }
    const node = crowdConnectionLimits(64, NODE_CONNECTION_LIMITS)
    assert.ok(node.gate.connectionsPerHost < node.connectionManager.maxConnections!, 'on a Node peer one address cannot take every connection slot')
    // a school behind one address on a relay: all 256 at once
    assert.equal(crowdConnectionLimits(256, NODE_CONNECTION_LIMITS).gate.maxPending, 256)
  })
})
