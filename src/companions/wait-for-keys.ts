import { waitForEvent } from '../utils/abort.ts'
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
  // OrbitDB's events are a Node-style emitter: adapt them to an EventTarget
  const target = new EventTarget()
  const onUpdate = (): void => { target.dispatchEvent(new Event('update')) }
  const done = new AbortController()
  const bounded = AbortSignal.any([signal, done.signal])
  db.events.on('update', onUpdate)
  try {
    while (true) {
      signal.throwIfAborted()
      const updated = waitForEvent(target, 'update', () => true, bounded)
      updated.catch(() => {})
      const values = await read()
      if (values != null) return values
      await updated
    }
  } finally {
    done.abort()
    db.events.off('update', onUpdate)
  }
}
