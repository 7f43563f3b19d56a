/**
 * Profile proofs over direct discovery (issue 11): a profile must carry its
 * peer's signature over its user db and OrbitDB identity, so that a profile
 * reaching a peer through anyone else (a keeper's introduction) can be
 * checked the same way. A peer whose proof is missing or signed by another
 * key is refused, whoever announces it.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peer, befriend, nextEvent } from '../helpers/peers.ts'
import { signProfile, PROOF_KEY } from '../../src/companions/proof.ts'

describe('profile proofs in discovery', () => {
  it('a peer\'s profile carries a proof its peer signed, and companions accept it', async () => {
    const [a, b] = await Promise.all([peer({ username: 'gil' }), peer({ username: 'hal' })])
    const proof = await a.databases.user.get(PROOF_KEY) as any
    assert.equal(proof.userDb, a.databases.user.address)
    assert.equal(proof.identity, a.orbitdb.identity.id)
    await befriend(a, b)
  })

  it('refuses a profile whose proof is signed by another key, or that has none', async () => {
    const [victim, forger, bare] = await Promise.all([peer({ username: 'ivy' }), peer({ username: 'jon' }), peer({ username: 'kim' })])
    // the forger's profile, with a proof signed by a key that is not its peer's
    const stranger = await generateKeyPair('Ed25519')
    await forger.databases.user.put(PROOF_KEY, await signProfile(stranger, forger.peerId, forger.databases.user.address, forger.orbitdb.identity.id) as any)
    const forged = nextEvent(victim, 'message:dropped', d => d.from === forger.peerId && d.reason === 'invalid-user-db')
    await victim.connectToPeer(forger.getMultiaddrs()[0]!)
    await forged
    // a profile without one
    await bare.databases.user.del(PROOF_KEY)
    const unproven = nextEvent(victim, 'message:dropped', d => d.from === bare.peerId && d.reason === 'invalid-user-db')
    await victim.connectToPeer(bare.getMultiaddrs()[0]!)
    await unproven
    assert.deepEqual(await victim.getCompanions(), [])
  })
})
