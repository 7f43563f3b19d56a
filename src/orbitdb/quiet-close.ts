/**
 * OrbitDB prints (with `console.error`) any failure to join a replicated
 * entry. Closing a database cancels its pending network reads on purpose, so
 * every close during replication would print aborted reads as if something
 * were wrong. While one of our closes runs, aborts go to the `npp:sync` debug
 * log instead; everything else still reaches `console.error` unchanged.
 */
import { logger } from '../utils/logger.ts'

const log = logger('sync')
let closing = 0
let original: typeof console.error | undefined
let wrapper: typeof console.error | undefined

function isAbort (err: unknown): boolean {
  if (err == null || typeof err !== 'object') return false
  const e = err as { name?: unknown, errors?: unknown }
  if (e.name === 'AbortError') return true
  // helia races block retrievers with Promise.any: all of them aborted
  return Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every(isAbort)
}

/** Run `close` with cancelled reads logged to `npp:sync` rather than printed. */
export async function closeQuietly (close: () => Promise<void>): Promise<void> {
  if (closing++ === 0) {
    original = console.error
    const print = original
    wrapper = (...args: unknown[]): void => {
      if (args.length === 1 && isAbort(args[0])) {
        log('a read cancelled by close: %s', (args[0] as Error).message)
        return
      }
      print.apply(console, args)
    }
    console.error = wrapper
  }
  try {
    await close()
  } finally {
    if (--closing === 0 && original != null) {
      // someone else replaced console.error meanwhile: theirs stays
      if (console.error === wrapper) console.error = original
      original = undefined
      wrapper = undefined
    }
  }
}
