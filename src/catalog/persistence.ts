/**
 * The catalog index on disk, so opening a big catalog does not replay its
 * log. Values are utf8 JSON in an OrbitDB storage:
 *
 *   a        every indexed entry, [[hash, time, id], ...]     } the snapshot,
 *   c/<n>    documents, [[key, entry #, op #, value], ...]    } written on close
 *   meta     { v, heads, chunks }: the log heads the index reflects, written last
 *   x/<key>  [entry hash, op #, value]   } changes since the snapshot,
 *   y/<hash> [time, id]                  } written as they happen
 *
 * An index whose `meta.heads` are not the log's heads is incomplete (an
 * unclean stop) and the caller rebuilds it from the log.
 */
import type { DocumentIndex, Slot } from './doc-index.ts'
import type { Doc, EntryRef } from './ops.ts'
import type { OrbitDBStorage } from '../orbitdb/types.ts'

export const INDEX_VERSION = 2
/** Documents per snapshot value. */
const SNAPSHOT_CHUNK = 5000

interface Meta { v: number, heads: string[], chunks?: number }

export class IndexPersistence {
  private readonly storage: OrbitDBStorage
  private readonly index: DocumentIndex
  private snapshotChunks = 0

  constructor (storage: OrbitDBStorage, index: DocumentIndex) {
    this.storage = storage
    this.index = index
  }

  /** Record what changed since the last write: the keys' winners and the entries applied. */
  async persist (changed: Iterable<string>, entries: Iterable<string>, heads: string[]): Promise<void> {
    const writes: Array<Promise<void>> = []
    for (const key of changed) {
      const slot = this.index.docs.get(key)
      if (slot != null) writes.push(this.storage.put(`x/${key}`, JSON.stringify([slot.e.hash, slot.i, slot.value ?? null])))
    }
    for (const hash of entries) {
      const ref = this.index.entries.get(hash)
      if (ref != null) writes.push(this.storage.put(`y/${hash}`, JSON.stringify([ref.time, ref.id])))
    }
    await Promise.all(writes)
    await this.writeMeta(this.snapshotChunks, heads)
  }

  /** Replace everything on disk with one snapshot of the index (few, large values: fast to load). */
  async snapshot (heads: string[]): Promise<void> {
    await this.storage.clear()
    const refs = [...this.index.entries.values()]
    const position = new Map(refs.map((r, n) => [r.hash, n]))
    await this.storage.put('a', JSON.stringify(refs.map(r => [r.hash, r.time, r.id])))
    let chunk: unknown[] = []
    let chunks = 0
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return
      await this.storage.put(`c/${chunks++}`, JSON.stringify(chunk))
      chunk = []
    }
    for (const [key, slot] of this.index.docs) {
      chunk.push([key, position.get(slot.e.hash), slot.i, slot.value ?? null])
      if (chunk.length >= SNAPSHOT_CHUNK) await flush()
    }
    await flush()
    this.snapshotChunks = chunks
    await this.writeMeta(chunks, heads)
  }

  /**
   * Load the saved index into the (empty) in-memory index; false, leaving
   * it to be rebuilt, when what is saved does not reflect `heads`.
   */
  async load (heads: string[]): Promise<boolean> {
    const meta = parse<Meta>(await this.storage.get('meta'))
    if (meta?.v !== INDEX_VERSION || !Array.isArray(meta.heads) || !sameList(meta.heads, heads)) return false
    const index = this.index
    let refs: EntryRef[] = []
    const docDeltas: Array<[string, string]> = []
    for await (const [key, value] of this.storage.iterator()) {
      const text = String(value)
      if (key === 'a') {
        refs = (JSON.parse(text) as Array<[string, number, string]>).map(([hash, time, id]) => ({ hash, time, id }))
        for (const ref of refs) index.entries.set(ref.hash, ref)
      } else if (key.startsWith('c/')) {
        for (const [docKey, n, i, value] of JSON.parse(text) as Array<[string, number, number, Doc | null]>) {
          const e = refs[n]
          if (e == null) return false
          index.set(docKey, value == null ? { e, i } : { e, i, value })
        }
      } else if (key.startsWith('x/')) {
        docDeltas.push([key.slice(2), text])
      } else if (key.startsWith('y/')) {
        const [time, id] = JSON.parse(text) as [number, string]
        const hash = key.slice(2)
        index.entries.set(hash, { hash, time, id })
      }
    }
    // changes since the snapshot win over it
    for (const [docKey, text] of docDeltas) {
      const [hash, i, value] = JSON.parse(text) as [string, number, Doc | null]
      const e = index.entries.get(hash)
      if (e == null) return false
      const slot: Slot = value == null ? { e, i } : { e, i, value }
      index.set(docKey, slot)
    }
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
    await this.storage.put('meta', JSON.stringify(meta))
  }
}

function parse<T> (raw: unknown): T | undefined {
  if (typeof raw !== 'string') return undefined
  try {
    return JSON.parse(raw) as T
  } catch {
    return undefined
  }
}

function sameList (a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, n) => x === b[n])
}
