/**
 * Verifying a peer's announced profile before it becomes a companion: its
 * user db must be a key-value store with fixed writers whose `nodeId` is the
 * sender, whose `pieces` is an `npp-catalog` (or `documents`) store
 * written by the same identity, and whose `proof` is signed by that peer's
 * key over the user db and the identity (`proof.ts`). Everything is read with the caller's signal,
 * so a stalling peer costs a bounded time.
 */
import { KeyValue } from '@orbitdb/core'
import { readManifest } from './manifest.ts'
import { waitForKeys } from './wait-for-keys.ts'
import { checkProof, PROOF_KEY } from './proof.ts'
import { InvalidRemoteDataError } from '../errors.ts'
import { isOrbitDBAddress } from '../utils/validate.ts'
import { CATALOG_TYPE } from '../catalog/catalog.ts'
import { MAX_USERNAME_LENGTH } from '../constants.ts'
import type { Logger } from '@libp2p/interface'
import type { NppComponents } from '../components.ts'
import type { Replicas } from './replicas.ts'
import type { KeyValueDatabase } from '../orbitdb/types.ts'
import type { CompanionRecord } from '../types.ts'

export interface ProfileVerifierComponents extends Pick<NppComponents, 'helia' | 'logger'> {
  replicas: Replicas
}

export class ProfileVerifier {
  private readonly components: ProfileVerifierComponents
  private readonly log: Logger

  constructor (components: ProfileVerifierComponents) {
    this.components = components
    this.log = components.logger.forComponent('npp:companions:verify')
  }

  /**
   * Check `userDb` as announced by `from`; on success the companion's
   * catalog replica is open (under `userDb`) and the record to keep is
   * returned. `multiaddrs` are where `from` is reachable now. Throws
   * `InvalidRemoteDataError` when anything does not hold.
   *
   * `admit` is called with the profile's OrbitDB identity (`identityOf` its
   * writers) once the user db is read, before its catalog is opened; it
   * throws to refuse the profile.
   */
  async verify (userDb: string, from: string, multiaddrs: string[], signal: AbortSignal, admit?: (identity: string) => void): Promise<CompanionRecord> {
    const { helia, replicas } = this.components
    const t0 = Date.now()
    const mark = (step: string): void => { this.log.trace('verifying %s: %s after %d ms', from, step, Date.now() - t0) }
    const manifest = await readManifest(helia, userDb, signal)
    mark('user db manifest')
    if (manifest.type !== 'keyvalue') throw new InvalidRemoteDataError(`user db ${userDb} is a "${manifest.type}" database, expected "keyvalue"`)
    if (!manifest.accessController.startsWith('/ipfs/')) throw new InvalidRemoteDataError(`user db ${userDb} uses access controller ${manifest.accessController}, expected an IPFS (fixed writers) one`)

    const user = await replicas.openBounded<KeyValueDatabase>(userDb, { Database: KeyValue() }, signal)
    mark('user db open')
    try {
      const { nodeId, pieces } = await waitForKeys(user, ['nodeId', 'pieces'], signal)
      mark('user db replicated')
      if (nodeId !== from) throw new InvalidRemoteDataError(`user db ${userDb} names node ${String(nodeId)}, but ${from} sent it`)
      if (!isOrbitDBAddress(pieces)) throw new InvalidRemoteDataError(`user db ${userDb} has no valid pieces address`)
      admit?.(identityOf(user.access.write))
      const piecesManifest = await readManifest(helia, pieces, signal)
      mark('catalog manifest')
      if (piecesManifest.type !== CATALOG_TYPE && piecesManifest.type !== 'documents') throw new InvalidRemoteDataError(`pieces db ${pieces} is a "${piecesManifest.type}" database, expected "${CATALOG_TYPE}" or "documents"`)
      const username = await user.get('username')
      const record: CompanionRecord = {
        nodeId: from,
        pieces,
        username: typeof username === 'string' ? username.slice(0, MAX_USERNAME_LENGTH) : '',
        multiaddrs,
        lastSeen: Date.now()
      }
      const replica = await replicas.open(userDb, record, signal, piecesManifest.type)
      mark('catalog open')
      if (!sameWriters(replica.db.access.write, user.access.write)) {
        await replicas.close(userDb)
        throw new InvalidRemoteDataError(`pieces db ${pieces} is not written by the owner of ${userDb}`)
      }
      try {
        // the user db's entries are all in (they came with nodeId and pieces)
        await checkProof(await user.get(PROOF_KEY), from, userDb, identityOf(user.access.write))
      } catch (err) {
        await replicas.close(userDb)
        throw err
      }
      mark('proof')
      return record
    } finally {
      await user.close().catch(() => {})
    }
  }
}

/**
 * The OrbitDB identity behind a profile: its user db's writers (one identity
 * id for a profile made by this library), in a stable order.
 */
export function identityOf (writers: string[]): string {
  return Array.isArray(writers) ? [...writers].sort().join(',') : ''
}

/** The same fixed set of writers (a `*` writer is never the same). */
export function sameWriters (a: string[], b: string[]): boolean {
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length || a.includes('*')) return false
  const set = new Set(a)
  return b.every(w => set.has(w))
}
