/**
 * `npp-catalog`: the catalog as an OrbitDB database type, built for speed.
 *
 * - Batched operations (`ops.ts`): one log entry carries many puts/deletes
 *   (up to `MAX_OPS_PER_ENTRY`, and about `MAX_ENTRY_BYTES` encoded), so a
 *   bulk import appends and replicates a handful of entries instead of one
 *   per piece.
 * - An index kept beside the log (`doc-index.ts`): lookups by key are a map
 *   read, lookups by an indexed field (`getBy`) read only the matches. It is
 *   persisted (`persistence.ts`, dag-cbor like the log) with the log heads it
 *   reflects, so opening a big catalog does not replay the log; after an
 *   unclean stop the heads differ and the index is rebuilt from the log.
 * - Deterministic merge: every operation is ordered by (entry clock time,
 *   clock id, entry hash, position in the entry); the greatest write to a key
 *   wins on every replica, whatever order entries arrived in.
 *
 * It stays an ordinary OrbitDB database: replicated by OrbitDB's sync,
 * guarded by its access controller, openable by address by any peer that
 * registered the type.
 *
 * ## Beside OrbitDB's Documents
 *
 * Everything Documents does, the catalog does the same way, and OrbitDB's
 * own Documents tests run against it (test/conformance/): `put`, `get`,
 * `del`, `query`, `iterator`, `all`, `drop`, `close`, the same results
 * (`{ hash, key, value }`, `hash` being the entry that wrote the document),
 * the same order (`iterator()` and `query()` newest first by each document's
 * last write, `all()` the reverse), the same error messages, the same values
 * after a reopen (what dag-cbor carries: bytes, bigints, CIDs; a Map comes
 * back as an object). An entry written by Documents (`{ op, key, value }`)
 * is read as a one-operation batch.
 *
 * What differs on purpose: the type is `npp-catalog`; `indexBy` defaults to
 * `'hash'` (a piece's key), not `'_id'`; there is `batch()`, `getBy()`,
 * `count()`, `indexFields` and `indexSource`; and where Documents lets the
 * log's traversal decide between writes with equal clocks, the catalog's
 * merge order decides.
 *
 * What differs otherwise:
 * - Keys are non-empty strings or finite numbers (`0` included). Documents
 *   takes any truthy value, and refuses `0`; a key of another type could not
 *   be looked up again, so `put` refuses it, and a remote entry using one is
 *   skipped.
 * - Errors are classes with a stable `name`, `InvalidDocumentKeyError` and
 *   `DocumentNotFoundError`, with Documents' messages (it throws `Error`).
 * - `batch()` deleting a key that holds no document is not an error.
 * - `iterator({ amount })` with `amount` 0 yields nothing, and a negative one
 *   yields all (Documents 4.0.0 tests `amount` after yielding, so either
 *   yields up to one document there).
 * - The index holds the very objects written through this instance until it
 *   is reopened (Documents reads each value back from the log): a Map put
 *   here reads back as a Map until then, and changing a document after
 *   `put`, or a result after a read, changes what the catalog returns.
 */
import { Database, LevelStorage } from '@orbitdb/core'
import { joinPath } from '../utils/path.ts'
import { logger } from '../utils/logger.ts'
import { describe } from '../errors.ts'
import { limitReferences } from '../orbitdb/patches.ts'
import { DocumentIndex, type IndexedDoc } from './doc-index.ts'
import { IndexPersistence } from './persistence.ts'
import { InvalidDocumentKeyError, DocumentNotFoundError } from './errors.ts'
import { MAX_OPS_PER_ENTRY, compare, isKey, toBatches, type Doc, type Key, type Op } from './ops.ts'
import type { DatabaseInit, OrbitDBDatabase, OrbitDBEntry } from '../orbitdb/types.ts'

export { MAX_OPS_PER_ENTRY, MAX_ENTRY_BYTES, SMALL_ENTRY_OPS } from './ops.ts'
export { InvalidDocumentKeyError, DocumentNotFoundError } from './errors.ts'
export type { Key as CatalogKey } from './ops.ts'

const log = logger('catalog')

/** Entries in merge order (clock time, clock id, hash): see `compare` in ops.ts. */
const compareEntries = (a: OrbitDBEntry, b: OrbitDBEntry): number =>
  compare({ hash: a.hash, time: a.clock.time, id: a.clock.id }, 0, { hash: b.hash, time: b.clock.time, id: b.clock.id }, 0)

export const CATALOG_TYPE = 'npp-catalog'

export interface CatalogStoreOptions {
  /** Field the documents are keyed by. @default 'hash' */
  indexBy?: string
  /** Fields with a secondary index (exact-match lookups). @default ['instrument'] */
  indexFields?: string[]
  /** Keep the index in memory only (rebuilt from the log at every open). @default false */
  memory?: boolean
  /** Operations per log entry at most. @default MAX_OPS_PER_ENTRY */
  maxOpsPerEntry?: number
}

/** A document as read: the hash of the log entry that wrote it, its key and its value (as Documents returns them). */
export interface CatalogDocument<T = Record<string, any>, K extends Key = string> { hash: string, key: K, value: T }

