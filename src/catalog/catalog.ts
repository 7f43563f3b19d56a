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
import { joinPath } from '../utils/path.ts'
import { logger } from '../utils/logger.ts'
import { limitReferences } from '../orbitdb/patches.ts'
import type { DatabaseInit, OrbitDBDatabase, OrbitDBEntry, OrbitDBStorage } from '../orbitdb/types.ts'

const log = logger('catalog')

export const CATALOG_TYPE = 'npp-catalog'
/** Operations carried by one log entry at most. */
export const MAX_OPS_PER_ENTRY = 1000
/** Encoded size one log entry aims to stay under (a block is at most 1 MiB on the wire). */
export const MAX_ENTRY_BYTES = 256 * 1024
/**
 * Entries with at most this many operations are "small": new entries keep
 * OrbitDB's back-references (`refs`, for parallel fetching) to small entries
 * only. A receiver re-reads and re-verifies every entry a new entry refers
 * to, and doing that for big batch entries made one live update cost
 * ~200 ms on a 10,000-piece catalog instead of ~15 ms.
 */
export const SMALL_ENTRY_OPS = 16

type Op<T> = { op: 'PUT', key: string, value: T } | { op: 'DEL', key: string }
interface BatchPayload<T> { op: 'BATCH', ops: Array<Op<T>> }

/** An indexed log entry, shared by every slot it wrote (one copy of its strings). */
interface EntryRef { hash: string, time: number, id: string }

/** The winning write to a key: which entry, which operation in it, and the document (absent when deleted). */
interface Slot<T> { e: EntryRef, i: number, value?: T }

