// @orbitdb/core ships no declarations: type the values we import from it.
declare module '@orbitdb/core' {
  import type { OrbitDB, OrbitDBIpfs, DatabaseType, DatabaseFactory, AccessControllerFactory, OrbitDBStorage, OrbitDBDatabase, DatabaseInit, DocumentsDatabase, KeyValueDatabase, OrbitDBEntry } from './types.ts'
  export function createOrbitDB (init: { ipfs: OrbitDBIpfs, id?: string, identity?: unknown, identities?: unknown, directory?: string }): Promise<OrbitDB>
  export function Documents (options?: { indexBy?: string }): DatabaseFactory<DocumentsDatabase<any>>
  export function KeyValue (): DatabaseFactory<KeyValueDatabase<any>>
  export function Events (): DatabaseFactory<OrbitDBDatabase & { add(value: unknown): Promise<string> }>
  export function Database (init: DatabaseInit): Promise<OrbitDBDatabase>
  export function useDatabaseType (type: DatabaseType<any>): void
  /**
   * Log entries: `decode` reads an entry's bytes (its hash is computed from
   * them); `create` signs a new one with `identity`; `encode` gives its hash
   * and bytes; `verify` checks `sig` against the entry's own `key` only.
   */
  export const Entry: {
    decode (bytes: Uint8Array): Promise<OrbitDBEntry>
    create (identity: unknown, id: string, payload: unknown, encryptPayloadFn?: unknown, clock?: { id: string, time: number } | null, next?: string[], refs?: string[]): Promise<OrbitDBEntry>
    encode (entry: unknown): Promise<{ hash: string, bytes: Uint8Array }>
    verify (identities: unknown, entry: OrbitDBEntry): Promise<boolean>
    isEntry (value: unknown): boolean
  }
  export function isValidAddress (address: unknown): boolean
  export function parseAddress (address: string): { hash: string, protocol: string, toString(): string }
  export function IPFSAccessController (options?: { write?: string[], storage?: OrbitDBStorage }): AccessControllerFactory
  export function KeyStore (init?: { storage?: OrbitDBStorage, path?: string }): Promise<any>
  export function Identities (init: { keystore?: any, path?: string, storage?: OrbitDBStorage, ipfs?: OrbitDBIpfs }): Promise<any>
  export function MemoryStorage (): Promise<OrbitDBStorage>
  export function LevelStorage (init: { path: string, valueEncoding?: string }): Promise<OrbitDBStorage>
  export function LRUStorage (init?: { size?: number }): Promise<OrbitDBStorage>
  export function ComposedStorage (a: OrbitDBStorage, b: OrbitDBStorage): Promise<OrbitDBStorage>
  export function IPFSBlockStorage (init: { ipfs: OrbitDBIpfs, pin?: boolean, timeout?: number }): Promise<OrbitDBStorage>
}
