/**
 * The part of `@orbitdb/core` 4 this library relies on, typed. `@orbitdb/core`
 * ships no type declarations; these interfaces follow its source
 * (`src/orbitdb.js`, `src/database.js`, `src/databases/*.js`).
 */
import type { HeliaWithLibp2p } from '@helia/libp2p'
import type { Libp2p } from '@libp2p/interface'

export interface OrbitDBEntry<P = unknown> {
  hash: string
  id: string
  payload: P
  next: string[]
  refs: string[]
  clock: { id: string, time: number }
  v: number
  key: string
  identity: string
  sig: string
}

export interface OrbitDBLog {
  id: string
  heads(): Promise<OrbitDBEntry[]>
  /** Whether the entry `hash` is in the log. */
  has(hash: string): Promise<boolean>
  iterator(options?: { amount?: number, gt?: string, lt?: string }): AsyncGenerator<OrbitDBEntry>
  values(): Promise<OrbitDBEntry[]>
  storage: OrbitDBStorage
}

export interface OrbitDBStorage {
  put(hash: string, data: unknown, signal?: AbortSignal): Promise<void>
  get(hash: string, signal?: AbortSignal): Promise<any>
  del(hash: string): Promise<void>
  iterator(): AsyncGenerator<[string, any]>
  merge(other: OrbitDBStorage): Promise<void>
  clear(): Promise<void>
  close(): Promise<void>
}

/** Minimal Node-style emitter OrbitDB uses for database events. */
export interface OrbitDBEvents {
  on(event: string, listener: (...args: any[]) => void): unknown
  once(event: string, listener: (...args: any[]) => void): unknown
  off(event: string, listener: (...args: any[]) => void): unknown
  emit(event: string, ...args: any[]): boolean
  listenerCount?(event: string): number
}

export interface OrbitDBAccessController {
  type: string
  address: string
  write: string[]
  canAppend(entry: OrbitDBEntry): Promise<boolean>
  close?(): Promise<void>
}

export interface OrbitDBIdentity {
  id: string
  publicKey: string
  type: string
  hash: string
}

export interface OrbitDBDatabase {
  address: string
  name: string
  type: string
  meta: Record<string, unknown>
  identity: OrbitDBIdentity
  access: OrbitDBAccessController
  log: OrbitDBLog
  events: OrbitDBEvents
  sync: { start(): Promise<void>, stop(): Promise<void>, peers: Set<string> }
  peers: Set<string>
  addOperation(op: unknown): Promise<string>
  close(): Promise<void>
  drop(): Promise<void>
}

export interface DocumentsDatabase<T = Record<string, unknown>> extends OrbitDBDatabase {
  indexBy: string
  put(doc: T): Promise<string>
  del(key: string): Promise<string>
  get(key: string): Promise<{ hash: string, key: string, value: T } | undefined>
  query(findFn: (doc: T) => boolean): Promise<T[]>
  iterator(options?: { amount?: number }): AsyncGenerator<{ hash: string, key: string, value: T }>
  all(): Promise<Array<{ hash: string, key: string, value: T }>>
}

export interface KeyValueDatabase<V = unknown> extends OrbitDBDatabase {
  put(key: string, value: V): Promise<string>
  set(key: string, value: V): Promise<string>
  del(key: string): Promise<string>
  get(key: string): Promise<V | undefined>
  iterator(options?: { amount?: number }): AsyncGenerator<{ key: string, value: V, hash: string }>
  all(): Promise<Array<{ key: string, value: V, hash: string }>>
}

export interface DatabaseInit {
  ipfs: OrbitDBIpfs
  identity: OrbitDBIdentity
  address: string
  name: string
  access: OrbitDBAccessController
  directory: string
  meta?: Record<string, unknown>
  headsStorage?: OrbitDBStorage
  entryStorage?: OrbitDBStorage
  indexStorage?: OrbitDBStorage
  /** The catalog's index on disk (this library's `npp-catalog` type; see stack/shared-storage.ts). */
  catalogStorage?: OrbitDBStorage
  referencesCount?: number
  syncAutomatically?: boolean
  onUpdate?: (log: OrbitDBLog, entry: OrbitDBEntry) => Promise<void> | void
  encryption?: unknown
}

export type DatabaseFactory<D extends OrbitDBDatabase = OrbitDBDatabase> = (init: DatabaseInit) => Promise<D>

export interface DatabaseType<D extends OrbitDBDatabase = OrbitDBDatabase> {
  (...args: any[]): DatabaseFactory<D>
  type: string
}

export type AccessControllerFactory = (init: { orbitdb: any, identities: any, address?: string, name?: string }) => Promise<OrbitDBAccessController>

export interface OpenOptions {
  type?: string
  meta?: Record<string, unknown>
  sync?: boolean
  Database?: DatabaseFactory<any>
  AccessController?: AccessControllerFactory
  headsStorage?: OrbitDBStorage
  entryStorage?: OrbitDBStorage
  indexStorage?: OrbitDBStorage
  referencesCount?: number
  signal?: AbortSignal
}

/** What OrbitDB needs of its `ipfs`: a Helia node with libp2p whose pubsub service is named `pubsub`. */
export type OrbitDBIpfs = HeliaWithLibp2p<any> & { libp2p: Libp2p<any> }

export interface OrbitDB {
  id: string
  ipfs: OrbitDBIpfs
  directory: string
  identity: OrbitDBIdentity
  identities: any
  keystore: any
  peerId: Libp2p['peerId']
  open<D extends OrbitDBDatabase = OrbitDBDatabase>(address: string, options?: OpenOptions): Promise<D>
  stop(): Promise<void>
}

/** What queries need of a catalog database: the batched `npp-catalog` type, or a plain OrbitDB `documents` store. */
export interface CatalogLike<T = Record<string, unknown>> extends OrbitDBDatabase {
  get(key: string): Promise<{ key: string, value: T } | undefined>
  query(findFn: (doc: T) => boolean): Promise<T[]>
  all(): Promise<Array<{ key: string, value: T }>>
  /** Only on `npp-catalog`: exact-match lookup on an indexed field. */
  getBy?(field: string, value: unknown): Promise<T[]>
  /** Only on `npp-catalog`: the fields `getBy` accepts. */
  indexFields?: readonly string[]
}