/** Total order of operations: (clock time, clock id, entry hash, index in entry). */
function compare (a: EntryRef, ai: number, b: EntryRef, bi: number): number {
  if (a.time !== b.time) return a.time - b.time
  if (a.id !== b.id) return a.id < b.id ? -1 : 1
  if (a.hash !== b.hash) return a.hash < b.hash ? -1 : 1
  return ai - bi
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

const INDEX_VERSION = 2
/** Documents per snapshot value. */
const SNAPSHOT_CHUNK = 5000

export const Catalog = Object.assign((options: CatalogStoreOptions = {}) => async (init: DatabaseInit): Promise<CatalogDatabase> => {
  const indexBy = options.indexBy ?? 'hash'
  const maxOps = options.maxOpsPerEntry ?? MAX_OPS_PER_ENTRY
  const indexFields = options.indexFields ?? ['instrument']
  const docs = new Map<string, Slot<Record<string, any>>>()
  const byField = new Map<string, Map<string, Set<string>>>(indexFields.map(f => [f, new Map()]))
  const indexed = new Map<string, EntryRef>()
  const persistent = options.memory !== true
  const storage: OrbitDBStorage = persistent
    ? await LevelStorage({ path: joinPath(init.directory ?? './orbitdb', init.address, '_catalog'), valueEncoding: 'utf8' })
    : await MemoryStorage()
  let indexSource: 'memory' | 'disk' | 'log' = 'memory'
  // every index change waits for the initial load: updates that arrive
  // while the database is being created queue behind it
  let openGate: () => void = () => {}
  let ready: Promise<void> = new Promise<void>(resolve => { openGate = resolve }).then(async () => { await load() })

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

  // how many of the most recent entries are small (see SMALL_ENTRY_OPS)
  let smallStreak = 0

  /** Apply one entry's operations; returns the keys whose winner changed. */
  const applyEntry = (entry: OrbitDBEntry, changed: Set<string>): void => {
    if (indexed.has(entry.hash)) return
    const ref: EntryRef = { hash: entry.hash, time: entry.clock.time, id: entry.clock.id }
    indexed.set(entry.hash, ref)
    const ops = opsOf<Record<string, any>>(entry)
    smallStreak = ops.length <= SMALL_ENTRY_OPS ? smallStreak + 1 : 0
    ops.forEach((op, i) => {
      const current = docs.get(op.key)
      if (current != null && compare(current.e, current.i, ref, i) > 0) return
      setSlot(op.key, op.op === 'PUT' ? { e: ref, i, value: op.value } : { e: ref, i })
      changed.add(op.key)
    })
  }

  /*
   * On disk (utf8 values in the index storage):
   *   a        every indexed entry, [[hash, time, id], ...]     } the snapshot,
   *   c/<n>    documents, [[key, entry #, op #, value], ...]    } written on close
   *   meta     { v, heads, chunks }: the log heads the index reflects, written last
   *   x/<key>  [entry hash, op #, value]   } changes since the snapshot,
   *   y/<hash> [time, id]                  } written as they happen
   * An index whose `meta.heads` are not the log's heads is incomplete (an
   * unclean stop) and is rebuilt from the log.
   */
  const logHeads = async (): Promise<string[]> => (await db.log.heads()).map(e => e.hash).sort()
  const writeMeta = async (chunks: number, heads?: string[]): Promise<void> => {
    heads ??= await logHeads()
    await storage.put('meta', JSON.stringify({ v: INDEX_VERSION, heads, chunks }))
  }
  let snapshotChunks = 0

  const persist = async (changed: Set<string>, entries: string[]): Promise<void> => {
    if (!persistent) return
    await Promise.all([
      ...[...changed].map(async key => {
        const slot = docs.get(key)!
        await storage.put(`x/${key}`, JSON.stringify([slot.e.hash, slot.i, slot.value ?? null]))
      }),
      ...entries.map(async hash => {
        const ref = indexed.get(hash)!
        await storage.put(`y/${hash}`, JSON.stringify([ref.time, ref.id]))
      })
    ])
    await writeMeta(snapshotChunks)
  }

  /** Replace everything on disk with one snapshot of the index (few, large values: fast to load). */
  const writeSnapshot = async (heads?: string[]): Promise<void> => {
    if (!persistent) return
    await storage.clear()
    const refs = [...indexed.values()]
    const position = new Map(refs.map((r, n) => [r.hash, n]))
    await storage.put('a', JSON.stringify(refs.map(r => [r.hash, r.time, r.id])))
    let chunk: unknown[] = []
    let chunks = 0
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return
      await storage.put(`c/${chunks++}`, JSON.stringify(chunk))
      chunk = []
    }
    for (const [key, slot] of docs) {
      chunk.push([key, position.get(slot.e.hash), slot.i, slot.value ?? null])
      if (chunk.length >= SNAPSHOT_CHUNK) await flush()
    }
    await flush()
    snapshotChunks = chunks
    await writeMeta(chunks, heads)
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
    for await (const entry of db.log.iterator()) applyEntry(entry, changed)
    await writeSnapshot()
  }

  const setSlot = (key: string, slot: Slot<Record<string, any>>): void => {
    updateFieldIndex(key, docs.get(key)?.value, false)
    docs.set(key, slot)
    updateFieldIndex(key, slot.value, true)
  }

  /** Load the index from disk; false when it does not match the log. */
  const loadFromDisk = async (heads: string[]): Promise<boolean> => {
    const metaRaw = await storage.get('meta')
    const meta = typeof metaRaw === 'string' ? JSON.parse(metaRaw) : undefined
    if (meta?.v !== INDEX_VERSION || JSON.stringify(meta.heads) !== JSON.stringify(heads)) return false
    let refs: EntryRef[] = []
    const docDeltas: Array<[string, string]> = []
    for await (const [key, value] of storage.iterator()) {
      const text = String(value)
      if (key === 'a') {
        refs = (JSON.parse(text) as Array<[string, number, string]>).map(([hash, time, id]) => ({ hash, time, id }))
        for (const ref of refs) indexed.set(ref.hash, ref)
      } else if (key.startsWith('c/')) {
        for (const [docKey, n, i, value] of JSON.parse(text) as Array<[string, number, number, Record<string, any> | null]>) {
          const slot: Slot<Record<string, any>> = value == null ? { e: refs[n]!, i } : { e: refs[n]!, i, value }
          docs.set(docKey, slot)
          updateFieldIndex(docKey, slot.value, true)
        }
      } else if (key.startsWith('x/')) {
        docDeltas.push([key.slice(2), text])
      } else if (key.startsWith('y/')) {
        const [time, id] = JSON.parse(text) as [number, string]
        const hash = key.slice(2)
        indexed.set(hash, { hash, time, id })
      }
    }
    // changes since the snapshot win over it
    for (const [docKey, text] of docDeltas) {
      const [hash, i, value] = JSON.parse(text) as [string, number, Record<string, any> | null]
      const e = indexed.get(hash)
      if (e == null) return false
      setSlot(docKey, value == null ? { e, i } : { e, i, value })
    }
    snapshotChunks = meta.chunks ?? 0
    return true
  }

  const load = async (): Promise<void> => {
    const started = Date.now()
    const heads = await logHeads()
    if (persistent && await loadFromDisk(heads)) {
      indexSource = 'disk'
      log('loaded the index of %s from disk: %d keys in %d ms', init.address, docs.size, Date.now() - started)
      return
    }
    if (heads.length > 0) {
      await rebuild()
      indexSource = 'log'
      log('rebuilt the index of %s from the log: %d keys in %d ms', init.address, docs.size, Date.now() - started)
    }
  }

  const onUpdate = async (_log: unknown, entry: OrbitDBEntry): Promise<void> => {
    ready = ready.then(async () => { await catchUp(entry) }).catch((err: any) => { log.error('indexing %s failed: %s', entry.hash, err?.message ?? err) })
    await ready
  }

  const db: OrbitDBDatabase = await Database({ ...init, onUpdate })
  // back-references only to the run of recent small entries (see SMALL_ENTRY_OPS)
  limitReferences(db, () => smallStreak)
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
      if (chunk.length >= maxOps || (chunk.length > 0 && bytes + size > MAX_ENTRY_BYTES)) await flush()
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
    // a clean stop leaves one compact snapshot, so the next open reads a few
    // values: stop receiving, let indexing settle, snapshot, then close the log
    await db.sync.stop()
    await ready.catch(() => {})
    try {
      await writeSnapshot(await logHeads())
    } catch (err: any) {
      log.error('could not write the index snapshot of %s: %s', init.address, err?.message ?? err)
    }
    await db.close()
    await storage.close()
  }

  const drop = async (): Promise<void> => {
    await db.drop()
    await storage.clear()
  }

  return { ...db, type: CATALOG_TYPE, indexBy, indexFields, get indexSource () { return indexSource }, put, batch, del, get, getBy, query, all, count, iterator, close, drop }
}, { type: CATALOG_TYPE })
