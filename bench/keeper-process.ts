/**
 * One process of the keeper benchmark (bench/keeper.ts), so that its RSS and
 * open files are its own. `role` is:
 *
 * - `keeper`: a `NewPiecePlease` started as an open keeper from `directory`
 *   (a copy of a fixture, bench/keeper-fixture.ts). Prints
 *   `{"ready":{...}}` with its start timings: process start to imports
 *   done, `createNewPiecePlease` to ready, and to every kept user's
 *   databases open and measured (the keeper service opens the user and
 *   counters databases after `ready`; polled every 50 ms).
 * - `peer`: a new peer (empty directory) with `keepers: [keeper]`. Prints
 *   `{"ready":{...}}` when the first catalog a keeper introduced is whole
 *   (`queryCatalog` returns all `pieces` pieces of its owner), with the
 *   times from its start and from `keeper:registered`; then `{"done":{...}}`
 *   when the keeper's introductions were all checked (`keeper:introduced`)
 *   or after `wait` ms.
 *
 * Both answer JSON-line requests on stdin: `memory` (process.memoryUsage()
 * after a gc), `fds` (/proc/self/fd by what each file is), `status`,
 * `cpu` (process.cpuUsage()), `stop`. stderr is the parent's.
 */
import { createInterface } from 'node:readline'
import { readdir, readlink } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'

interface ProcessInit {
  role: 'keeper' | 'peer'
  directory: string
  /** Users kept (keeper) or expected from the keeper (peer). */
  users: number
  pieces: number
  /** peer: the keeper's multiaddr. */
  keeper?: string
  /** peer: owner peer id -> hash prefix of its pieces. */
  prefixes?: Record<string, string>
  /** peer: how long to wait for all introductions after the first catalog (ms). */
  wait?: number
  /** Largest identify message accepted (bytes), instead of @libp2p/identify's 8 KiB. */
  identifyLimit?: number
}

const init: ProcessInit = JSON.parse(process.argv[2] ?? '{}')
if (init.identifyLimit != null) {
  // what a peer accepts of another's identify message (libp2p's default is
  // 8 KiB; a keeper lists one protocol per open database): raised before
  // the identify service is built, to measure past that limit
  const { defaultValues } = await import(new URL('../node_modules/@libp2p/identify/dist/src/utils.js', import.meta.url).href)
  defaultValues.maxMessageSize = init.identifyLimit
}
const importStart = performance.now()
const { createNewPiecePlease } = await import('../src/index.ts')
const imported = performance.now()

const send = (value: unknown): void => { process.stdout.write(JSON.stringify(value) + '\n') }
const LOOPBACK = ['/ip4/127.0.0.1/tcp/0']
const gc = (globalThis as { gc?: () => void }).gc

function memory (): NodeJS.MemoryUsage {
  gc?.()
  try {
    return process.memoryUsage()
  } catch {
    // EMFILE (reading /proc needs a file descriptor): the parent reads VmRSS instead
    return { rss: NaN, heapTotal: NaN, heapUsed: NaN, external: NaN, arrayBuffers: NaN }
  }
}

/** What each open file descriptor of this process is: sockets, pipes, and files by the store they belong to. */
async function fdReport (pid: number | 'self' = 'self'): Promise<{ total: number, kinds: Record<string, number>, stores: Record<string, number>, levelDbs: Record<string, number> }> {
  const dir = `/proc/${pid}/fd`
  const names = await readdir(dir)
  const kinds: Record<string, number> = {}
  const stores: Record<string, number> = {}
  const levelDbs: Record<string, number> = {}
  const add = (m: Record<string, number>, k: string): void => { m[k] = (m[k] ?? 0) + 1 }
  for (const name of names) {
    let target: string
    try {
      target = await readlink(`${dir}/${name}`)
    } catch {
      continue // closed meanwhile (readdir's own fd)
    }
    const special = /^(socket|pipe|anon_inode):\[?([^\]]*)\]?/.exec(target)
    if (special != null) {
      add(kinds, special[1] === 'anon_inode' ? `anon_inode:${special[2]}` : special[1]!)
      continue
    }
    const store = /\/_heads\//.test(target)
      ? 'OrbitDB heads (_heads)'
      : /\/_index\//.test(target)
        ? 'OrbitDB log index (_index)'
        : /\/_catalog\//.test(target)
          ? 'catalog index (_catalog)'
          : /\/keystore\//.test(target)
            ? 'keystore'
            : /\/blocks\//.test(target)
              ? 'blockstore'
              : /\/datastore\//.test(target)
                ? 'datastore'
                : /\/instance-lock\//.test(target)
                  ? 'instance lock'
                  : /\/orbitdb\/shared\//.test(target) ? 'shared heads and indexes' : undefined
    if (store == null) {
      add(kinds, target.startsWith('/dev/') ? 'device' : 'other file')
      continue
    }
    add(stores, store)
    const file = target.slice(target.lastIndexOf('/') + 1)
    add(kinds, `LevelDB ${file === 'LOCK' ? 'LOCK' : file === 'LOG' ? 'LOG' : file.startsWith('MANIFEST') ? 'MANIFEST' : file.endsWith('.log') ? 'write-ahead .log' : file.endsWith('.ldb') ? 'table .ldb' : file}`)
    if (file === 'LOCK') add(levelDbs, store)
  }
  return { total: names.length, kinds, stores, levelDbs }
}

