import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { signProfile, checkProof, sameProof } from '../../../src/companions/proof.ts'
import { InvalidRemoteDataError } from '../../../src/errors.ts'

const USER_DB = '/orbitdb/zdpuAmrcSRUhkQcnRQ6p4bphs7DJWGBkqczSGFYynX6moTcDL'
const OTHER_DB = '/orbitdb/zdpuAvNfQRbH9ZpAuDfCK1hDvmGSjc7qn6JjcUqM4SXAsfXWk'
const IDENTITY = '02c7c1ba4a5f1bce1e11c39d4d1bb2d3b6a2d0c3c8d9ad6b1e5c1a3fa3b2c1d0e9'

async function peer (): Promise<{ key: Awaited<ReturnType<typeof generateKeyPair>>, id: string }> {
  const key = await generateKeyPair('Ed25519')
  return { key, id: peerIdFromPrivateKey(key).toString() }
}

const refused = (pattern: RegExp) => (err: unknown): boolean => err instanceof InvalidRemoteDataError && pattern.test(err.message)

describe('profile proofs', () => {
  it('a proof signed by the peer over its user db and identity checks out, and is the same at every signing', async () => {
    const { key, id } = await peer()
    const proof = await signProfile(key, id, USER_DB, IDENTITY)
    await checkProof(proof, id, USER_DB, IDENTITY)
    // survives a JSON round trip (it is stored in a key-value db)
    await checkProof(JSON.parse(JSON.stringify(proof)), id, USER_DB, IDENTITY)
    assert.ok(sameProof(proof, await signProfile(key, id, USER_DB, IDENTITY)), 'nothing to write again at the next start')
  })

  it('refuses a proof that names another peer, user db or identity, or is signed by another key', async () => {
    const [a, b] = await Promise.all([peer(), peer()])
    const proof = await signProfile(a.key, a.id, USER_DB, IDENTITY)
    await assert.rejects(checkProof(proof, b.id, USER_DB, IDENTITY), refused(/not signed by/))
    await assert.rejects(checkProof(proof, a.id, OTHER_DB, IDENTITY), refused(/another user db/))
    await assert.rejects(checkProof(proof, a.id, USER_DB, IDENTITY.replace('02', '03')), refused(/another identity/))
    // b signs a proof that names a's user db: b's key, a's name
    const borrowed = await signProfile(b.key, a.id, USER_DB, IDENTITY)
    await assert.rejects(checkProof(borrowed, a.id, USER_DB, IDENTITY), refused(/not signed by/))
  })

  it('refuses a missing, malformed or oversized proof with a clear error', async () => {
    const { key, id } = await peer()
    const proof = await signProfile(key, id, USER_DB, IDENTITY)
    await assert.rejects(checkProof(undefined, id, USER_DB, IDENTITY), refused(/no proof/))
    for (const bad of [null, 'proof', 42, [], { ...proof, v: 2 }, { ...proof, signature: 7 }, { ...proof, signature: 'x'.repeat(300) }, { ...proof, signature: '!!not base64!!' }, { ...proof, signature: proof.signature.slice(0, -4) }]) {
      await assert.rejects(checkProof(bad, id, USER_DB, IDENTITY), InvalidRemoteDataError, JSON.stringify(bad))
    }
    await assert.rejects(checkProof(proof, 'not a peer id', USER_DB, IDENTITY), refused(/not a peer id/))
  })
})
