/**
 * One LevelDB for the heads, the log index and the catalog index of every
 * database a node opens through its stack, each in a sublevel of its own.
 *
 * OrbitDB gives every database two LevelDB stores of its own (`log/_heads`,
 * `log/_index`) and the catalog a third (`_catalog`). Each store holds four
 * file descriptors or more (LOCK, LOG, MANIFEST, its write-ahead log, and
 * its tables once reopened) and its own native buffers, so a keeper of 500
 * users held 16,614 open files (beyond the common `ulimit -n` of 1,024,
 * where replicas fail to open) and about 50 KB of native memory per store.
 * In one shared store, files stay at a constant few dozen however many
 * databases are open (`npm run bench:keeper`, bench/RESULTS.md).
 *
 * Directories written before the shared store keep working: a database
 * whose own heads store exists is opened with OrbitDB's own stores, as before
 * (`legacy`), so nothing stored is lost or copied.
 */
import { Level } from 'level'
import { MemoryStorage } from '@orbitdb/core'
import type { OrbitDBStorage } from '../orbitdb/types.ts'

/** What a sublevel holds for its database. */
export type SharedStorageKind = 'heads' | 'index' | 'catalog'

const SUFFIX: Record<SharedStorageKind, string> = { heads: 'h', index: 'i', catalog: 'c' }

export interface SharedStorage {
  /** On disk (LevelDB), or in memory for the life of the node. */
  readonly persistent: boolean
  /**
   * The storage of `kind` for the database `address`: reads and writes its
   * sublevel; `close()` does nothing (the shared store closes with the stack)
   * and `clear()` clears that sublevel only (a dropped database).
   */
  storage(address: string, kind: SharedStorageKind): OrbitDBStorage
  /** A storage of this node's own (not a database's) named `name`, as `storage` is. */
  local(name: string): OrbitDBStorage
  /** Whether the sublevel of `kind` for `address` holds anything (the database was written here). */
  holds(address: string, kind: SharedStorageKind): Promise<boolean>
  /** Closes the store. Safe to call twice. */
  close(): Promise<void>
}

/** The sublevel name of `kind` for `address` (`/orbitdb/zdpu…` → `zdpu….h`). */
export function sublevelName (address: string, kind: SharedStorageKind): string {
  return `${address.replace(/^\/orbitdb\//, '')}.${SUFFIX[kind]}`
}

/** Opens (creating it if need be) the shared store at `path`. */
export async function openSharedStorage (path: string): Promise<SharedStorage> {
  const db = new Level<string, Uint8Array>(path, { valueEncoding: 'view' })
  await db.open()
  let closed: Promise<void> | undefined
  const storage = (name: string): OrbitDBStorage => {
    // the same encodings as OrbitDB's LevelStorage: string keys, values as
    // bytes ('view' encodes a non-byte value, such as the log index's
    // `true`, as its text)
    const sub = db.sublevel<string, Uint8Array>(name, { valueEncoding: 'view' })
    return {
      put: async (key: string, value: unknown) => { await sub.put(key, value as Uint8Array) },
      get: async (key: string) => await sub.get(key) ?? undefined,
      del: async (key: string) => { await sub.del(key) },
      iterator: async function * ({ amount, reverse }: { amount?: number, reverse?: boolean } = {}) {
        for await (const [key, value] of sub.iterator({ limit: amount ?? -1, reverse: reverse ?? false })) yield [key, value]
      } as OrbitDBStorage['iterator'],
      merge: async () => {},
      clear: async () => { await sub.clear() },
      close: async () => {}
    }
  }
  return {
    persistent: true,
    storage: (address, kind) => storage(sublevelName(address, kind)),
    // database sublevels end in '.h', '.i' or '.c'
    local: (name) => storage(`npp-${name}`),
    holds: async (address, kind) => (await db.sublevel<string, Uint8Array>(sublevelName(address, kind), { valueEncoding: 'view' }).keys({ limit: 1 }).all()).length > 0,
    async close () {
      closed ??= db.close()
      await closed
    }
  }
}

/**
 * The shared store of a node in memory (`storage: 'memory'`): one memory
 * storage per database and kind, kept until the node stops, so a database
 * closed and opened again (a keeper's idle replicas) keeps its heads and
 * indexes, as on disk.
 */
export function memorySharedStorage (): SharedStorage {
  const stores = new Map<string, Promise<OrbitDBStorage>>()
  const storage = (name: string): OrbitDBStorage => {
    // set at once: two storages of one name share one store
    let store = stores.get(name)
    if (store == null) {
      store = MemoryStorage() as Promise<OrbitDBStorage>
      stores.set(name, store)
    }
    return {
      put: async (key: string, value: unknown) => { await (await store).put(key, value) },
      get: async (key: string) => await (await store).get(key),
      del: async (key: string) => { await (await store).del(key) },
      iterator: async function * () {
        yield * (await store).iterator()
      } as OrbitDBStorage['iterator'],
      merge: async () => {},
      clear: async () => { await (await store).clear() },
      close: async () => {}
    }
  }
  return {
    persistent: false,
    storage: (address, kind) => storage(sublevelName(address, kind)),
    local: (name) => storage(`npp-${name}`),
    holds: async (address, kind) => stores.has(sublevelName(address, kind)),
    async close () { stores.clear() }
  }
}
