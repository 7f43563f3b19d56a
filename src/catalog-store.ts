/**
 * `npp-catalog`: the catalog as an OrbitDB database type, built for speed.
 *
 * - Batched operations: one log entry carries many puts/deletes (up to
 *   `MAX_OPS_PER_ENTRY`, and about `MAX_ENTRY_BYTES` encoded), so a bulk import
 *   appends and replicates a handful of entries instead of one per piece.
 * - An index kept beside the log: lookups by hash are a map read, lookups by
 *   instrument read only the matches. It is persisted (a page per key in the
 *   index storage) with the log heads it reflects, so opening a big catalog
 *   does not replay the log; after an unclean stop the heads differ and the
 *   index is rebuilt from the log.
 * - Deterministic merge: every operation is ordered by (entry clock time,
 *   clock id, entry hash, position in the entry); the greatest write to a key
 *   wins on every replica, whatever order entries arrived in.
 *
 * It stays an ordinary OrbitDB database: replicated by OrbitDB's sync,
 * guarded by its access controller, openable by address by any peer that
 * registered the type.
 */
import { Database, MemoryStorage, LevelStorage } from '@orbitdb/core'
import { joinPath } from './path.ts'
import { logger } from './logger.ts'
import type { DatabaseInit, OrbitDBDatabase, OrbitDBEntry, OrbitDBStorage } from './orbitdb-types.ts'

const log = logger('catalog-store')

export const CATALOG_TYPE = 'npp-catalog'
/** Operations carried by one log entry at most. */
export const MAX_OPS_PER_ENTRY = 1000
/** Encoded size one log entry aims to stay under (a block is at most 1 MiB on the wire). */
export const MAX_ENTRY_BYTES = 256 * 1024

type Op<T> = { op: 'PUT', key: string, value: T } | { op: 'DEL', key: string }
interface BatchPayload<T> { op: 'BATCH', ops: Array<Op<T>> }

/** Total order of operations: [clock time, clock id, entry hash, index in entry]. */
type Order = [number, string, string, number]

interface Slot<T> { order: Order, value?: T }

function compare (a: Order, b: Order): number {
  if (a[0] !== b[0]) return a[0] - b[0]
  if (a[1] !== b[1]) return a[1] < b[1] ? -1 : 1
  if (a[2] !== b[2]) return a[2] < b[2] ? -1 : 1
  return a[3] - b[3]
}

function isOp (value: unknown): value is Op<unknown> {
  const op = value as Op<unknown>
  return op != null && typeof op.key === 'string' && op.key.length > 0 && (op.op === 'PUT' || op.op === 'DEL')
}

/** Operations of an entry, whether it is a batch or a single Documents-style op. */
function opsOf<T> (entry: OrbitDBEntry): Array<Op<T>> {
  const payload = entry.payload as BatchPayload<T> | Op<T>
  if (payload == null || typeof payload !== 'object') return []
  if (payload.op === 'BATCH' && Array.isArray((payload as BatchPayload<T>).ops)) return (payload as BatchPayload<T>).ops.filter(isOp) as Array<Op<T>>
  return isOp(payload) ? [payload as Op<T>] : []
}