export interface CatalogDatabase<T extends Record<string, any> = Record<string, any>, K extends Key = string> extends OrbitDBDatabase {
  indexBy: string
  /** Fields with a secondary index (what `getBy` accepts). */
  indexFields: readonly string[]
  /**
   * Put one document (an entry of its own); resolves to the entry hash.
   * Throws `InvalidDocumentKeyError` when `doc[indexBy]` is not a non-empty
   * string or a finite number.
   */
  put(doc: T): Promise<string>
  /**
   * Many writes in as few entries as possible; resolves to the entry hashes.
   * Either `{ put, del }` (puts first, then deletes) or an ordered list of
   * `{ put: doc }` / `{ del: key }`, applied in that order. Deleting a key
   * that holds no document is not an error here (it changes nothing).
   */
  batch(ops: { put?: T[], del?: K[] } | Array<{ put: T } | { del: K }>): Promise<string[]>
  /** Delete one document; throws `DocumentNotFoundError` when `key` holds none. */
  del(key: K): Promise<string>
  /** The document with `key`, from the index. */
  get(key: K): Promise<CatalogDocument<T, K> | undefined>
  /** Documents whose indexed `field` equals `value`, newest first (the field must be in `indexFields`). */
  getBy(field: string, value: unknown): Promise<T[]>
  /** Documents matching `findFn`, newest first, scanning the index (not the log). */
  query(findFn: (doc: T) => boolean): Promise<T[]>
  /** Every document, oldest first (the reverse of `iterator()`, as Documents' `all()`). */
  all(): Promise<Array<CatalogDocument<T, K>>>
  /** Number of documents. */
  count(): Promise<number>
  /** Documents newest first (by their last write), at most `amount` of them (all when absent or negative). */
  iterator(options?: { amount?: number }): AsyncGenerator<CatalogDocument<T, K>>
}

