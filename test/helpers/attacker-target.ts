/**
 * The victim of the hostile-peer tests: an honest `NewPiecePlease` in its own
 * OS process (test/helpers/process-peer.ts), so that the memory measured is
 * the victim's own, not the attacker's or the honest companion's that run in
 * the test's process. Its events are waited for inside its process (only the
 * matching one crosses the pipe: a flood raises thousands).
 */
import { after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { ProcessPeer } from './process-peer.ts'
import type { NewPiecePlease, NewPiecePleaseInit, NewPiecePleaseEvents, NppStats } from '../../src/index.ts'

const MB = 1024 * 1024
const started: Target[] = []

// registered when the test file imports this module: runs after all its tests
after(async () => {
  while (started.length > 0) await started.pop()?.stop().catch(() => {})
})

type EventType = keyof NewPiecePleaseEvents & string
type Detail<K extends EventType> = NewPiecePleaseEvents[K]['detail']

/** The victim's memory in MB: RSS now, highest RSS since the last reset, the JS heap in use and the memory held outside it (buffers). */
export interface Memory {
  rss: number
  peak: number
  heap: number
  external: number
}

export class Target {
  readonly process: ProcessPeer
  readonly peerId: string
  /** Its TCP address on loopback, with /p2p/<peer id>. */
  readonly addr: string
  private stopped?: Promise<number>

  private constructor (process: ProcessPeer) {
    this.process = process
    this.peerId = process.peerId
    this.addr = process.multiaddrs[0]!
  }

  /** Start a victim (memory storage, loopback) in its own process, run with --expose-gc; killed after the test file. */
  static async start (init: NewPiecePleaseInit = {}): Promise<Target> {
    const target = new Target(await ProcessPeer.start({ storage: 'memory', listen: ['/ip4/127.0.0.1/tcp/0'], ...init }, 30_000, ['--expose-gc']))
    started.push(target)
    return target
  }

  /** Call one of the peer's methods (`addNewPiece`, `getCompanions`, `queryCatalog`...). */
  async call<T = any> (method: keyof NewPiecePlease & string, ...args: unknown[]): Promise<T> {
    return await this.process.call<T>(method, ...args)
  }

  /** A property of the peer by path, e.g. `databases.pieces.address`. */
  async prop<T = any> (path: string): Promise<T> {
    return await this.process.call<T>('prop', path)
  }

  async stats (): Promise<NppStats> {
    return await this.prop<NppStats>('stats')
  }

  /**
   * Start listening for the next `type` event whose detail has `match`'s
   * fields (the `n`th such event with `n`); resolves once the victim
   * listens, with `event`, that detail (rejected after `ms`). Await it
   * before doing what should raise the event.
   */
  async watch<K extends EventType> (type: K, match: Partial<Detail<K>> = {}, ms = 15_000, n = 1): Promise<{ event: Promise<Detail<K>> }> {
    const id = await this.process.call<number>('watch', type, match, ms, n)
    const event = this.process.call<Detail<K>>('watched', id)
    event.catch(() => {}) // the caller awaits it; not unhandled meanwhile
    // wrapped: an async function returning a promise would wait for it
    return { event }
  }

  /** Resolve once `check()` holds, looked at again on each `type` event (bounded by `ms`). */
  async until (type: EventType, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms
    for (;;) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`condition not met within ${ms} ms`)
      // listening before looking: an event right after the look is not missed
      const next = await this.watch(type, {}, left)
      if (await check()) return
      await next.event
    }
  }

  /** Its memory in MB; `gc` collects garbage first, `resetPeak` starts a new peak after reading this one. */
  async memory (options: { gc?: boolean, resetPeak?: boolean } = {}): Promise<Memory> {
    const m = await this.process.memory(options)
    return { rss: m.rss / MB, peak: m.peak / MB, heap: m.heapUsed / MB, external: m.external / MB }
  }

  /** `stop()` in the victim's process; resolves to the ms it took (the process then exits). Killed if it takes over `ms`. */
  async stop (ms = 15_000): Promise<number> {
    this.stopped ??= (async () => {
      const t0 = Date.now()
      let timer: ReturnType<typeof setTimeout> | undefined
      try {
        await Promise.race([
          this.process.call('stop'),
          new Promise((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`stop() took over ${ms} ms`)) }, ms) })
        ])
        return Date.now() - t0
      } finally {
        clearTimeout(timer)
        this.process.kill()
      }
    })()
    return await this.stopped
  }
}

