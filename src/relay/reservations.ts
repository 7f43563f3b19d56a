/**
 * The relay's reservations follow their holders (issue 10, finding 6).
 * libp2p's circuit relay server (@libp2p/circuit-relay-v2 4.2.13) keeps a
 * reservation for its TTL, 2 h by default, whether or not its holder is
 * still connected, and refuses new ones once `maxReservations` are held:
 * 256 throwaway peers took every reservation in 13 s and kept them after
 * they left, and nothing was logged. Here:
 *
 * - a reservation is given back as soon as its holder has no connection
 *   left (`peer:disconnect`): a relayed connection to a peer that is not
 *   connected cannot be made anyway;
 * - before a request is refused, reservations whose holders have no
 *   connection (one closed before the relay acted on it) are given back;
 * - refusals are logged and counted, and so are releases (`/health`).
 *
 * Only public parts are used: the server's `reservations` map (a
 * reservation's `signal` is cleared first, or its timer would later delete
 * a newer reservation of the same peer) and the connection gater's
 * `denyInboundRelayReservation`, which the server asks right before it
 * decides. A refusal is counted when a request finds every reservation
 * taken; two requests for the last one in the same instant count as one.
 */
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { CircuitRelayService } from '@libp2p/circuit-relay-v2'
import { logger } from '../utils/logger.ts'

const log = logger('relay')

/**
 * How long a reservation lasts unless renewed: long enough that holders
 * renew it rarely (libp2p's client renews 5 min before expiry, and at the
 * earliest 30 s after taking it: every 5 min here), short enough that one
 * whose holder stopped renewing without leaving is free again within
 * minutes, not libp2p's 2 h.
 */
export const RESERVATION_TTL = 10 * 60_000

export interface ReservationStats {
  /** Requests refused because every reservation was taken. */
  refused: number
  /** Reservations given back because their holder had no connection left. */
  released: number
}

export interface ReservationKeeper {
  /** For the relay's connection gater: counts and logs a request that will be refused; never denies. */
  denyInboundRelayReservation(peer: PeerId): boolean
  /** Follow `libp2p`'s connections and `relay`'s reservations; call once, after they are created. */
  attach(libp2p: Libp2p, relay: CircuitRelayService): void
  stats(): ReservationStats
}

export function reservationKeeper (maxReservations: number): ReservationKeeper {
  let libp2p: Libp2p | undefined
  let relay: CircuitRelayService | undefined
  let refused = 0
  let released = 0

  const release = (peer: PeerId, why: string): void => {
    const reservations = relay?.reservations
    const reservation = reservations?.get(peer)
    if (reservations == null || reservation == null) return
    reservation.signal.clear()
    reservations.delete(peer)
    released++
    log('gave back the reservation of %p (%s); %d of %d held', peer, why, reservations.size, maxReservations)
  }

  return {
    denyInboundRelayReservation (peer) {
      const reservations = relay?.reservations
      if (libp2p == null || reservations == null || reservations.has(peer) || reservations.size < maxReservations) return false
      for (const holder of [...reservations.keys()]) {
        if (libp2p.getConnections(holder).length === 0) release(holder, 'no connection left')
      }
      if (reservations.size < maxReservations) return false
      refused++
      log.error('refused a reservation to %p: all %d are taken (%d refused since start)', peer, maxReservations, refused)
      return false
    },
    attach (node, service) {
      libp2p = node
      relay = service
      node.addEventListener('peer:disconnect', (evt) => { release(evt.detail, 'disconnected') })
    },
    stats: () => ({ refused, released })
  }
}
