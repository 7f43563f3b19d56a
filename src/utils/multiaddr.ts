/**
 * Multiaddr helpers shared by the library and the relay (which must not load
 * OrbitDB, so nothing here imports it). Tests are by
 * `@multiformats/multiaddr-matcher`, never by substring: `includes('/webrtc')`
 * also matches webrtc-direct, `includes('/ws')` a host name.
 */
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { Circuit, TCP, WebRTC, WebSockets, WebSocketsSecure } from '@multiformats/multiaddr-matcher'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'

/** The multiaddr `value` parses to, or undefined (network input and config files). */
export function tryMultiaddr (value: unknown): Multiaddr | undefined {
  if (typeof value !== 'string' || value.length === 0) return undefined
  try {
    return multiaddr(value)
  } catch {
    return undefined
  }
}

/**
 * The peer id a multiaddr ends with (`…/p2p/<peer id>`), or undefined when it
 * ends otherwise or the id does not parse. In a circuit address
 * (`<relay>/p2p/<relay id>/p2p-circuit/p2p/<peer id>`) that is the peer, not
 * the relay.
 */
export function trailingPeerId (addr: string | Multiaddr): PeerId | undefined {
  const ma = typeof addr === 'string' ? tryMultiaddr(addr) : addr
  const last = ma?.getComponents().at(-1)
  if (last?.name !== 'p2p' || last.value == null) return undefined
  try {
    return peerIdFromString(last.value)
  } catch {
    return undefined
  }
}

/** A WebSocket address (`ws` or `wss`, not through a relay): what a browser can dial itself. */
export function isWebSocket (ma: Multiaddr): boolean {
  return WebSockets.exactMatch(ma) || WebSocketsSecure.exactMatch(ma)
}

/** A plain TCP address (optionally with `/p2p/<id>`), not through a relay. */
export function isTcp (ma: Multiaddr): boolean {
  return TCP.exactMatch(ma)
}

/** A WebRTC address signalled through a relay (`…/p2p-circuit/webrtc/p2p/<id>`); not webrtc-direct. */
export function isWebRTC (ma: Multiaddr): boolean {
  return WebRTC.matches(ma)
}

/** An address through a circuit relay. */
export function isCircuit (ma: Multiaddr): boolean {
  return Circuit.matches(ma)
}