/**
 * The victim's memory across `attack`, in MB. `baseline`: before it (the RSS
 * as it was, then the heap and buffers after a GC: a GC can hand pages back
 * and make the RSS look lower than the victim runs at). `peak`: the highest
 * RSS while it ran. `after`: after a GC once it is over. `held`: how much
 * more the heap and buffers hold after than before (what the victim kept;
 * the RSS after a burst stays where the allocator left it, whatever is freed).
 */
export async function memoryAcross<T> (target: Target, attack: () => Promise<T>): Promise<{ result: T, baseline: Memory, peak: number, after: Memory, held: number }> {
  const { rss } = await target.memory()
  const collected = await target.memory({ gc: true, resetPeak: true })
  const baseline = { ...collected, rss }
  const result = await attack()
  const { peak } = await target.memory()
  const after = await target.memory({ gc: true })
  const held = (after.heap + after.external) - (baseline.heap + baseline.external)
  return { result, baseline, peak: Math.max(peak, after.rss), after, held }
}

/** One line for an assertion message: `RSS 160 → peak 201 → after 199 MB; held +3 MB (heap 27 → 28, buffers 10 → 12 MB)`. */
export function describeMemory ({ baseline, peak, after, held }: { baseline: Memory, peak: number, after: Memory, held: number }): string {
  const mb = (x: number): string => x.toFixed(0)
  return `RSS ${mb(baseline.rss)} → peak ${mb(peak)} → after ${mb(after.rss)} MB; held ${held >= 0 ? '+' : ''}${mb(held)} MB (heap ${mb(baseline.heap)} → ${mb(after.heap)}, buffers ${mb(baseline.external)} → ${mb(after.external)} MB)`
}

/** Bounds (MB) on the victim's memory across an attack: how far its RSS may rise over the baseline, and how much more it may hold after. */
export interface MemoryBounds {
  peak: number
  held: number
}

/** Assert `memory` (from `memoryAcross`) is within `bounds`. */
export function assertMemory (memory: Parameters<typeof describeMemory>[0], bounds: MemoryBounds): void {
  assert.ok(memory.peak - memory.baseline.rss < bounds.peak, `the victim's RSS rose by less than ${bounds.peak} MB during the attack: ${describeMemory(memory)}`)
  assert.ok(memory.held < bounds.held, `and it holds less than ${bounds.held} MB more than before once it is over: ${describeMemory(memory)}`)
}

/** This process's highest RSS (MB) since the last reset (Linux VmHWM), or its RSS now where that cannot be read. */
function ownPeak (): number {
  try {
    const kb = /VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]
    if (kb != null) return Math.max(Number(kb) / 1024, process.memoryUsage().rss / MB)
  } catch {}
  return process.memoryUsage().rss / MB
}

/**
 * For a victim that runs in the test's own process (the relay): this
 * process's RSS before `attack` and its highest while it ran, in MB. The
 * attackers' memory is counted too, so its bounds must say so.
 */
export async function ownMemoryAcross<T> (attack: () => Promise<T>): Promise<{ result: T, baseline: number, peak: number }> {
  const baseline = process.memoryUsage().rss / MB
  try {
    writeFileSync('/proc/self/clear_refs', '5')
  } catch {}
  const result = await attack()
  return { result, baseline, peak: ownPeak() }
}
