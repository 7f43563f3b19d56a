/**
 * The catalog index on disk, so opening a big catalog does not replay its
 * log. Values are dag-cbor, the encoding of OrbitDB's entries, so whatever a
 * log entry can carry (bytes, bigints, CIDs, nested maps) reads back as the
 * same value it would from the log. In an OrbitDB storage:
 *
 *   a           every indexed entry, [[hash, time, id], ...]            } the snapshot,
 *   c/<n>       winners, oldest first, [[key, entry #, op #, value?], ...] } written on close
 *   meta        { v, heads, chunks }: the log heads the index reflects, written last
 *   x/<t><key>  [key, entry hash, op #, value?]  } changes since the snapshot, written as
 *   y/<hash>    [time, id]                        } they happen (t: s string key, n number key)
 *
 * A winner without a value is a deletion. An index whose `meta.heads` are
 * not the log's heads is incomplete (an unclean stop), and one of another
 * format `v` (version 2 was JSON) is not read: the caller rebuilds both from
 * the log.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { DocumentIndex, Slot } from './doc-index.ts'
import { compareSlots } from './doc-index.ts'
import type { Doc, EntryRef, Key } from './ops.ts'
import type { OrbitDBStorage } from '../orbitdb/types.ts'

export const INDEX_VERSION = 3
/** Documents per snapshot value. */
const SNAPSHOT_CHUNK = 5000

interface Meta { v: number, heads: string[], chunks?: number }
type SnapshotRow = [Key, number, number] | [Key, number, number, Doc]
type DeltaRow = [Key, string, number] | [Key, string, number, Doc]

/** The storage key of the change to `key` (its type kept: 1 and '1' are two keys). */
const deltaKey = (key: Key): string => `x/${typeof key === 'number' ? 'n' : 's'}${key}`

export class IndexPersistence {
  private readonly storage: OrbitDBStorage
  private readonly index: DocumentIndex
  private snapshotChunks = 0

  constructor (storage: OrbitDBStorage, index: DocumentIndex) {
    this.storage = storage
    this.index = index
  }

  /** Record what changed since the last write: the keys' winners and the entries applied. */
  async persist (changed: Iterable<Key>, entries: Iterable<string>, heads: string[]): Promise<void> {
    const writes: Array<Promise<void>> = []
    for (const key of changed) {
      const slot = this.index.docs.get(key)
      if (slot == null) continue
      const row: DeltaRow = slot.value === undefined ? [slot.k, slot.e.hash, slot.i] : [slot.k, slot.e.hash, slot.i, slot.value]
      writes.push(this.storage.put(deltaKey(key), dagCbor.encode(row)))
    }
    for (const hash of entries) {
      const ref = this.index.entries.get(hash)
      if (ref != null) writes.push(this.storage.put(`y/${hash}`, dagCbor.encode([ref.time, ref.id])))
    }
    await Promise.all(writes)
    await this.writeMeta(this.snapshotChunks, heads)
  }

  /** Replace everything on disk with one snapshot of the index (few, large values: fast to load). */
  async snapshot (heads: string[]): Promise<void> {
    await this.storage.clear()
    const refs = [...this.index.entries.values()]
    const position = new Map(refs.map((r, n) => [r.hash, n]))
    await this.storage.put('a', dagCbor.encode(refs.map(r => [r.hash, r.time, r.id])))
    let chunk: SnapshotRow[] = []
    let chunks = 0
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return
      await this.storage.put(`c/${chunks++}`, dagCbor.encode(chunk))
      chunk = []
    }
    for (const slot of this.index.slots()) {
      const n = position.get(slot.e.hash)!
      chunk.push(slot.value === undefined ? [slot.k, n, slot.i] : [slot.k, n, slot.i, slot.value])
      if (chunk.length >= SNAPSHOT_CHUNK) await flush()
    }
    await flush()
    this.snapshotChunks = chunks
    await this.writeMeta(chunks, heads)
  }

  /**
   * Load the saved index into the (empty) in-memory index; false, leaving
   * it to be rebuilt, when what is saved does not reflect `heads` or is of
   * another format. Throws when a value cannot be decoded.
   */
  async load (heads: string[]): Promise<boolean> {
    const meta = decodeOrUndefined<Meta>(await this.storage.get('meta'))
    if (meta?.v !== INDEX_VERSION || !Array.isArray(meta.heads) || !sameList(meta.heads, heads)) return false
    const index = this.index
    let refs: EntryRef[] = []
    const deltas: DeltaRow[] = []
    // chunks are decoded once the entries are known, by number (c/10 sorts before c/2)
    const chunks = new Map<number, Uint8Array>()
    for await (const [key, value] of this.storage.iterator()) {
      if (key === 'a') {
        refs = (dagCbor.decode(value) as Array<[string, number, string]>).map(([hash, time, id]) => ({ hash, time, id }))
        for (const ref of refs) index.entries.set(ref.hash, ref)
      } else if (key.startsWith('c/')) {
        chunks.set(Number(key.slice(2)), value)
      } else if (key.startsWith('x/')) {
        deltas.push(dagCbor.decode(value))
      } else if (key.startsWith('y/')) {
        const [time, id] = dagCbor.decode(value) as [number, string]
        const hash = key.slice(2)
        index.entries.set(hash, { hash, time, id })
      }
    }
    for (let c = 0; c < (meta.chunks ?? 0); c++) {
      const bytes = chunks.get(c)
      if (bytes == null) return false
      for (const [k, n, i, value] of dagCbor.decode(bytes) as SnapshotRow[]) {
        const e = refs[n]
        if (e == null) return false
        index.set(value === undefined ? { k, e, i } : { k, e, i, value })
      }
    }
    // changes since the snapshot win over it, applied in merge order
    const slots: Slot[] = []
    for (const [k, hash, i, value] of deltas) {
      const e = index.entries.get(hash)
      if (e == null) return false
      slots.push(value === undefined ? { k, e, i } : { k, e, i, value })
    }
    for (const slot of slots.sort(compareSlots)) index.set(slot)
    this.snapshotChunks = meta.chunks ?? 0
    return true
  }

  async clear (): Promise<void> {
    this.snapshotChunks = 0
    await this.storage.clear()
  }

  async close (): Promise<void> {
    await this.storage.close()
  }

  private async writeMeta (chunks: number, heads: string[]): Promise<void> {
    const meta: Meta = { v: INDEX_VERSION, heads, chunks }
    await this.storage.put('meta', dagCbor.encode(meta))
  }
}

/** `raw` decoded, or undefined when it is missing or not dag-cbor (such as a version 2 JSON index). */
function decodeOrUndefined<T> (raw: unknown): T | undefined {
  if (!(raw instanceof Uint8Array)) return undefined
  try {
    return dagCbor.decode(raw)
  } catch {
    return undefined
  }
}

function sameList (a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, n) => x === b[n])
}
