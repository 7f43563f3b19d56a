/**
 * The catalog's log format: what one entry's payload holds, the total order
 * of operations every replica agrees on, and how a batch of writes is cut
 * into entries.
 */
import type { OrbitDBEntry } from '../orbitdb/types.ts'

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

export type Doc = Record<string, any>
/**
 * A document key: a non-empty string or a finite number. (Documents takes
 * any truthy value, but an object or boolean key cannot be looked up again.)
 */
export type Key = string | number
export type Op<T = Doc> = { op: 'PUT', key: Key, value: T } | { op: 'DEL', key: Key }
export interface BatchPayload<T = Doc> { op: 'BATCH', ops: Array<Op<T>> }

/** An indexed log entry, shared by every slot it wrote (one copy of its strings). */
export interface EntryRef { hash: string, time: number, id: string }

/** Total order of operations: (clock time, clock id, entry hash, index in entry). */
export function compare (a: EntryRef, ai: number, b: EntryRef, bi: number): number {
  if (a.time !== b.time) return a.time - b.time
  if (a.id !== b.id) return a.id < b.id ? -1 : 1
  if (a.hash !== b.hash) return a.hash < b.hash ? -1 : 1
  return ai - bi
}

export function isKey (value: unknown): value is Key {
  return (typeof value === 'string' && value.length > 0) || (typeof value === 'number' && Number.isFinite(value))
}

function isOp (value: unknown): value is Op<unknown> {
  const op = value as Op<unknown>
  return op != null && isKey(op.key) && ((op.op === 'PUT' && op.value !== undefined) || op.op === 'DEL')
}

/**
 * Operations of an entry, whether it is a batch or a single Documents-style
 * op. Anything malformed (from a remote writer) is skipped, never thrown.
 */
export function opsOf<T = Doc> (entry: Pick<OrbitDBEntry, 'payload'>): Array<Op<T>> {
  const payload = entry.payload as BatchPayload<T> | Op<T> | null
  if (payload == null || typeof payload !== 'object') return []
  if (payload.op === 'BATCH') return Array.isArray(payload.ops) ? payload.ops.filter(isOp) as Array<Op<T>> : []
  return isOp(payload) ? [payload as Op<T>] : []
}

/**
 * About how many bytes `value` takes in dag-cbor (what OrbitDB encodes
 * entries with), counting a string's UTF-16 length: a walk ~8x faster than
 * `JSON.stringify`, and unlike it one that sees what JSON cannot say (bytes,
 * Maps, bigints). Non-ASCII text can take up to 3x that in UTF-8; the
 * 1 MiB block limit leaves room for it above `MAX_ENTRY_BYTES`.
 */
export function estimateSize (value: unknown): number {
  switch (typeof value) {
    case 'string': return value.length + 3
    case 'number': case 'bigint': return 9
    case 'object': {
      if (value === null) return 1
      if (ArrayBuffer.isView(value)) return value.byteLength + 5
      let n = 5
      if (Array.isArray(value)) {
        for (const item of value) n += estimateSize(item)
      } else if (value instanceof Map) {
        for (const [k, item] of value) n += estimateSize(k) + estimateSize(item)
      } else {
        for (const k in value) n += k.length + 3 + estimateSize((value as Record<string, unknown>)[k])
      }
      return n
    }
    default: return 1
  }
}

/**
 * Cut `ops` into payloads of at most `maxOps` operations and about
 * `maxBytes` encoded (`estimateSize`) each, in order.
 */
export function toBatches<T> (ops: Array<Op<T>>, maxOps: number = MAX_OPS_PER_ENTRY, maxBytes: number = MAX_ENTRY_BYTES): Array<BatchPayload<T>> {
  const batches: Array<BatchPayload<T>> = []
  let chunk: Array<Op<T>> = []
  let bytes = 0
  for (const op of ops) {
    const size = estimateSize(op)
    if (chunk.length >= maxOps || (chunk.length > 0 && bytes + size > maxBytes)) {
      batches.push({ op: 'BATCH', ops: chunk })
      chunk = []
      bytes = 0
    }
    chunk.push(op)
    bytes += size
  }
  if (chunk.length > 0) batches.push({ op: 'BATCH', ops: chunk })
  return batches
}
