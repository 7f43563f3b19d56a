/**
 * The catalog's index, in memory: for every key the winning write (which
 * entry, which operation in it, the document or nothing when deleted), a
 * secondary index per indexed field, and the set of entries already applied.
 * It knows nothing of OrbitDB or storage: entries go in, documents come out.
 */
import { compare, opsOf, SMALL_ENTRY_OPS, type Doc, type EntryRef } from './ops.ts'
import type { OrbitDBEntry } from '../orbitdb/types.ts'

/** The winning write to a key: which entry, which operation in it, and the document (absent when deleted). */
export interface Slot<T = Doc> { e: EntryRef, i: number, value?: T }

const fieldKey = (value: unknown): string | undefined => value === undefined ? undefined : JSON.stringify(value)

export class DocumentIndex {
  readonly fields: readonly string[]
  /** Winning write per key, deletions included (a later, older write must not resurrect a key). */
  readonly docs = new Map<string, Slot>()
  /** Entries applied, by hash. */
  readonly entries = new Map<string, EntryRef>()
  private readonly byField: Map<string, Map<string, Set<string>>>
  /** How many of the most recently applied entries are small (see `SMALL_ENTRY_OPS`). */
  smallStreak = 0

  constructor (fields: readonly string[]) {
    this.fields = fields
    this.byField = new Map(fields.map(f => [f, new Map()]))
  }

  has (hash: string): boolean {
    return this.entries.has(hash)
  }

  /** Apply one entry's operations, adding to `changed` the keys whose winner changed. */
  apply (entry: Pick<OrbitDBEntry, 'hash' | 'clock' | 'payload'>, changed: Set<string>): void {
    if (this.entries.has(entry.hash)) return
    const ref: EntryRef = { hash: entry.hash, time: entry.clock.time, id: entry.clock.id }
    this.entries.set(entry.hash, ref)
    const ops = opsOf(entry)
    this.smallStreak = ops.length <= SMALL_ENTRY_OPS ? this.smallStreak + 1 : 0
    ops.forEach((op, i) => {
      const current = this.docs.get(op.key)
      if (current != null && compare(current.e, current.i, ref, i) > 0) return
      this.set(op.key, op.op === 'PUT' ? { e: ref, i, value: op.value } : { e: ref, i })
      changed.add(op.key)
    })
  }

  /** Set the winner of `key` as is (no ordering check: loading a saved index). */
  set (key: string, slot: Slot): void {
    this.indexFields(key, this.docs.get(key)?.value, false)
    this.docs.set(key, slot)
    this.indexFields(key, slot.value, true)
  }

  clear (): void {
    this.docs.clear()
    this.entries.clear()
    for (const map of this.byField.values()) map.clear()
    this.smallStreak = 0
  }

  get (key: string): Doc | undefined {
    return this.docs.get(key)?.value
  }

  /** Documents whose `field` equals `value`; throws when `field` has no index. */
  getBy (field: string, value: unknown): Doc[] {
    const map = this.byField.get(field)
    if (map == null) throw new TypeError(`'${field}' is not an indexed field (indexFields: ${this.fields.join(', ')})`)
    const keys = map.get(fieldKey(value) ?? '') ?? new Set()
    return [...keys].map(k => this.get(k)).filter((v): v is Doc => v !== undefined)
  }

  /** Live documents, in index order. */
  * values (): Generator<[string, Doc]> {
    for (const [key, slot] of this.docs) {
      if (slot.value !== undefined) yield [key, slot.value]
    }
  }

  count (): number {
    let n = 0
    for (const slot of this.docs.values()) if (slot.value !== undefined) n++
    return n
  }

  /** Add `key` to (or remove it from) the secondary index of each indexed field of `value`. */
  private indexFields (key: string, value: Doc | undefined, add: boolean): void {
    if (value == null) return
    for (const [field, map] of this.byField) {
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
}