export const Catalog = Object.assign((options: CatalogStoreOptions = {}) => async (init: DatabaseInit): Promise<CatalogDatabase<Doc, Key>> => {
  const indexBy = options.indexBy ?? 'hash'
  const maxOps = options.maxOpsPerEntry ?? MAX_OPS_PER_ENTRY
  const index = new DocumentIndex(options.indexFields ?? ['instrument'])
  const disk = options.memory !== true
    ? new IndexPersistence(init.catalogStorage ?? await LevelStorage({ path: joinPath(init.directory ?? './orbitdb', init.address, '_catalog'), valueEncoding: 'view' }), index)
    : undefined
  let indexSource: 'memory' | 'disk' | 'log' = 'memory'
  // every index change waits for the initial load: updates that arrive
  // while the database is being created queue behind it
  let openGate: () => void = () => {}
  let ready: Promise<void> = new Promise<void>(resolve => { openGate = resolve }).then(async () => { await load() })

  const logHeads = async (): Promise<string[]> => (await db.log.heads()).map(e => e.hash).sort()

  /** Index `entry` and every entry behind it not indexed yet (walking `next` pointers in the local log). */
  const catchUp = async (entry: OrbitDBEntry): Promise<void> => {
    const changed = new Set<Key>()
    const found: OrbitDBEntry[] = []
    const stack: OrbitDBEntry[] = [entry]
    const seen = new Set<string>()
    const logRef = db.log as unknown as { get(hash: string): Promise<OrbitDBEntry | undefined> }
    while (stack.length > 0) {
      const e = stack.pop()!
      if (index.has(e.hash) || seen.has(e.hash)) continue
      seen.add(e.hash)
      found.push(e)
      for (const next of [...e.next, ...(e.refs ?? [])]) {
        if (index.has(next) || seen.has(next)) continue
        const prev = await logRef.get(next)
        if (prev != null) stack.push(prev)
      }
    }
    // oldest first, so the index stays in merge order without a sort
    found.sort(compareEntries)
    for (const e of found) index.apply(e, changed)
    await disk?.persist(changed, found.map(e => e.hash), await logHeads())
  }

  const rebuild = async (): Promise<void> => {
    index.clear()
    const changed = new Set<Key>()
    // the log iterates newest first; applied oldest first, the index stays in merge order
    const entries: OrbitDBEntry[] = []
    for await (const entry of db.log.iterator()) entries.push(entry)
    for (let n = entries.length - 1; n >= 0; n--) index.apply(entries[n]!, changed)
    await disk?.snapshot(await logHeads())
  }

  const loadFromDisk = async (heads: string[]): Promise<boolean> => {
    try {
      return await disk?.load(heads) ?? false
    } catch (err) {
      // the log is the truth: an unreadable index is rebuilt from it
      log.error('the saved index of %s is unreadable, rebuilding it from the log - %e', init.address, err)
      return false
    }
  }

  const load = async (): Promise<void> => {
    const started = Date.now()
    const heads = await logHeads()
    if (await loadFromDisk(heads)) {
      indexSource = 'disk'
      log('loaded the index of %s from disk: %d keys in %d ms', init.address, index.docs.size, Date.now() - started)
      return
    }
    if (heads.length > 0) {
      await rebuild()
      indexSource = 'log'
      log('rebuilt the index of %s from the log: %d keys in %d ms', init.address, index.docs.size, Date.now() - started)
    } else {
      index.clear()
    }
  }

  const onUpdate = async (_log: unknown, entry: OrbitDBEntry): Promise<void> => {
    ready = ready.then(async () => { await catchUp(entry) }).catch((err: unknown) => { log.error('indexing %s failed - %e', entry.hash, err) })
    await ready
  }

  // sync starts once the index is loaded, as the last step of opening (as
  // Documents starts it last): a peer's 'join' or updates cannot come before
  // the caller holds the database and could listen for them
  let db: OrbitDBDatabase
  try {
    db = await Database({ ...init, onUpdate, syncAutomatically: false })
  } catch (err) {
    // the index store was opened first: a failed open (no file descriptors
    // left, a store locked) would otherwise leave it open for good
    await disk?.close().catch(() => {})
    throw err
  }
  // back-references only to the run of recent small entries (see SMALL_ENTRY_OPS)
  limitReferences(db, () => index.smallStreak)
  openGate()
  await ready
  if (init.syncAutomatically !== false) await db.sync.start()

  const validDoc = (doc: Doc): Key => {
    const key: unknown = doc?.[indexBy]
    if (!isKey(key)) throw new InvalidDocumentKeyError(indexBy, key)
    return key
  }

  const validKey = (key: unknown): Key => {
    if (!isKey(key)) throw new TypeError(`expected a non-empty string or finite number key to delete, got ${describe(key)}`)
    return key
  }

  const put = async (doc: Doc): Promise<string> => {
    return await db.addOperation({ op: 'PUT', key: validDoc(doc), value: doc })
  }

  const del = async (key: Key): Promise<string> => {
    await ready
    if (index.get(key) === undefined) throw new DocumentNotFoundError(key)
    return await db.addOperation({ op: 'DEL', key })
  }

  const batch = async (input: { put?: Doc[], del?: Key[] } | Array<{ put: Doc } | { del: Key }>): Promise<string[]> => {
    const ops: Op[] = Array.isArray(input)
      ? input.map(o => 'put' in o ? { op: 'PUT' as const, key: validDoc(o.put), value: o.put } : { op: 'DEL' as const, key: validKey(o.del) })
      : [
          ...(input.put ?? []).map(doc => ({ op: 'PUT' as const, key: validDoc(doc), value: doc })),
          ...(input.del ?? []).map(key => ({ op: 'DEL' as const, key: validKey(key) }))
        ]
    const hashes: string[] = []
    for (const payload of toBatches(ops, maxOps)) hashes.push(await db.addOperation(payload))
    return hashes
  }

  const get = async (key: Key): Promise<IndexedDoc | undefined> => {
    await ready
    return index.read(key)
  }

  const getBy = async (field: string, value: unknown): Promise<Doc[]> => {
    await ready
    return index.getBy(field, value)
  }

  const query = async (findFn: (doc: Doc) => boolean): Promise<Doc[]> => {
    await ready
    const results: Doc[] = []
    for (const slot of index.newestFirst()) if (findFn(slot.value!)) results.push(slot.value!)
    return results
  }

  const iterator = async function * ({ amount }: { amount?: number } = {}): AsyncGenerator<IndexedDoc> {
    await ready
    const slots = index.newestFirst()
    const end = amount == null || amount < 0 ? slots.length : Math.min(amount, slots.length)
    for (let n = 0; n < end; n++) {
      const slot = slots[n]!
      yield { hash: slot.e.hash, key: slot.k, value: slot.value! }
    }
  }

  const all = async (): Promise<IndexedDoc[]> => {
    await ready
    const slots = index.newestFirst()
    const out: IndexedDoc[] = new Array(slots.length)
    for (let n = 0; n < slots.length; n++) {
      const slot = slots[n]!
      out[slots.length - 1 - n] = { hash: slot.e.hash, key: slot.k, value: slot.value! }
    }
    return out
  }

  const count = async (): Promise<number> => {
    await ready
    return index.count()
  }

  const close = async (): Promise<void> => {
    // a clean stop leaves one compact snapshot, so the next open reads a few
    // values: stop receiving, let indexing settle, snapshot, then close the log
    await db.sync.stop()
    await ready.catch(() => {})
    try {
      await disk?.snapshot(await logHeads())
    } catch (err) {
      log.error('could not write the index snapshot of %s - %e', init.address, err)
    }
    await db.close()
    await disk?.close()
  }

  const drop = async (): Promise<void> => {
    // the log, the index in memory and the index on disk go together: after
    // this, a close snapshots an empty index and a reopen finds nothing
    await ready.catch(() => {})
    await db.drop()
    index.clear()
    await disk?.clear()
  }

  return { ...db, type: CATALOG_TYPE, indexBy, indexFields: index.fields, get indexSource () { return indexSource }, put, batch, del, get, getBy, query, all, count, iterator, close, drop }
}, { type: CATALOG_TYPE })
