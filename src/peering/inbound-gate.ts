/**
 * Per-address limits on inbound connections, as a libp2p connection gater
 * (libp2p has no per-address limit on connections still upgrading, and its
 * own limit on them is one number for everybody).
 *
 * A slowloris opens sockets, sends a byte and stalls: each socket holds one
 * of libp2p's pending slots (`maxIncomingPendingConnections`, all hosts
 * together) until the upgrade times out (10 s), and the attacker opens new
 * ones: every honest dial was refused for the whole attack (issue 10,
 * finding 5). Measured before this gate: 200 sockets, each sending one
 * byte, held all 64 slots and an honest dial got in only after 9.8 s, when
 * libp2p's timeout dropped them; with it, after 2 s from the attacker's own
 * address and at once from another. A school's class behind one NAT looks
 * alike at first sight (many connections from one address at once), but
 * each of its connections finishes its upgrade in milliseconds. So:
 *
 * - an address may hold `pendingPerHost` connections still upgrading, and all
 *   addresses together `maxPending`;
 * - when a limit is reached, the oldest connection still upgrading after
 *   `stalledAfter` is dropped to make room for the new one; only when none is
 *   that old is the new one refused. Stalled sockets cannot keep anybody
 *   out for longer than `stalledAfter`, and honest upgrades, far quicker, are
 *   never the ones dropped;
 * - an address may hold `connectionsPerHost` open inbound connections, so
 *   one host cannot take every connection slot (`maxConnections`).
 *
 * libp2p's own limit on pending connections is checked before the gater is
 * asked, so it must be set above `maxPending` (see `crowd.ts`), or it would
 * refuse before anything could be dropped.
 *
 * A relayed connection counts against its remote peer, not the relay's
 * address (everybody reaching us through the relay shares that one): the
 * relay limits what each address sends through it, and `maxPending` and
 * `maxConnections` still apply. libp2p's own per-host rate limit
 * (`inboundConnectionThreshold`) does count relayed connections against
 * the relay's address.
 */
import { tryGetNetConfig } from '@libp2p/utils'
import { Circuit } from '@multiformats/multiaddr-matcher'
import type { ConnectionGater, MultiaddrConnection, PeerId } from '@libp2p/interface'
import { logger } from '../utils/logger.ts'
import { NewPiecePleaseError } from '../errors.ts'

const log = logger('limits')

export interface InboundGateInit {
  /** Inbound connections one address may have still upgrading. */
  pendingPerHost: number
  /** Inbound connections all addresses together may have still upgrading. */
  maxPending: number
  /** Open (upgraded) inbound connections one address may have. */
  connectionsPerHost: number
  /** A connection still upgrading after this long (ms) may be dropped to make room for a new one. */
  stalledAfter: number
}

/** What the gate did, for `/health` and tests. */
export interface InboundGateStats {
  /** Inbound connections refused: a limit was reached and nothing could be dropped. */
  refused: number
  /** Connections dropped because they were still upgrading after `stalledAfter` and a newcomer needed the room. */
  dropped: number
  /** Inbound connections still upgrading. */
  pending: number
}

export interface InboundGate extends ConnectionGater {
  stats(): InboundGateStats
}

/** Passed to `abort()` of a connection dropped because it was still upgrading after `stalledAfter`. */
export class StalledUpgradeError extends NewPiecePleaseError {
  override name = 'StalledUpgradeError'
}

interface Pending {
  maConn: MultiaddrConnection
  host: string
  since: number
}

/**
 * What a connection counts against: the remote address's host; for a
 * relayed connection, or one without a network address (WebRTC's
 * `/webrtc/p2p/<id>`), the whole address (its peer), since everybody who
 * reaches us through a relay comes from the relay's host.
 */
function hostOf (maConn: MultiaddrConnection): string {
  const addr = maConn.remoteAddr
  if (Circuit.matches(addr)) return addr.toString()
  return tryGetNetConfig(addr)?.host ?? addr.toString()
}

