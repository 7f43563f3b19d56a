/**
 * One open per database, whoever asks first. OrbitDB returns a database it
 * has open, but not one it is still opening: two opens of one address at
 * once each build the database, and the second fails on LevelDB's lock
 * (`LEVEL_LOCKED`). That is what a restart did 25-35 times in a 6-minute
 * churn run: discovery verifying a companion's announcement and the loader
 * of saved companions opened the same replica at once, and the loser lost
 * the companion for a while.
 *
 * Ownership is counted: every caller gets its own handle on the one
 * database (a `Proxy` whose `close()` gives up that caller's use only, once
 * however often it is called); the database is closed for real when the last
 * handle is closed, or by `orbitdb.stop()`. So a close by one user (a
 * replica given up, a verification that failed) never closes it under
 * another. Handles of one database are not `===` each other; compare
 * `address`.
 *
 * The open in flight is the first caller's (its options win); it is
 * cancelled only when every caller still waiting for it has given up
 * (its `signal` fired), so one caller's short deadline does not fail the
 * others.
 */
import { raceSignal } from 'race-signal'
import type { OpenOptions, OrbitDBDatabase } from '../orbitdb/types.ts'

/** Opens a database for real; `close()` of what it returns closes it for real. */
export type OpenForReal = <D extends OrbitDBDatabase>(address: string, options: OpenOptions) => Promise<D>

export type SharedOpen = <D extends OrbitDBDatabase>(address: string, options?: OpenOptions) => Promise<D>

interface Entry {
  state: 'opening' | 'open' | 'closing' | 'gone'
  opening: Promise<OrbitDBDatabase>
  db?: OrbitDBDatabase
  /** Handles given out and not closed yet. */
  users: number
  /** Callers waiting for `opening` that still want it. */
  waiting: number
  /** Cancels the open in flight (when `waiting` drops to 0). */
  controller: AbortController
  /** The names it is known by: the address or name asked for, and the database's address. */
  keys: Set<string>
  /** Resolves once the entry is gone (its open failed, or the database was closed). */
  gone: Promise<void>
  markGone(): void
}

export function openOnce (openForReal: OpenForReal): SharedOpen {
  const entries = new Map<string, Entry>()

  const remove = (entry: Entry): void => {
    if (entry.state === 'gone') return
    entry.state = 'gone'
    for (const key of entry.keys) if (entries.get(key) === entry) entries.delete(key)
    entry.markGone()
  }

  const closeForReal = async (entry: Entry): Promise<void> => {
    if (entry.state !== 'open' || entry.db == null) return
    entry.state = 'closing'
    try {
      await entry.db.close()
    } finally {
      remove(entry)
    }
  }

  const begin = (address: string, options: OpenOptions): Entry => {
    let markGone!: () => void
    const controller = new AbortController()
    const entry: Entry = {
      state: 'opening',
      opening: openForReal(address, { ...options, signal: controller.signal }),
      users: 0,
      waiting: 0,
      controller,
      keys: new Set([address]),
      gone: new Promise<void>(resolve => { markGone = resolve }),
      markGone
    }
    entries.set(address, entry)
    entry.opening.then(db => {
      entry.db = db
      entry.state = 'open'
      if (!entries.has(db.address)) {
        entries.set(db.address, entry)
        entry.keys.add(db.address)
      }
      // closed under us (orbitdb.stop(), or someone holding it from `orbitdb.open`)
      db.events.on('close', () => { remove(entry) })
      // every caller gave up while it opened: nobody will close it
      if (entry.waiting === 0) void closeForReal(entry).catch(() => {})
    }, () => { remove(entry) })
    return entry
  }

  const handle = <D extends OrbitDBDatabase>(entry: Entry): D => {
    entry.users++
    let closing: Promise<void> | undefined
    const close = async (): Promise<void> => {
      closing ??= --entry.users > 0 ? Promise.resolve() : closeForReal(entry)
      await closing
    }
    return new Proxy(entry.db as D, {
      get: (target, prop) => prop === 'close' ? close : Reflect.get(target, prop)
    })
  }

  return async function open<D extends OrbitDBDatabase> (address: string, options: OpenOptions = {}): Promise<D> {
    const { signal, ...rest } = options
    for (;;) {
      signal?.throwIfAborted()
      const entry = entries.get(address)
      if (entry == null) {
        begin(address, rest)
        continue
      }
      if (entry.state === 'open') return handle<D>(entry)
      if (entry.state !== 'opening' || entry.controller.signal.aborted) {
        // closing, or an open everyone gave up on: wait until it is gone, then open again
        await raceSignal(entry.gone, signal)
        continue
      }
      entry.waiting++
      let stillWaiting = true
      const leave = (): void => {
        if (!stillWaiting) return
        stillWaiting = false
        if (--entry.waiting === 0 && entry.state === 'opening') entry.controller.abort(signal?.reason)
      }
      signal?.addEventListener('abort', leave, { once: true })
      try {
        await raceSignal(entry.opening, signal)
      } finally {
        signal?.removeEventListener('abort', leave)
      }
      // opened: this caller takes its handle (entry.waiting counts it until then)
      stillWaiting = false
      entry.waiting--
      // closed already by everyone who got it before this caller: open again
      if ((entry.state as Entry['state']) !== 'open') continue
      return handle<D>(entry)
    }
  }
}
