/**
 * A peer with many open databases stays reachable. OrbitDB registers one
 * heads protocol per open database and identify lists them all: past
 * libp2p's 8 KiB identify limit (about 110 databases: a peer with ~100
 * companions, a keeper of ~35 users) identify failed silently, gossipsub
 * never ran between the two, and they never became companions (found by the
 * keeper benchmark, issue 11).
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { peer, befriend } from '../helpers/peers.ts'

describe('identify with many databases', () => {
  it('a peer with 200 open databases is identified and becomes a companion', async () => {
    const [a, b] = await Promise.all([peer({ username: 'many' }), peer({ username: 'other' })])
    for (let i = 0; i < 200; i++) await a.orbitdb.open(`extra-${i}`, { type: 'keyvalue' })
    await befriend(a, b, 20_000)
    const { protocols } = await b.libp2p.peerStore.get(a.libp2p.peerId)
    assert.ok(protocols.filter(p => p.startsWith('/orbitdb/heads/')).length > 200, `b knows ${protocols.length} protocols of a`)
  })
})
