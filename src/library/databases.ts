/**
 * The peer's own databases, as in the tutorial: `pieces` (the catalog, an
 * `npp-catalog`), `user` (the profile, a key-value store), `companions` (the
 * register, key-value) and `counters` (practice counts, `npp-counters`).
 * All are written by this peer's OrbitDB identity only.
 */
import { KeyValue, IPFSAccessController } from '@orbitdb/core'
import { Catalog, CATALOG_TYPE, type CatalogDatabase } from '../catalog/catalog.ts'
import { Counters, type CountersDatabase } from '../counters/counters.ts'
import { CATALOG_INDEX_FIELDS, PIECES_DB, USER_DB, COMPANIONS_DB, COUNTERS_DB } from '../constants.ts'
import type { NppComponents } from '../components.ts'
import type { AccessControllerFactory, DatabaseFactory, KeyValueDatabase } from '../orbitdb/types.ts'
import type { CompanionRecord, JsonValue, Piece } from '../types.ts'
import { signProfile, sameProof, PROOF_KEY } from '../companions/proof.ts'
import { privateKeyOf } from '../stack/private-key.ts'
import { MissingPrivateKeyError } from '../errors.ts'

export interface OwnDatabases {
  pieces: CatalogDatabase<Piece>
  user: KeyValueDatabase<JsonValue>
  companions: KeyValueDatabase<CompanionRecord>
  counters: CountersDatabase
}

export interface OwnDatabasesInit {
  /** Keep catalog indexes in memory only (`storage: 'memory'`). */
  memory: boolean
  /** Username written to a new profile. @default 'musician-' + the peer id's last 6 characters */
  username?: string
}

/** The `npp-catalog` database factory with this node's storage choice (own catalog and companions' replicas alike). */
export function catalogFactory (memory: boolean): DatabaseFactory<CatalogDatabase<Piece>> {
  return Catalog({ indexBy: 'hash', indexFields: [...CATALOG_INDEX_FIELDS], memory }) as DatabaseFactory<CatalogDatabase<Piece>>
}

/** Open the four databases and, on a first start, write the profile the tutorial expects (later starts keep it). */
export async function openOwnDatabases (components: Pick<NppComponents, 'open' | 'orbitdb' | 'libp2p'>, init: OwnDatabasesInit): Promise<OwnDatabases> {
  const { open, orbitdb } = components
  const ownOnly = (): AccessControllerFactory => IPFSAccessController({ write: [orbitdb.identity.id] })
  const opened = await Promise.allSettled([
    open<CatalogDatabase<Piece>>(PIECES_DB, { type: CATALOG_TYPE, Database: catalogFactory(init.memory), AccessController: ownOnly() }),
    open<KeyValueDatabase<JsonValue>>(USER_DB, { type: 'keyvalue', Database: KeyValue(), AccessController: ownOnly() }),
    open<KeyValueDatabase<CompanionRecord>>(COMPANIONS_DB, { type: 'keyvalue', Database: KeyValue(), AccessController: ownOnly() }),
    open<CountersDatabase>(COUNTERS_DB, { type: Counters.type, Database: Counters(), AccessController: ownOnly() })
  ])
  const failed = opened.find(r => r.status === 'rejected')
  if (failed != null) {
    // nothing half-open is left behind
    await Promise.all(opened.map(async r => { if (r.status === 'fulfilled') await r.value.close().catch(() => {}) }))
    throw failed.reason
  }
  const [pieces, user, companions, counters] = opened.map(r => (r as PromiseFulfilledResult<unknown>).value) as [CatalogDatabase<Piece>, KeyValueDatabase<JsonValue>, KeyValueDatabase<CompanionRecord>, CountersDatabase]
  const dbs = { pieces, user, companions, counters }
  try {
    await ensureProfile(components, dbs, init)
  } catch (err) {
    await closeOwnDatabases(dbs)
    throw err
  }
  return dbs
}

/**
 * Write what the profile lacks: the tutorial's keys, and the proof that this
 * peer wrote it (`../companions/proof.ts`; other peers refuse a profile
 * without one). Later starts write nothing that did not change.
 */
async function ensureProfile (components: Pick<NppComponents, 'libp2p' | 'orbitdb'>, { pieces, user, counters }: OwnDatabases, init: OwnDatabasesInit): Promise<void> {
  const { libp2p, orbitdb } = components
  const peerId = libp2p.peerId.toString()
  const key = privateKeyOf(libp2p)
  if (key == null) throw new MissingPrivateKeyError(`the private key of ${peerId} is not available to sign this peer's profile (a libp2p node of another major version?)`)
  const profile = Object.fromEntries((await user.all()).map(({ key, value }) => [key, value]))
  if (profile.nodeId !== peerId) await user.put('nodeId', peerId)
  if (profile.pieces !== pieces.address) await user.put('pieces', pieces.address)
  if (profile.counters !== counters.address) await user.put('counters', counters.address)
  if (typeof profile.username !== 'string') await user.put('username', init.username ?? `musician-${peerId.slice(-6)}`)
  const proof = await signProfile(key, peerId, user.address, orbitdb.identity.id)
  if (!sameProof(profile[PROOF_KEY], proof)) await user.put(PROOF_KEY, proof as unknown as JsonValue)
}

export async function closeOwnDatabases (dbs: OwnDatabases): Promise<void> {
  await Promise.all(Object.values(dbs).map(async db => { await db.close().catch(() => {}) }))
}
