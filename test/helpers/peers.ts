import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { createNewPiecePlease, type NewPiecePlease, type NewPiecePleaseInit, type NewPiecePleaseEvents } from '../../src/index.ts'

/** Loopback only, ephemeral port: the only listen address tests use. */
export const LOOPBACK = ['/ip4/127.0.0.1/tcp/0']

const cleanups: Array<() => Promise<void>> = []

// registered when the test file imports this module: runs after all its tests
after(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.().catch(() => {})
})

function registerCleanup (fn: () => Promise<void>): void {
  cleanups.push(fn)
}

/** A fresh directory under the OS temp dir, removed after the test file. */
export async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'npp-test-'))
  registerCleanup(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

/** Start a peer on loopback; stopped after the test file even if a test fails. */
export async function peer (init: NewPiecePleaseInit = {}): Promise<NewPiecePlease> {
  const npp = await createNewPiecePlease({ storage: 'memory', listen: LOOPBACK, ...init })
  registerCleanup(async () => { await npp.stop() })
  return npp
}

/** Resolve with the detail of the next `type` event matching `accept`; reject after `ms`. */
export async function nextEvent<K extends keyof NewPiecePleaseEvents> (
  target: NewPiecePlease, type: K, accept: (detail: NewPiecePleaseEvents[K]['detail']) => boolean = () => true, ms = 15_000
): Promise<NewPiecePleaseEvents[K]['detail']> {
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      target.removeEventListener(type, listener as any)
      reject(new Error(`no matching "${type}" event within ${ms} ms`))
    }, ms)
    const listener = (evt: CustomEvent): void => {
      if (!accept(evt.detail)) return
      clearTimeout(timer)
      target.removeEventListener(type, listener as any)
      resolve(evt.detail)
    }
    target.addEventListener(type, listener as any)
  })
}

/** Connect `a` to `b` and resolve once each has recorded the other as a companion. */
export async function befriend (a: NewPiecePlease, b: NewPiecePlease, ms = 15_000): Promise<void> {
  const aSeesB = nextEvent(a, 'db:discovered', c => c.nodeId === b.peerId, ms)
  const bSeesA = nextEvent(b, 'db:discovered', c => c.nodeId === a.peerId, ms)
  await a.connectToPeer(b.getMultiaddrs()[0]!)
  await Promise.all([aSeesB, bSeesA])
}

/** Poll `check` on each event of `type` until it holds (bounded). */
export async function until<K extends keyof NewPiecePleaseEvents> (target: NewPiecePlease, type: K, check: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  if (await check()) return
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    await nextEvent(target, type, () => true, deadline - Date.now())
    if (await check()) return
  }
  throw new Error(`condition not met within ${ms} ms`)
}

/** Resolve when an OrbitDB database's Node-style `events` emits `event` and `check()` holds (checked first). */
export async function dbCondition (db: { events: any }, event: string, check: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    const left = deadline - Date.now()
    if (left <= 0) throw new Error(`condition on "${event}" not met within ${ms} ms`)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { db.events.off(event, onEvent); reject(new Error(`no "${event}" within ${ms} ms`)) }, left)
      const onEvent = (): void => { clearTimeout(timer); db.events.off(event, onEvent); resolve() }
      db.events.on(event, onEvent)
    })
  }
}
