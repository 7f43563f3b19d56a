import { raceEvent } from 'race-event'
import type { KeyValueDatabase } from '../orbitdb/types.ts'

/**
 * Resolve with `keys` of a replicating key-value database once all are
 * present, re-reading on every `update`; reject when `signal` aborts.
 */
export async function waitForKeys (db: KeyValueDatabase, keys: string[], signal: AbortSignal): Promise<Record<string, unknown>> {
  const read = async (): Promise<Record<string, unknown> | undefined> => {
    const values: Record<string, unknown> = {}
    for (const key of keys) {
      const value = await db.get(key)
      if (value === undefined) return undefined
      values[key] = value
    }
    return values
  }
  const done = new AbortController()
  const bounded = AbortSignal.any([signal, done.signal])
  try {
    while (true) {
      signal.throwIfAborted()
      // listen before reading, so an update between the read and the wait is not missed
      const updated = raceEvent(db.events as any, 'update', bounded, { errorEvent: 'update:never' })
      updated.catch(() => {})
      const values = await read()
      if (values != null) return values
      try {
        await updated
      } catch (err) {
        signal.throwIfAborted() // the caller's reason (a typed timeout), not race-event's
        throw err
      }
    }
  } finally {
    done.abort()
  }
}
