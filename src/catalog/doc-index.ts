/**
 * The catalog's index, in memory: for every key the winning write (which
 * entry, which operation in it, the document or nothing when deleted), a
 * secondary index per indexed field, and the set of entries already applied.
 * It knows nothing of OrbitDB or storage: entries go in, documents come out.
 *
 * Documents come out newest first, as OrbitDB's Documents yields them: by
 * their winning write, in the merge order of `compare`. The winners are kept
 * in that order as they are set (entries arrive in order almost always: local
 * writes, live updates, a log replayed oldest first), so reading in order
 * costs nothing; a write that arrives older than the newest one (a replica
 * catching up on a concurrent branch) marks the order stale, and the next
 * read sorts once.
 */
import { compare, opsOf, SMALL_ENTRY_OPS, type Doc, type EntryRef, type Key } from './ops.ts'
import type { OrbitDBEntry } from '../orbitdb/types.ts'

/** The winning write to a key: which entry, which operation in it, and the document (absent when deleted). */
export interface Slot<T = Doc> { k: Key, e: EntryRef, i: number, value?: T }

/** A live document as read: the entry that wrote it, its key and its value. */
export interface IndexedDoc<T = Doc> { hash: string, key: Key, value: T }

/** The secondary index's key for a field value; undefined (not indexed) for what JSON cannot say, such as a bigint. */
function fieldKey (value: unknown): string | undefined {
  if (value === undefined) return undefined
  try {
    return JSON.stringify(value)
  } catch {
    return undefined
  }
}

/** Merge order of two writes (oldest first). */
export const compareSlots = (a: Slot, b: Slot): number => compare(a.e, a.i, b.e, b.i)

export class DocumentIndex {
  readonly fields: readonly string[]
  /**
   * Winning write per key, deletions included (a later, older write must not
   * resurrect a key); in merge order, oldest first, unless `inOrder` is false.
   */
  readonly docs = new Map<Key, Slot>()
  /** Entries applied, by hash. */
  readonly entries = new Map<string, EntryRef>()
  /** Per indexed field, per value, the keys holding it (in the order of `docs`). */
  private readonly byField: Map<string, Map<string, Set<Key>>>
  /** How many of the most recently applied entries are small (see `SMALL_ENTRY_OPS`). */
  smallStreak = 0
  private live = 0
  private inOrder = true
  /** The newest slot of `docs` while it is in order. */
  private last: Slot | undefined
  /** Live slots newest first, built on the first read after a change. */
  private newest: Slot[] | undefined

  constructor (fields: readonly string[]) {
    this.fields = fields
    this.byField = new Map(fields.map(f => [f, new Map()]))
  }

  has (hash: string): boolean {
    return this.entries.has(hash)
  }

  /** Apply one entry's operations, adding to `changed` the keys whose winner changed. */
  apply (entry: Pick<OrbitDBEntry, 'hash' | 'clock' | 'payload'>, changed: Set<Key>): void {
    if (this.entries.has(entry.hash)) return
    const ref: EntryRef = { hash: entry.hash, time: entry.clock.time, id: entry.clock.id }
    this.entries.set(entry.hash, ref)
    const ops = opsOf(entry)
    this.smallStreak = ops.length <= SMALL_ENTRY_OPS ? this.smallStreak + 1 : 0
    ops.forEach((op, i) => {
      const current = this.docs.get(op.key)
      if (current != null && compare(current.e, current.i, ref, i) > 0) return
      this.set(op.op === 'PUT' ? { k: op.key, e: ref, i, value: op.value } : { k: op.key, e: ref, i })
      changed.add(op.key)
    })
  }

  /** Set the winner of `slot.k` as is (no check that it is newer: loading a saved index). */
  set (slot: Slot): void {
    const old = this.docs.get(slot.k)
    if (old != null) {
      this.indexFields(old, false)
      // re-added below, at the end: the newest place
      this.docs.delete(slot.k)
      if (old.value !== undefined) this.live--
    }
    this.docs.set(slot.k, slot)
    if (slot.value !== undefined) this.live++
    this.indexFields(slot, true)
    if (this.last != null && compareSlots(slot, this.last) < 0) this.inOrder = false
    else if (this.inOrder) this.last = slot
    this.newest = undefined
  }

  clear (): void {
    this.docs.clear()
    this.entries.clear()
    for (const map of this.byField.values()) map.clear()
    this.smallStreak = 0
    this.live = 0
    this.inOrder = true
    this.last = undefined
    this.newest = undefined
  }

  get (key: Key): Doc | undefined {
    return this.docs.get(key)?.value
  }

  /** The live document at `key`, with the hash of the entry that wrote it. */
  read (key: Key): IndexedDoc | undefined {
    const slot = this.docs.get(key)
    return slot?.value === undefined ? undefined : { hash: slot.e.hash, key: slot.k, value: slot.value }
  }

  /** Documents whose `field` equals `value`, newest first; throws when `field` has no index. */
  getBy (field: string, value: unknown): Doc[] {
    const map = this.byField.get(field)
    if (map == null) throw new TypeError(`'${field}' is not an indexed field (indexFields: ${this.fields.join(', ')})`)
    this.order()
    const keys = [...map.get(fieldKey(value) ?? '') ?? []]
    const out: Doc[] = []
    for (let n = keys.length - 1; n >= 0; n--) {
      const doc = this.get(keys[n]!)
      if (doc !== undefined) out.push(doc)
    }
    return out
  }

  /** Live slots, newest first. The array is shared: read it, do not change it. */
  newestFirst (): readonly Slot[] {
    if (this.newest == null) {
      this.order()
      const out: Slot[] = []
      for (const slot of this.docs.values()) if (slot.value !== undefined) out.push(slot)
      this.newest = out.reverse()
    }
    return this.newest
  }

  /** Live documents, newest first. */
  * values (): Generator<[Key, Doc]> {
    for (const slot of this.newestFirst()) yield [slot.k, slot.value!]
  }

  /** Every winner, deletions included, oldest first (what a snapshot saves). */
  slots (): IterableIterator<Slot> {
    this.order()
    return this.docs.values()
  }

  count (): number {
    return this.live
  }

  /** Put `docs` (and the field indexes) back in merge order if a write arrived out of it. */
  private order (): void {
    if (this.inOrder) return
    const sorted = [...this.docs.values()].sort(compareSlots)
    this.docs.clear()
    for (const map of this.byField.values()) map.clear()
    for (const slot of sorted) {
      this.docs.set(slot.k, slot)
      this.indexFields(slot, true)
    }
    this.last = sorted.at(-1)
    this.inOrder = true
  }

  /** Add `slot.k` to (or remove it from) the secondary index of each indexed field of its document. */
  private indexFields (slot: Slot, add: boolean): void {
    const value = slot.value
    if (value == null) return
    for (const [field, map] of this.byField) {
      const fk = fieldKey(value[field])
      if (fk === undefined) continue
      let set = map.get(fk)
      if (add) {
        if (set == null) map.set(fk, set = new Set())
        set.add(slot.k)
      } else if (set != null) {
        set.delete(slot.k)
        if (set.size === 0) map.delete(fk)
      }
    }
  }
}