export interface CatalogStoreOptions {
  /** Field the documents are keyed by. @default 'hash' */
  indexBy?: string
  /** Fields with a secondary index (exact-match lookups). @default ['instrument'] */
  indexFields?: string[]
  /** Keep the index in memory only (rebuilt from the log at every open). @default false */
  memory?: boolean
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

const INDEX_VERSION = 1

export const Catalog = Object.assign((options: CatalogStoreOptions = {}) => async (init: DatabaseInit): Promise<CatalogDatabase> => {
  const indexBy = options.indexBy ?? 'hash'
  const indexFields = options.indexFields ?? ['instrument']
  const docs = new Map<string, Slot<Record<string, any>>>()
  const byField = new Map<string, Map<string, Set<string>>>(indexFields.map(f => [f, new Map()]))
  const indexed = new Set<string>()
  const storage: OrbitDBStorage = options.memory === true
    ? await MemoryStorage()
    : await LevelStorage({ path: joinPath(init.directory ?? './orbitdb', init.address, '_catalog') })
  // every index change waits for the initial load: updates that arrive
  // while the database is being created queue behind it
  let openGate: () => void = () => {}
  let ready: Promise<void> = new Promise<void>(resolve => { openGate = resolve }).then(async () => { await load() })
  let database: OrbitDBDatabase | undefined

  const fieldKey = (value: unknown): string | undefined => value === undefined ? undefined : JSON.stringify(value)

  /** Add `key` to (or remove it from) the secondary index of each indexed field of `value`. */
  const updateFieldIndex = (key: string, value: Record<string, any> | undefined, add: boolean): void => {
    if (value == null) return
    for (const [field, map] of byField) {
      const fk = fieldKey(value[field])
      if (fk === undefined) continue
      let set = map.get(fk)
      if (add) {
        if (set == null) map.set(fk, set = new Set())
        set.add(key)
      } else if (set != null) {
        set.delete(key)
        if (set.size === 0) map.delete(fk)
      }
    }
  }

  /** Apply one entry's operations; returns the keys whose winner changed. */
  const applyEntry = (entry: OrbitDBEntry, changed: Set<string>): void => {
    if (indexed.has(entry.hash)) return
    indexed.add(entry.hash)
    const ops = opsOf<Record<string, any>>(entry)
    ops.forEach((op, i) => {
      const order: Order = [entry.clock.time, entry.clock.id, entry.hash, i]
      const current = docs.get(op.key)
      if (current != null && compare(current.order, order) > 0) return
      updateFieldIndex(op.key, current?.value, false)
      const slot: Slot<Record<string, any>> = op.op === 'PUT' ? { order, value: op.value } : { order }
      docs.set(op.key, slot)
      updateFieldIndex(op.key, slot.value, true)
      changed.add(op.key)
    })
  }

  const persist = async (changed: Set<string>, entries: string[]): Promise<void> => {
    if (options.memory === true) return
    await Promise.all([
      ...[...changed].map(async key => { await storage.put(`d/${key}`, JSON.stringify(docs.get(key))) }),
      ...entries.map(async hash => { await storage.put(`e/${hash}`, '1') })
    ])
    // written last: an index whose heads marker matches the log is complete
    const heads = (await db.log.heads()).map(e => e.hash).sort()
    await storage.put('meta', JSON.stringify({ v: INDEX_VERSION, heads }))
  }

  /** Index `entry` and every entry behind it not indexed yet (walking `next` pointers in the local log). */
  const catchUp = async (entry: OrbitDBEntry): Promise<void> => {
    const changed = new Set<string>()
    const added: string[] = []
    const stack: OrbitDBEntry[] = [entry]
    const seen = new Set<string>()
    const logRef = db.log as any
    while (stack.length > 0) {
      const e = stack.pop()!
      if (indexed.has(e.hash) || seen.has(e.hash)) continue
      seen.add(e.hash)
      applyEntry(e, changed)
      added.push(e.hash)
      for (const next of [...e.next, ...(e.refs ?? [])]) {
        if (indexed.has(next) || seen.has(next)) continue
        const prev = await logRef.get(next)
        if (prev != null) stack.push(prev)
      }
    }
    await persist(changed, added)
  }

  const rebuild = async (): Promise<void> => {
    docs.clear()
    indexed.clear()
    for (const map of byField.values()) map.clear()
    const changed = new Set<string>()
    const added: string[] = []
    for await (const entry of db.log.iterator()) {
      applyEntry(entry, changed)
      added.push(entry.hash)
    }
    if (options.memory !== true) await storage.clear()
    await persist(changed, added)
  }

  const load = async (): Promise<void> => {
    const started = Date.now()
    const heads = (await db.log.heads()).map(e => e.hash).sort()
    if (options.memory !== true) {
      const metaRaw = await storage.get('meta')
      const meta = typeof metaRaw === 'string' ? JSON.parse(metaRaw) : undefined
      if (meta?.v === INDEX_VERSION && JSON.stringify(meta.heads) === JSON.stringify(heads)) {
        for await (const [key, value] of storage.iterator()) {
          if (key.startsWith('d/')) {
            const slot = JSON.parse(String(value)) as Slot<Record<string, any>> | null
            if (slot == null) continue
            const docKey = key.slice(2)
            docs.set(docKey, slot)
            updateFieldIndex(docKey, slot.value, true)
          } else if (key.startsWith('e/')) {
            indexed.add(key.slice(2))
          }
        }
        log('loaded the index of %s from disk: %d keys in %d ms', init.address, docs.size, Date.now() - started)
        return
      }
    }
    if (heads.length > 0) {
      await rebuild()
      log('rebuilt the index of %s from the log: %d keys in %d ms', init.address, docs.size, Date.now() - started)
    }
  }

  const onUpdate = async (_log: unknown, entry: OrbitDBEntry): Promise<void> => {
    ready = ready.then(async () => { await catchUp(entry) }).catch((err: any) => { log.error('indexing %s failed: %s', entry.hash, err?.message ?? err) })
    await ready
  }

  const db: OrbitDBDatabase = database = await Database({ ...init, onUpdate })
  openGate()
  await ready

  const validDoc = (doc: Record<string, any>): string => {
    const key = doc?.[indexBy]
    if (typeof key !== 'string' || key.length === 0) throw new TypeError(`the document has no string field '${indexBy}'`)
    return key
  }

  const put = async (doc: Record<string, any>): Promise<string> => {
    return await db.addOperation({ op: 'PUT', key: validDoc(doc), value: doc })
  }

  const del = async (key: string): Promise<string> => {
    return await db.addOperation({ op: 'DEL', key })
  }

  const validKey = (key: unknown): string => {
    if (typeof key !== 'string' || key.length === 0) throw new TypeError('expected a non-empty string key to delete')
    return key
  }

  const batch = async (input: { put?: Array<Record<string, any>>, del?: string[] } | Array<{ put: Record<string, any> } | { del: string }>): Promise<string[]> => {
    const ops: Array<Op<Record<string, any>>> = Array.isArray(input)
      ? input.map(o => 'put' in o ? { op: 'PUT' as const, key: validDoc(o.put), value: o.put } : { op: 'DEL' as const, key: validKey(o.del) })
      : [
          ...(input.put ?? []).map(doc => ({ op: 'PUT' as const, key: validDoc(doc), value: doc })),
          ...(input.del ?? []).map(key => ({ op: 'DEL' as const, key: validKey(key) }))
        ]
    const hashes: string[] = []
    let chunk: typeof ops = []
    let bytes = 0
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return
      const payload: BatchPayload<Record<string, any>> = { op: 'BATCH', ops: chunk }
      chunk = []
      bytes = 0
      hashes.push(await db.addOperation(payload))
    }
    for (const op of ops) {
      const size = JSON.stringify(op).length + 8
      if (chunk.length >= MAX_OPS_PER_ENTRY || (chunk.length > 0 && bytes + size > MAX_ENTRY_BYTES)) await flush()
      chunk.push(op)
      bytes += size
    }
    await flush()
    return hashes
  }

  const get = async (key: string): Promise<{ key: string, value: Record<string, any> } | undefined> => {
    await ready
    const value = docs.get(key)?.value
    return value === undefined ? undefined : { key, value }
  }

  const getBy = async (field: string, value: unknown): Promise<Array<Record<string, any>>> => {
    await ready
    const map = byField.get(field)
    if (map == null) throw new TypeError(`'${field}' is not an indexed field (indexFields: ${indexFields.join(', ')})`)
    const keys = map.get(fieldKey(value) ?? '') ?? new Set()
    return [...keys].map(k => docs.get(k)?.value).filter((v): v is Record<string, any> => v !== undefined)
  }

  const query = async (findFn: (doc: Record<string, any>) => boolean): Promise<Array<Record<string, any>>> => {
    await ready
    const results: Array<Record<string, any>> = []
    for (const slot of docs.values()) {
      if (slot.value !== undefined && findFn(slot.value)) results.push(slot.value)
    }
    return results
  }

  const iterator = async function * ({ amount = -1 }: { amount?: number } = {}): AsyncGenerator<{ key: string, value: Record<string, any> }> {
    await ready
    let n = 0
    for (const [key, slot] of docs) {
      if (slot.value === undefined) continue
      if (amount >= 0 && n++ >= amount) return
      yield { key, value: slot.value }
    }
  }

  const all = async (): Promise<Array<{ key: string, value: Record<string, any> }>> => {
    const out = []
    for await (const doc of iterator()) out.push(doc)
    return out
  }

  const count = async (): Promise<number> => {
    await ready
    let n = 0
    for (const slot of docs.values()) if (slot.value !== undefined) n++
    return n
  }

  const close = async (): Promise<void> => {
    await db.close()
    await ready.catch(() => {})
    await storage.close()
  }

  const drop = async (): Promise<void> => {
    await db.drop()
    await storage.clear()
  }

  return { ...db, type: CATALOG_TYPE, indexBy, indexFields, put, batch, del, get, getBy, query, all, count, iterator, close, drop }
}, { type: CATALOG_TYPE })
