/**
 * Settings for many peers behind one IP address (a class behind a school's
 * NAT, a conservatory, every peer on one machine), shared by peers and the
 * relay. libp2p's and gossipsub's defaults assume one peer per address.
 */

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
 * libp2p refuses more than 5 inbound connections per second from one host
 * and keeps at most 10 inbound connections pending: a class starting
 * together behind one NAT is turned away. Raised to the crowd expected.
 */
export function crowdConnectionLimits (peersPerAddress: number): { inboundConnectionThreshold: number, maxIncomingPendingConnections: number } {
  return { inboundConnectionThreshold: Math.max(5, peersPerAddress), maxIncomingPendingConnections: Math.max(10, peersPerAddress) }
}
