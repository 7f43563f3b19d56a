/**
 * The storage locks this realm (one browser tab, one Node process) holds or
 * is giving back, by name. The platform lock (a Web Lock, a LevelDB LOCK
 * file) only says "taken"; it cannot say by whom. Kept here, the realm knows
 * when the holder is one of its own instances, so a start right after a
 * `stop()` that has not finished yet (React StrictMode's double mount, hot
 * module reloading, a restart in a test) waits for it instead of failing, and
 * a refusal can say which case it is.
 *
 * Module-level on purpose: the lock is per realm, so its registry is too.
 */
import { raceSignal } from 'race-signal'
import { deadline } from '../utils/abort.ts'

/**
 * How long a lock held by another instance of this realm is waited for: long
 * enough for a stop to finish (closing the databases, then libp2p with its
 * connections: well under a second on loopback, a few seconds with a relay
 * and WebRTC links), short enough that a forgotten instance is reported soon.
 */
export const DEFAULT_LOCK_WAIT = 5_000

/** Resolves once the holder of the name has let go. */
const held = new Map<string, Promise<void>>()

export interface LocalLockOptions {
  /** How long to wait for an instance of this realm to let go. @default DEFAULT_LOCK_WAIT */
  wait?: number
  signal?: AbortSignal
}

/**
 * Claim `name` in this realm, waiting (bounded) for a holder of this realm to
 * let go; `busy(ms)` is the error when it does not. Returns the function that
 * lets go again: call it once the platform lock is really released, or when
 * taking the platform lock failed. Safe to call twice.
 */
export async function claimLocally (name: string, options: LocalLockOptions, busy: (ms: number) => Error): Promise<() => void> {
  const ms = options.wait ?? DEFAULT_LOCK_WAIT
  let previous = held.get(name)
  if (previous != null) {
    const bound = deadline(ms, options.signal, `waiting for the storage lock "${name}"`)
    try {
      // several may wait for one holder: whoever is first takes it, the others wait for that one
      while (previous != null) {
        await raceSignal(previous, bound.signal).catch(() => {
          throw options.signal?.aborted === true ? bound.reason() : busy(ms)
        })
        previous = held.get(name)
      }
    } finally {
      bound.clear()
    }
  }
  // no await between the check above and this: the claim is atomic within the realm
  let letGo!: () => void
  const released = new Promise<void>(resolve => { letGo = resolve })
  held.set(name, released)
  return () => {
    if (held.get(name) === released) held.delete(name)
    letGo()
  }
}
