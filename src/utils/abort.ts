import { AbortError, TimeoutError } from '../errors.ts'

/**
 * A signal that fires when `signal` does or after `ms`; `clear()` releases the
 * timer. The reason is a typed `TimeoutError` or `AbortError`.
 */
export function timeoutSignal (ms: number, signal?: AbortSignal, what = 'operation'): { signal: AbortSignal, clear(): void } {
  const controller = new AbortController()
  const onAbort = (): void => { controller.abort(new AbortError(`${what} was aborted`)) }
  const timer = setTimeout(() => { controller.abort(new TimeoutError(`${what} did not finish within ${ms} ms`)) }, ms)
  if (signal?.aborted === true) onAbort()
  else signal?.addEventListener('abort', onAbort, { once: true })
  return {
    signal: controller.signal,
    clear () {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
  }
}

/** Reject as soon as `signal` aborts, otherwise settle as `promise` does. */
export async function raceSignal<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {})
    throw signal.reason
  }
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        onAbort = () => { reject(signal.reason) }
        signal.addEventListener('abort', onAbort, { once: true })
      })
    ])
  } finally {
    if (onAbort != null) signal.removeEventListener('abort', onAbort)
  }
}

/** Resolve when `target` emits `event` and `accept(detail)` holds; reject when `signal` aborts. */
export async function waitForEvent<D> (target: EventTarget, event: string, accept: (detail: D) => boolean, signal: AbortSignal): Promise<D> {
  return await new Promise<D>((resolve, reject) => {
    const cleanup = (): void => {
      target.removeEventListener(event, onEvent)
      signal.removeEventListener('abort', onAbort)
    }
    const onEvent = (evt: Event): void => {
      const detail = (evt as CustomEvent<D>).detail
      if (accept(detail)) {
        cleanup()
        resolve(detail)
      }
    }
    const onAbort = (): void => {
      cleanup()
      reject(signal.reason)
    }
    if (signal.aborted) {
      reject(signal.reason)
      return
    }
    target.addEventListener(event, onEvent)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