/** Every method of libp2p's `ConnectionGater` (3.x), to pass on those `inner` has, whether own or inherited. */
const GATER_METHODS = [
  'denyDialPeer', 'denyDialMultiaddr', 'denyInboundConnection', 'denyOutboundConnection',
  'denyInboundEncryptedConnection', 'denyOutboundEncryptedConnection', 'denyInboundUpgradedConnection',
  'denyOutboundUpgradedConnection', 'denyInboundRelayReservation', 'denyOutboundRelayedConnection',
  'denyInboundRelayedConnection', 'filterMultiaddrForPeer'
] as const satisfies ReadonlyArray<keyof ConnectionGater>

/**
 * A gater enforcing `init`, asking `inner` first for everything it decides
 * (only the methods `inner` has are defined, besides the inbound ones: a
 * browser's libp2p fills in its default dial filter when the gater has none).
 */
export function inboundGate (init: InboundGateInit, inner: ConnectionGater = {}): InboundGate {
  // in arrival order, so the first stale one found is the oldest
  const pending = new Map<MultiaddrConnection, Pending>()
  const pendingByHost = new Map<string, number>()
  /** Upgraded inbound connections, by the host they count against, until they close. */
  const opened = new Map<MultiaddrConnection, string>()
  const openByHost = new Map<string, number>()
  let refused = 0
  let dropped = 0

  const add = (counts: Map<string, number>, host: string, n: number): void => {
    const value = (counts.get(host) ?? 0) + n
    if (value > 0) counts.set(host, value)
    else counts.delete(host)
  }
  const settle = (maConn: MultiaddrConnection): void => {
    const entry = pending.get(maConn)
    if (entry == null) return
    pending.delete(maConn)
    add(pendingByHost, entry.host, -1)
  }
  const closed = (maConn: MultiaddrConnection): void => {
    settle(maConn)
    const host = opened.get(maConn)
    if (host == null) return
    opened.delete(maConn)
    add(openByHost, host, -1)
  }
  /** Drop the oldest connection still upgrading after `stalledAfter` (of `host` only, when given). */
  const dropStale = (now: number, host?: string): boolean => {
    for (const entry of pending.values()) {
      if (now - entry.since < init.stalledAfter) return false
      if (host != null && entry.host !== host) continue
      settle(entry.maConn)
      dropped++
      log('dropped an inbound connection from %a: still upgrading after %d ms', entry.maConn.remoteAddr, now - entry.since)
      entry.maConn.abort(new StalledUpgradeError(`the connection upgrade did not finish within ${init.stalledAfter} ms and another connection needed the room`))
      return true
    }
    return false
  }
  const refuse = (maConn: MultiaddrConnection, why: string): boolean => {
    refused++
    log('refused an inbound connection from %a: %s', maConn.remoteAddr, why)
    return true
  }

  const gate: InboundGate = {
    async denyInboundConnection (maConn) {
      if (await inner.denyInboundConnection?.(maConn) === true) return true
      if (maConn.status !== 'open') return false
      const host = hostOf(maConn)
      if ((openByHost.get(host) ?? 0) >= init.connectionsPerHost) return refuse(maConn, `${init.connectionsPerHost} open connections from ${host}`)
      const now = Date.now()
      if ((pendingByHost.get(host) ?? 0) >= init.pendingPerHost && !dropStale(now, host)) return refuse(maConn, `${init.pendingPerHost} connections from ${host} still upgrading`)
      if (pending.size >= init.maxPending && !dropStale(now)) return refuse(maConn, `${init.maxPending} connections still upgrading`)
      pending.set(maConn, { maConn, host, since: now })
      add(pendingByHost, host, 1)
      maConn.addEventListener('close', () => { closed(maConn) }, { once: true })
      return false
    },
    async denyInboundUpgradedConnection (peer: PeerId, maConn: MultiaddrConnection) {
      const deny = await inner.denyInboundUpgradedConnection?.(peer, maConn) === true
      const entry = pending.get(maConn)
      if (entry == null) return deny
      settle(maConn)
      if (!deny && maConn.status === 'open') {
        opened.set(maConn, entry.host)
        add(openByHost, entry.host, 1)
      }
      return deny
    },
    stats: () => ({ refused, dropped, pending: pending.size })
  }

  // everything else as `inner` says, and only what it says
  for (const key of GATER_METHODS) {
    const fn = inner[key]
    if (key in gate || typeof fn !== 'function') continue
    ;(gate as any)[key] = fn.bind(inner)
  }
  return gate
}
