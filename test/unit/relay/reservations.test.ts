import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { reservationKeeper } from '../../../src/relay/reservations.ts'

async function peers (n: number): Promise<PeerId[]> {
  return await Promise.all(Array.from({ length: n }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
}

/** A reservation as libp2p's server keeps it: its signal deletes it when the TTL is up, unless cleared. */
interface FakeReservation { signal: { cleared: boolean, clear(): void } }

/** The relay service's reservation map (libp2p's `PeerMap`, keyed by peer id), and a libp2p with `connected` peers. */
function setup (): { libp2p: EventTarget & { getConnections(peer: PeerId): unknown[] }, relay: { reservations: any }, held: Map<string, FakeReservation>, connected: Set<string>, reserve(peer: PeerId): FakeReservation } {
  const connected = new Set<string>()
  const held = new Map<string, FakeReservation>()
  const reservations = {
    get size () { return held.size },
    has: (peer: PeerId) => held.has(peer.toString()),
    get: (peer: PeerId) => held.get(peer.toString()),
    delete: (peer: PeerId) => held.delete(peer.toString()),
    * keys () { for (const key of held.keys()) yield peerIdFromString(key) }
  }
  const libp2p = Object.assign(new EventTarget(), { getConnections: (peer: PeerId) => connected.has(peer.toString()) ? [{}] : [] })
  const reserve = (peer: PeerId): FakeReservation => {
    const reservation: FakeReservation = { signal: { cleared: false, clear () { reservation.signal.cleared = true } } }
    held.set(peer.toString(), reservation)
    connected.add(peer.toString())
    return reservation
  }
  return { libp2p, relay: { reservations }, held, connected, reserve }
}

describe('reservationKeeper', () => {
  it('gives a reservation back when its holder disconnects, and stops its timer (which would delete a newer one of the same peer)', async () => {
    const { libp2p, relay, held, connected, reserve } = setup()
    const keeper = reservationKeeper(4)
    keeper.attach(libp2p as any, relay as any)
    const [a, b, stranger] = await peers(3)
    const old = reserve(a!)
    reserve(b!)
    connected.delete(a!.toString())
    libp2p.dispatchEvent(new CustomEvent('peer:disconnect', { detail: a }))
    assert.equal(held.has(a!.toString()), false)
    assert.equal(held.size, 1)
    assert.equal(old.signal.cleared, true)
    assert.deepEqual(keeper.stats(), { refused: 0, released: 1 })
    // a peer without a reservation: nothing to give back
    libp2p.dispatchEvent(new CustomEvent('peer:disconnect', { detail: stranger }))
    assert.equal(keeper.stats().released, 1)
  })

  it('counts a request that finds every reservation taken, after giving back those whose holders have no connection left', async () => {
    const { libp2p, relay, held, connected, reserve } = setup()
    const keeper = reservationKeeper(2)
    keeper.attach(libp2p as any, relay as any)
    const [a, b, c, d] = await peers(4)
    reserve(a!)
    reserve(b!)
    // never denies: the server decides, and refuses it
    assert.equal(keeper.denyInboundRelayReservation(c!), false)
    assert.deepEqual(keeper.stats(), { refused: 1, released: 0 })
    // a holder renewing is not a refusal
    assert.equal(keeper.denyInboundRelayReservation(a!), false)
    assert.equal(keeper.stats().refused, 1)
    // b's connection closed before the relay acted on it: given back, d gets the room
    connected.delete(b!.toString())
    assert.equal(keeper.denyInboundRelayReservation(d!), false)
    assert.deepEqual(keeper.stats(), { refused: 1, released: 1 })
    assert.equal(held.has(b!.toString()), false)
  })
})
