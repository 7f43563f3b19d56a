/**
 * Settings for many peers behind one IP address (a class behind a school's
 * NAT, a conservatory, every peer on one machine), shared by peers and the
 * relay. libp2p's and gossipsub's defaults assume one peer per address.
 */
import type { Libp2pOptions } from 'libp2p'
import type { ConnectionLimits } from '../platform/types.ts'
import type { InboundGateInit } from './inbound-gate.ts'

/**
 * Gossipsub penalises peers that share an IP address beyond
 * `IPColocationFactorThreshold` (10 by default; the penalty grows with the
 * square of the surplus, so from 15 peers on they fall below the graylist
 * threshold and what they send is ignored). Raised to the crowd expected
 * behind one address; beyond it the penalty applies as before.
 */
export function crowdScoreParams (peersPerAddress: number): { IPColocationFactorThreshold: number } {
  return { IPColocationFactorThreshold: Math.max(10, peersPerAddress) }
}

/**
 * libp2p's `connectionManager` options and the inbound gate's limits
 * (`inbound-gate.ts`) for `peersPerAddress` peers behind one address on a
 * platform with `limits`.
 *
 * libp2p refuses more than 5 inbound connections per second from one host
 * and keeps at most 10 inbound connections pending (all hosts together): a
 * class starting together behind one NAT is turned away, and 10 stalled
 * sockets lock everybody out. Here one address may open `peersPerAddress`
 * connections per second and have as many still upgrading, all addresses
 * together `limits.maxPending` (at least `peersPerAddress`); stalled ones
 * make room for newcomers after `limits.stalledAfter`. One address may keep
 * two open inbound connections per peer expected behind it (a direct and a
 * relayed one, or two dialed at once), so one host cannot take every
 * connection slot.
 */
export function crowdConnectionLimits (peersPerAddress: number, limits: ConnectionLimits): { connectionManager: NonNullable<Libp2pOptions['connectionManager']>, gate: InboundGateInit } {
  const pendingPerHost = Math.max(10, peersPerAddress)
  const maxPending = Math.max(limits.maxPending, pendingPerHost)
  return {
    connectionManager: {
      maxConnections: limits.maxConnections,
      inboundUpgradeTimeout: limits.inboundUpgradeTimeout,
      inboundConnectionThreshold: Math.max(5, peersPerAddress),
      // libp2p checks its own limit before the gate can drop a stalled
      // connection: twice the gate's, so the gate decides
      maxIncomingPendingConnections: 2 * maxPending
    },
    gate: {
      pendingPerHost,
      maxPending,
      connectionsPerHost: Math.max(10, 2 * peersPerAddress),
      stalledAfter: limits.stalledAfter
    }
  }
}
