/**
 * Bounded operations, built on `AbortSignal.any` and `race-signal`/
 * `race-event`. What this adds: an operation that runs out of time or is
 * cancelled rejects with this library's typed `TimeoutError`/`AbortError`
 * (the same `name`s the platform and libp2p use), with a message that says
 * what did not finish.
 *
 * Not `AbortSignal.timeout`: its timer is unref'd in Node, so a bounded call
 * whose only pending work is the deadline lets the process exit before the
 * deadline fires (a query of a stalled source did exactly that in the unit
 * tests); this timer is a normal one, released by `clear()`.
 */
import { raceSignal } from 'race-signal'
import { raceEvent } from 'race-event'
import { AbortError, TimeoutError } from '../errors.ts'

/** An operation's deadline: `signal` fires when the caller's signal does or after `ms`. */
export interface Deadline {
  signal: AbortSignal
  /** The typed error for why `signal` fired: `TimeoutError` or `AbortError` naming the operation (or the caller's own reason). */
  reason(): Error
  /** Release the timer (the operation is over). */
  clear(): void
}

export function deadline (ms: number, signal: AbortSignal | undefined, what: string): Deadline {
  const timeout = new AbortController()
  const timer = setTimeout(() => { timeout.abort(new TimeoutError(`${what} did not finish within ${ms} ms`)) }, ms)
  const combined = signal == null ? timeout.signal : AbortSignal.any([signal, timeout.signal])
  return {
    signal: combined,
    reason: () => typedReason(combined, what, ms),
    clear: () => { clearTimeout(timer) }
  }
}

/** `signal.reason` as this library's typed error, naming `what`. */
export function typedReason (signal: AbortSignal, what: string, ms?: number): Error {
  const reason: unknown = signal.reason
  const name = (reason as Error | undefined)?.name
  if (reason instanceof TimeoutError || reason instanceof AbortError) return reason
  if (name === 'TimeoutError') return new TimeoutError(ms == null ? `${what} timed out` : `${what} did not finish within ${ms} ms`)
  if (name === 'AbortError' || reason == null) return new AbortError(`${what} was aborted`)
  return reason instanceof Error ? reason : new AbortError(`${what} was aborted: ${String(reason)}`)
}

/** Run `fn` with a deadline; a timeout or abort rejects with the typed error, other failures pass through. */
export async function withDeadline<T> (ms: number, signal: AbortSignal | undefined, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const bound = deadline(ms, signal, what)
  try {
    return await raceSignal(fn(bound.signal), bound.signal, { translateError: () => bound.reason() })
  } catch (err) {
    throw bound.signal.aborted ? bound.reason() : err
  } finally {
    bound.clear()
  }
}

/** Resolve with the detail of the next `event` on `target` for which `accept(detail)` holds; reject when `signal` aborts. */
export async function nextEvent<D> (target: EventTarget, event: string, accept: (detail: D) => boolean, signal: AbortSignal): Promise<D> {
  const evt = await raceEvent<CustomEvent<D>>(target, event, signal, {
    filter: (e) => accept(e.detail),
    // no event of ours rejects: only the signal does
    errorEvent: `${event}:never`
  })
  return evt.detail
}
