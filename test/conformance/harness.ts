/**
 * What OrbitDB's own Documents tests need, built the way this project's tests
 * build things: each suite runs once against OrbitDB's `Documents` (proving
 * the port is faithful) and once against `Catalog` (the point of it).
 *
 * Stand-ins for upstream's test utilities (orbitdb/orbitdb `test/utils/*`,
 * `test/fixtures/test-keys-path.js`):
 * - `createHelia()`: the project's stack (Helia + libp2p) with memory
 *   blockstore, listening on loopback only on an ephemeral port, instead of
 *   `/ip4/0.0.0.0/tcp/0/ws`;
 * - the keystore lives in a temporary directory and keys are generated,
 *   instead of copying fixture keys into `./testkeys`;
 * - databases get a temporary `directory` instead of OrbitDB's default
 *   `./orbitdb` (nothing is written into the working tree);
 * - `connectPeers()` resolves once the two nodes are connected, instead of
 *   after a fixed one-second sleep;
 * - `waitFor()` has a deadline, and waits for replicas to settle instead of
 *   its first 100 ms (see there).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Documents } from '@orbitdb/core'
import { createStack, type Stack } from '../../src/stack/stack.ts'
import { Catalog, CATALOG_TYPE } from '../../src/catalog/catalog.ts'
import { LOOPBACK } from '../helpers/peers.ts'
import type { NppHelia } from '../../src/types.ts'

/** A database type under test, constructed as upstream constructs `Documents`. */
export interface Subject {
  name: string
  /** What `db.type` says (upstream asserts `'documents'`). */
  type: string
  /** `Documents(options)`, or the same for the catalog (whose own default key is `hash`, not `_id`). */
  Database: (options?: { indexBy?: string }) => (init: any) => Promise<any>
}

export const SUBJECTS: Subject[] = [
  { name: 'OrbitDB Documents (checks the port)', type: 'documents', Database: (options) => tracked(Documents(options)) },
  { name: 'npp-catalog', type: CATALOG_TYPE, Database: (options) => tracked(Catalog({ indexBy: options?.indexBy ?? '_id' })) }
]

/** Open databases, with the entries each has finished applying (announced by its `update` event). */
const open = new Map<any, Set<string>>()

/** Record what `db` has applied from when it opens until it closes. */
function tracked (factory: (init: any) => Promise<any>): (init: any) => Promise<any> {
  return async (init) => {
    const db = await factory(init)
    const applied = new Set<string>()
    db.events.on('update', (entry: any) => { applied.add(entry.hash) })
    db.events.on('close', () => { open.delete(db) })
    // what it applied while opening
    for (const head of await db.log.heads()) applied.add(head.hash)
    open.set(db, applied)
    return db
  }
}

/**
 * Every open replica of a database has the same heads, and has finished
 * applying each of them (OrbitDB emits `update` after its `onUpdate`).
 */
async function replicasSettled (report?: string[]): Promise<boolean> {
  const byAddress = new Map<string, Array<[any, Set<string>]>>()
  for (const [db, applied] of open) byAddress.set(db.address, [...(byAddress.get(db.address) ?? []), [db, applied]])
  for (const group of byAddress.values()) {
    let first: string | undefined
    for (const [db, applied] of group) {
      const heads: string[] = (await db.log.heads()).map((e: any) => e.hash).sort()
      report?.push(`${String(db.address)}: heads ${heads.join()} (not applied: ${heads.filter(h => !applied.has(h)).join() || 'none'})`)
      if (!heads.every(h => applied.has(h))) return false
      first ??= heads.join()
      if (heads.join() !== first) return false
    }
  }
  return true
}

const stacks: Stack[] = []
const dirs: string[] = []

/** Upstream's `createHelia()`: a started node on loopback (stopped by `cleanup()`). */
export async function createHelia (): Promise<NppHelia> {
  const stack = await createStack({ storage: 'memory', directory: await tempDir(), listen: LOOPBACK, pubsubDiscovery: false })
  stacks.push(stack)
  return stack.helia
}

/** Upstream's `connectPeers(ipfs1, ipfs2)`: resolves when connected. */
export async function connectPeers (ipfs1: NppHelia, ipfs2: NppHelia): Promise<void> {
  await ipfs2.libp2p.dial(ipfs1.libp2p.getMultiaddrs()[0]!)
}

/**
 * Upstream's `waitFor(valueA, toBeValueB)`: resolves once they are equal,
 * here within `ms`. Upstream checks every 100 ms, so it never returns sooner
 * than that, and the replication test leans on that time: the updates
 * published after the peers joined arrive meanwhile. Instead of the time,
 * this waits for the condition: every open replica has the same heads and
 * has applied them.
 */
export async function waitFor (valueA: () => unknown, toBeValueB: () => unknown, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (await valueA() !== await toBeValueB() || !await replicasSettled()) {
    if (Date.now() > deadline) {
      const report: string[] = []
      await replicasSettled(report)
      throw new Error(`waitFor: condition not met within ${ms} ms (value ${String(await valueA())}; replicas: ${report.join('; ')})`)
    }
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** A fresh directory under the OS temp dir (removed by `cleanup()`). */
export async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'npp-conformance-'))
  dirs.push(dir)
  return dir
}

/** Upstream's `ipfs.stop()` and `rimraf(...)` of an `after` hook: stop every node, remove every directory. */
export async function cleanup (): Promise<void> {
  while (stacks.length > 0) await stacks.pop()!.close()
  while (dirs.length > 0) await rm(dirs.pop()!, { recursive: true, force: true })
}
