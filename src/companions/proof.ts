/**
 * Profile proofs. A profile (user db) names its peer (`nodeId`) and its
 * catalog, but anyone can write a profile that names anyone. When a profile
 * comes straight from its peer, the signed gossipsub message ties the two;
 * when it comes from someone else (a keeper's introduction, issue 11) nothing
 * does. So every profile carries a proof: the peer's libp2p key signs the
 * user db's address and the OrbitDB identity that writes it (and, since
 * verification checks the catalog has the same writer, its catalog):
 *
 *     new-piece-please/profile-proof/v1 \n <peer id> \n <user db> \n <identity id>
 *
 * A proof is checked against the public key inside the peer id (Ed25519 and
 * secp256k1 peer ids carry it; the library's are Ed25519). Neither an
 * introducer nor anyone else can make a profile pass for another peer's, nor
 * move a peer's name onto another catalog.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { fromString, toString } from 'uint8arrays'
import { InvalidRemoteDataError } from '../errors.ts'
import { isPlainObject } from '../utils/validate.ts'
import type { PrivateKey } from '@libp2p/interface'

/** The profile key that holds the proof. */
export const PROOF_KEY = 'proof'
const DOMAIN = 'new-piece-please/profile-proof/v1'
/** Longest signature accepted (base64url of an Ed25519 or secp256k1 signature is 86-96 characters). */
const MAX_SIGNATURE_LENGTH = 256

/** What the `proof` key of a profile holds. */
export interface ProfileProof {
  v: 1
  userDb: string
  /** The OrbitDB identity id that writes the user db (and the catalog). */
  identity: string
  /** base64url signature by the peer's libp2p key over the text above. */
  signature: string
}

function payload (peerId: string, userDb: string, identity: string): Uint8Array {
  return fromString(`${DOMAIN}\n${peerId}\n${userDb}\n${identity}`)
}

/** The proof for our own profile. Ed25519 signatures are deterministic: the same inputs give the same proof. */
export async function signProfile (key: PrivateKey, peerId: string, userDb: string, identity: string): Promise<ProfileProof> {
  const signature = await key.sign(payload(peerId, userDb, identity))
  return { v: 1, userDb, identity, signature: toString(signature, 'base64url') }
}

/** Whether two proofs are the same (a stored one and a fresh one). */
export function sameProof (a: unknown, b: ProfileProof): boolean {
  if (!isPlainObject(a)) return false
  const p = a as Record<string, unknown>
  return p.v === b.v && p.userDb === b.userDb && p.identity === b.identity && p.signature === b.signature
}

/**
 * Check that `proof` shows `peerId` wrote the profile `userDb` with the
 * OrbitDB identity `identity`; throws `InvalidRemoteDataError` saying what
 * does not hold.
 */
export async function checkProof (proof: unknown, peerId: string, userDb: string, identity: string): Promise<void> {
  if (proof === undefined) throw new InvalidRemoteDataError(`user db ${userDb} carries no proof that ${peerId} wrote it`)
  if (!isPlainObject(proof)) throw new InvalidRemoteDataError(`user db ${userDb} has a malformed proof`)
  const p = proof as Record<string, unknown>
  if (p.v !== 1 || typeof p.signature !== 'string' || p.signature.length > MAX_SIGNATURE_LENGTH) throw new InvalidRemoteDataError(`user db ${userDb} has a malformed proof`)
  if (p.userDb !== userDb) throw new InvalidRemoteDataError(`the proof in ${userDb} is for another user db (${String(p.userDb)})`)
  if (p.identity !== identity) throw new InvalidRemoteDataError(`the proof in ${userDb} names another identity than its writer`)
  let key
  try {
    key = peerIdFromString(peerId).publicKey
  } catch {}
  if (key == null) throw new InvalidRemoteDataError(`${peerId} is not a peer id whose key a proof can be checked against`)
  let signature: Uint8Array
  try {
    signature = fromString(p.signature, 'base64url')
  } catch {
    throw new InvalidRemoteDataError(`user db ${userDb} has a malformed proof`)
  }
  let valid = false
  try {
    valid = await key.verify(payload(peerId, userDb, identity), signature)
  } catch {}
  if (!valid) throw new InvalidRemoteDataError(`the proof in ${userDb} is not signed by ${peerId}`)
}