const t0 = performance.now()
const npp = init.role === 'keeper'
  ? await createNewPiecePlease({ directory: init.directory, listen: LOOPBACK, username: 'keeper', keeper: { open: true, maxUsers: Math.max(256, init.users + 16) } })
  : await createNewPiecePlease({ directory: init.directory, listen: LOOPBACK, username: 'newcomer', keepers: [init.keeper!], reconnectInterval: 2000 })
const ready = performance.now()
const parts = (npp as any).parts

function status (): Record<string, unknown> {
  return {
    storage: npp.keeperService?.storage(),
    replicasOpen: parts?.companions.openReplicas().length,
    replicaFailures: parts?.companions.replicaFailures().length,
    firstFailure: parts?.companions.replicaFailures()[0]?.error,
    companions: parts?.companions.list().length,
    connections: npp.libp2p.getConnections().length,
    // what identify sends every peer that connects (one heads protocol per open database)
    protocols: npp.libp2p.getProtocols().length,
    protocolBytes: npp.libp2p.getProtocols().reduce((n, p) => n + p.length + 2, 0)
  }
}

if (init.role === 'keeper') {
  // the keeper service holds each user's user and counters databases after
  // `ready` (not awaited by start): wait until every kept user is measured,
  // or nothing more opened for 10 s (a keeper that opens on demand, or a
  // replica that failed to open); the time is that of the last change
  let last = -1
  let changed = performance.now()
  // a keeper that opens what it keeps when wanted (`active` in its storage) opens nothing at start
  const lazy = npp.keeperService?.storage().active != null
  if (lazy) {
    changed = ready
  } else {
    for (;;) {
      const replicas = npp.keeperService?.storage().replicas ?? 0
      if (replicas !== last) { last = replicas; changed = performance.now() }
      if (replicas >= 3 * init.users || performance.now() - changed > 10_000) break
      await sleep(50)
    }
  }
  const allOpen = changed
  send({
    ready: {
      peerId: npp.peerId,
      multiaddrs: npp.getMultiaddrs(),
      bootMs: importStart,
      importMs: imported - importStart,
      readyMs: ready - t0,
      allOpenMs: allOpen - t0,
      status: status()
    }
  })
} else {
  const prefixes = init.prefixes ?? {}
  let registered: number | undefined
  let firstDiscovered: { owner: string, at: number } | undefined
  let introduced: number | undefined
  let resolveWhole!: (v: number) => void
  const whole = new Promise<number>(resolve => { resolveWhole = resolve })
  let checking = false
  let again = false
  const check = async (): Promise<void> => {
    if (firstDiscovered == null) return
    if (checking) { again = true; return }
    checking = true
    try {
      do {
        again = false
        const { owner } = firstDiscovered
        const prefix = prefixes[owner] ?? ''
        const { results } = await npp.queryCatalog((p) => p.hash.startsWith(prefix), { timeout: 5000 })
        if (results.filter(r => r.owner === owner).length >= init.pieces) { resolveWhole(performance.now()); return }
      } while (again)
    } finally {
      checking = false
    }
  }
  let refused: { at: number, reason: string, message: string } | undefined
  npp.addEventListener('keeper:registered', () => { registered ??= performance.now() })
  npp.addEventListener('keeper:refused', (evt) => { refused ??= { at: performance.now() - t0, reason: evt.detail.error.reason, message: evt.detail.error.message } })
  // introductions are taken beside registration: done once both happened
  const allIntroduced = Promise.all([
    new Promise<void>(resolve => { npp.addEventListener('keeper:introduced', () => { introduced ??= performance.now(); resolve() }) }),
    new Promise<void>(resolve => { npp.addEventListener('keeper:registered', () => { resolve() }) })
  ])
  npp.addEventListener('db:discovered', (evt) => {
    if (firstDiscovered == null && prefixes[evt.detail.nodeId] != null) {
      firstDiscovered = { owner: evt.detail.nodeId, at: performance.now() }
      void check()
    }
  })
  npp.addEventListener('catalog:update', (evt) => { if (evt.detail.owner === firstDiscovered?.owner) void check() })
  const wholeAt = await Promise.race([whole, sleep(120_000, undefined)])
  const rel = (x: number | undefined): number | undefined => x == null ? undefined : x - t0
  send({
    ready: {
      peerId: npp.peerId,
      startMs: ready - t0,
      registeredMs: rel(registered),
      firstDiscoveredMs: rel(firstDiscovered?.at),
      wholeMs: rel(wholeAt),
      wholeAfterRegisteredMs: wholeAt == null || registered == null ? undefined : wholeAt - registered,
      owner: firstDiscovered?.owner,
      refused
    }
  })
  await Promise.race([allIntroduced, sleep(init.wait ?? 60_000)])
  send({ done: { registeredMs: rel(registered), introducedMs: rel(introduced), companions: parts.companions.list().length, status: status(), rss: memory().rss, fds: await fdReport().then(r => r.total, () => NaN) } })
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  const req = JSON.parse(line)
  try {
    if (req.method === 'memory') send({ id: req.id, result: memory() })
    else if (req.method === 'fds') send({ id: req.id, result: await fdReport() })
    else if (req.method === 'status') send({ id: req.id, result: status() })
    else if (req.method === 'cpu') send({ id: req.id, result: process.cpuUsage() })
    else if (req.method === 'stop') {
      const s = performance.now()
      await npp.stop()
      send({ id: req.id, result: performance.now() - s })
      lines.close()
      break
    }
  } catch (err: any) {
    send({ id: req.id, error: { name: String(err?.name), message: String(err?.message ?? err) } })
  }
}
