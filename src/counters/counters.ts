/**
 * A grow-only practice counter as an OrbitDB database type.
 *
 * OrbitDB 4 has no counter type, and a key-value register would lose
 * increments made concurrently on two devices (last writer wins). Here every
 * increment is its own log entry `{ op: 'INC', key, value: n, nonce }`; a
 * key's count is the sum of its entries. Replicas merge by log union, so no
 * increment is ever lost or counted twice (the nonce keeps two identical
 * increments from two devices distinct entries).
 */
import { Database } from '@orbitdb/core'
import type { DatabaseInit, OrbitDBDatabase, OrbitDBEntry } from '../orbitdb/types.ts'

export const COUNTERS_TYPE = 'npp-counters'

interface IncPayload { op: 'INC', key: string, value: number, nonce: string }

/** Largest single increment accepted, locally and from a replica. */
export const MAX_PRACTICE_INCREMENT = 1_000_000

/** A positive safe integer no larger than `MAX_PRACTICE_INCREMENT`. */
export function isPracticeIncrement (value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0 && (value as number) <= MAX_PRACTICE_INCREMENT
}

export interface CountersDatabase extends OrbitDBDatabase {
  /** Add `by` (a positive integer, default 1) to `key`'s count; resolves to the new count. */
  increment(key: string, by?: number): Promise<number>
  /** The count of `key` (0 when never incremented). */
  value(key: string): Promise<number>
  /** Every key with its count. */
  all(): Promise<Record<string, number>>
}

function isIncPayload (payload: unknown): payload is IncPayload {
  const p = payload as IncPayload
  return p != null && p.op === 'INC' && typeof p.key === 'string' && isPracticeIncrement(p.value)
}

function randomNonce (): string {
  const bytes = new Uint8Array(8)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('')
}

export const Counters = Object.assign(() => async (init: DatabaseInit): Promise<CountersDatabase> => {
  // totals are derived from the log; remote merges may add many entries at
  // once, so they only mark the cache stale and the next read rebuilds it
  let totals: Map<string, number> | undefined
  // nonces of our own appends in flight: their updates keep the cache
  const ownAppends = new Set<string>()
  const onUpdate = (_log: unknown, entry: OrbitDBEntry): void => {
    const nonce = (entry.payload as Partial<IncPayload> | undefined)?.nonce
    if (typeof nonce !== 'string' || !ownAppends.has(nonce)) {
      totals = undefined
    }
  }
  const database: OrbitDBDatabase = await Database({ ...init, onUpdate })
  const { addOperation, log } = database

  const rebuild = async (): Promise<Map<string, number>> => {
    const next = new Map<string, number>()
    for await (const entry of log.iterator()) {
      if (isIncPayload(entry.payload)) {
        next.set(entry.payload.key, (next.get(entry.payload.key) ?? 0) + entry.payload.value)
      }
    }
    totals = next
    return next
  }

  const value = async (key: string): Promise<number> => {
    return (totals ?? await rebuild()).get(key) ?? 0
  }

  const increment = async (key: string, by = 1): Promise<number> => {
    if (!isPracticeIncrement(by)) {
      throw new RangeError(`expected a positive integer increment, got ${String(by)}`)
    }
    const current = totals ?? await rebuild()
    const nonce = randomNonce()
    ownAppends.add(nonce)
    try {
      await addOperation({ op: 'INC', key, value: by, nonce } satisfies IncPayload)
    } finally {
      ownAppends.delete(nonce)
    }
    // a remote merge during the append may have invalidated the cache
    if (totals === current) {
      current.set(key, (current.get(key) ?? 0) + by)
      return current.get(key) ?? 0
    }
    return await value(key)
  }

  const all = async (): Promise<Record<string, number>> => {
    return Object.fromEntries(totals ?? await rebuild())
  }

  return { ...database, type: COUNTERS_TYPE, increment, value, all }
}, { type: COUNTERS_TYPE })
