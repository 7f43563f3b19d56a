/**
 * `npp-catalog`: the catalog as an OrbitDB database type, built for speed.
 *
 * - Batched operations (`ops.ts`): one log entry carries many puts/deletes
 *   (up to `MAX_OPS_PER_ENTRY`, and about `MAX_ENTRY_BYTES` encoded), so a
 *   bulk import appends and replicates a handful of entries instead of one
 *   per piece.
 * - An index kept beside the log (`doc-index.ts`): lookups by hash are a map
 *   read, lookups by instrument read only the matches. It is persisted
 *   (`persistence.ts`) with the log heads it reflects, so opening a big
 *   catalog does not replay the log; after an unclean stop the heads differ
 *   and the index is rebuilt from the log.
 * - Deterministic merge: every operation is ordered by (entry clock time,
 *   clock id, entry hash, position in the entry); the greatest write to a key
 *   wins on every replica, whatever order entries arrived in.
 *
 * It stays an ordinary OrbitDB database: replicated by OrbitDB's sync,
 * guarded by its access controller, openable by address by any peer that
 * registered the type.
 */
import { Database, LevelStorage } from '@orbitdb/core'
import { joinPath } from '../utils/path.ts'
import { logger } from '../utils/logger.ts'
import { limitReferences } from '../orbitdb/patches.ts'
import { DocumentIndex } from './doc-index.ts'
import { IndexPersistence } from './persistence.ts'
import { MAX_OPS_PER_ENTRY, toBatches, type Doc, type Op } from './ops.ts'
import type { DatabaseInit, OrbitDBDatabase, OrbitDBEntry } from '../orbitdb/types.ts'

export { MAX_OPS_PER_ENTRY, MAX_ENTRY_BYTES, SMALL_ENTRY_OPS } from './ops.ts'

const log = logger('catalog')

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

export interface CatalogDatabase<T extends Record<string, any> = Record<string, any>> extends OrbitDBDatabase {
  indexBy: string
  /** Fields with a secondary index (what `getBy` accepts). */
  indexFields: readonly string[]
  /** Put one document (an entry of its own). */
  put(doc: T): Promise<string>
  /**
   * Many writes in as few entries as possible; resolves to the entry hashes.
   * Either `{ put, del }` (puts first, then deletes) or an ordered list of
   * `{ put: doc }` / `{ del: key }`, applied in that order.
   */
  batch(ops: { put?: T[], del?: string[] } | Array<{ put: T } | { del: string }>): Promise<string[]>
  /** Delete one document. */
  del(key: string): Promise<string>
  /** The document with `key`, from the index. */
  get(key: string): Promise<{ key: string, value: T } | undefined>
  /** Documents whose indexed `field` equals `value` (the field must be in `indexFields`). */
  getBy(field: string, value: unknown): Promise<T[]>
  /** Documents matching `findFn`, scanning the index (not the log). */
  query(findFn: (doc: T) => boolean): Promise<T[]>
  /** Every document (as `{ key, value }`). */
  all(): Promise<Array<{ key: string, value: T }>>
  /** Number of documents. */
  count(): Promise<number>
  iterator(options?: { amount?: number }): AsyncGenerator<{ key: string, value: T }>
}

export const Catalog = Object.assign((options: CatalogStoreOptions = {}) => async (init: DatabaseInit): Promise<CatalogDatabase> => {
  const indexBy = options.indexBy ?? 'hash'
  const maxOps = options.maxOpsPerEntry ?? MAX_OPS_PER_ENTRY
  const index = new DocumentIndex(options.indexFields ?? ['instrument'])
  const disk = options.memory !== true
    ? new IndexPersistence(await LevelStorage({ path: joinPath(init.directory ?? './orbitdb', init.address, '_catalog'), valueEncoding: 'utf8' }), index)
    : undefined
  let indexSource: 'memory' | 'disk' | 'log' = 'memory'
  // every index change waits for the initial load: updates that arrive
  // while the database is being created queue behind it
  let openGate: () => void = () => {}
  let ready: Promise<void> = new Promise<void>(resolve => { openGate = resolve }).then(async () => { await load() })

  const logHeads = async (): Promise<string[]> => (await db.log.heads()).map(e => e.hash).sort()

  /** Index `entry` and every entry behind it not indexed yet (walking `next` pointers in the local log). */
  const catchUp = async (entry: OrbitDBEntry): Promise<void> => {
    const changed = new Set<string>()
    const added: string[] = []
    const stack: OrbitDBEntry[] = [entry]
    const seen = new Set<string>()
    const logRef = db.log as unknown as { get(hash: string): Promise<OrbitDBEntry | undefined> }
    while (stack.length > 0) {
      const e = stack.pop()!
      if (index.has(e.hash) || seen.has(e.hash)) continue
      seen.add(e.hash)
      index.apply(e, changed)
      added.push(e.hash)
      for (const next of [...e.next, ...(e.refs ?? [])]) {
        if (index.has(next) || seen.has(next)) continue
        const prev = await logRef.get(next)
        if (prev != null) stack.push(prev)
      }
    }
    await disk?.persist(changed, added, await logHeads())
  }

  const rebuild = async (): Promise<void> => {
    index.clear()
    const changed = new Set<string>()
    for await (const entry of db.log.iterator()) index.apply(entry, changed)
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

  const db: OrbitDBDatabase = await Database({ ...init, onUpdate })
  // back-references only to the run of recent small entries (see SMALL_ENTRY_OPS)
  limitReferences(db, () => index.smallStreak)
  openGate()
  await ready

  const validDoc = (doc: Doc): string => {
    const key = doc?.[indexBy]
    if (typeof key !== 'string' || key.length === 0) throw new TypeError(`the document has no string field '${indexBy}'`)
    return key
  }

  const validKey = (key: unknown): string => {
    if (typeof key !== 'string' || key.length === 0) throw new TypeError('expected a non-empty string key to delete')
    return key
  }

  const put = async (doc: Doc): Promise<string> => {
    return await db.addOperation({ op: 'PUT', key: validDoc(doc), value: doc })
  }

  const del = async (key: string): Promise<string> => {
    return await db.addOperation({ op: 'DEL', key })
  }

  const batch = async (input: { put?: Doc[], del?: string[] } | Array<{ put: Doc } | { del: string }>): Promise<string[]> => {
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

  const get = async (key: string): Promise<{ key: string, value: Doc } | undefined> => {
    await ready
    const value = index.get(key)
    return value === undefined ? undefined : { key, value }
  }

  const getBy = async (field: string, value: unknown): Promise<Doc[]> => {
    await ready
    return index.getBy(field, value)
  }

  const query = async (findFn: (doc: Doc) => boolean): Promise<Doc[]> => {
    await ready
    const results: Doc[] = []
    for (const [, doc] of index.values()) if (findFn(doc)) results.push(doc)
    return results
  }

  const iterator = async function * ({ amount = -1 }: { amount?: number } = {}): AsyncGenerator<{ key: string, value: Doc }> {
    await ready
    let n = 0
    for (const [key, value] of index.values()) {
      if (amount >= 0 && n++ >= amount) return
      yield { key, value }
    }
  }

  const all = async (): Promise<Array<{ key: string, value: Doc }>> => {
    const out = []
    for await (const doc of iterator()) out.push(doc)
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
    await db.drop()
    await disk?.clear()
  }

  return { ...db, type: CATALOG_TYPE, indexBy, indexFields: index.fields, get indexSource () { return indexSource }, put, batch, del, get, getBy, query, all, count, iterator, close, drop }
}, { type: CATALOG_TYPE })
