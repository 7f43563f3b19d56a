/**
 * `npm run bench:keeper` (issue 11, "Benchmark"): what a keeper costs per
 * kept user. For each size of a ladder, a keeper directory keeping that many
 * users of `--pieces` pieces (bench/keeper-fixture.ts, cached under
 * os.tmpdir()) is copied and a keeper started from it in a fresh Node
 * process (bench/keeper-process.ts): its start time (to ready, and to every
 * kept user's databases open), its RSS once settled (process.memoryUsage()
 * after a gc, sampled every second until it moves less than 2 MB), its open
 * files (`ls /proc/<pid>/fd | wc -l`, and what they are), then the time a
 * new peer (another process, `keepers: [keeper]`) takes to receive the
 * first catalog the keeper introduces to it, whole. A straight line fitted
 * over the ladder gives the cost per kept user, and 5,000 users on paper.
 *
 *   npm run bench:keeper                          ladder 0, 50, 100, 250 and 500 users, 1,000 pieces each
 *   npm run bench:keeper -- --quick               ladder 0, 10, 25 and 50 users
 *   npm run bench:keeper -- --users 500 --pieces 1000 --ladder 0,100
 *   npm run bench:keeper -- --quick --ulimit 1024 a keeper under `ulimit -n 1024`
 *   npm run bench:keeper -- --tree /tmp/wt-keeper the processes run against another
 *                                                 tree's src/ (a prototype branch: see
 *                                                 bench/RESULTS.md, Keeper)
 *   ... --identify-limit 1048576                  both processes accept identify messages
 *                                                 up to this size (libp2p's 8 KiB is
 *                                                 exceeded past ~30 kept users)
 *   ... --peer-wait 30000 / --no-peer             how long the new peer may take to check
 *                                                 every introduction / no new peer
 *   ... --write                                   the table into bench/RESULTS.md
 *
 * Loopback only, OS-chosen ports, temp dirs; every child is killed on exit.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, readFile, cp } from 'node:fs/promises'
import { tmpdir, cpus, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { writeSection, within } from './results.ts'
import type { Fixture } from './keeper-fixture.ts'

const { values: args } = parseArgs({
  options: {
    users: { type: 'string', default: '500' },
    pieces: { type: 'string', default: '1000' },
    quick: { type: 'boolean', default: false },
    ladder: { type: 'string' },
    ulimit: { type: 'string' },
    tree: { type: 'string' },
    label: { type: 'string' },
    'peer-wait': { type: 'string' },
    'no-peer': { type: 'boolean', default: false },
    'identify-limit': { type: 'string' },
    write: { type: 'boolean', default: false }
  }
})
const USERS = args.quick && args.users === '500' ? 50 : Number(args.users)
const PIECES = Number(args.pieces)
const LADDER = [...new Set([...(args.ladder != null ? args.ladder.split(',').map(Number) : args.quick ? [0, 10, 25] : [0, 50, 100, 250]), USERS])].sort((a, b) => a - b)
const TREE = resolve(args.tree ?? join(import.meta.dirname, '..'))
const PEER_WAIT = Number(args['peer-wait'] ?? (args.quick ? 30_000 : 60_000))
const IDENTIFY_LIMIT = args['identify-limit'] == null ? undefined : Number(args['identify-limit'])
const LIMIT = args.ulimit == null ? undefined : Number(args.ulimit)
if (![USERS, PIECES, ...LADDER].every(n => Number.isInteger(n) && n >= 0)) throw new TypeError(`expected whole numbers, got --users ${args.users} --pieces ${args.pieces} --ladder ${args.ladder}`)

// another tree (a prototype branch) runs this bench's own process scripts against its src/
if (TREE !== resolve(import.meta.dirname, '..')) {
  for (const script of ['keeper-fixture.ts', 'keeper-process.ts']) await cp(join(import.meta.dirname, script), join(TREE, 'bench', script))
}

const children = new Set<ChildProcess>()
const dirs: string[] = []
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { process.exit(130) })

const mb = (bytes: number): number => bytes / 2 ** 20
const fmt = (x: number | undefined, digits = 0): string => x == null || Number.isNaN(x) ? 'n/a' : x.toFixed(digits)
const secs = (msv: number | undefined): string => msv == null ? 'n/a' : msv >= 1000 ? `${(msv / 1000).toFixed(2)} s` : `${msv.toFixed(0)} ms`

interface Child {
  proc: ChildProcess
  /** The next message with this key (`ready`, `done`, `fixture`). */
  next: (key: string, limit: number) => Promise<any>
  request: (method: string, limit?: number) => Promise<any>
  exited: Promise<number | null>
  fds: () => number
  /** VmRSS of the process (MB), read from /proc. */
  vmRss: () => number
}

/** A node process of `script` (in TREE's bench/), with JSON lines on stdout; `ulimit -n` lowered when asked. */
function child (script: string, argv: string[], options: { ulimit?: number, gc?: boolean } = {}): Child {
  // fixtures written by another tree (or with its NPP_PROTO_* switches) are cached apart
  const tag = process.env.NPP_KEEPER_FIXTURE_TAG ?? (args.tree == null ? undefined : TREE.replace(/[^A-Za-z0-9]+/g, '_'))
  const env = tag == null ? process.env : { ...process.env, NPP_KEEPER_FIXTURE_TAG: tag }
  const node = [process.execPath, '--conditions=npp-source', ...(options.gc === true ? ['--expose-gc'] : []), join(TREE, 'bench', script), ...argv]
  const proc = options.ulimit == null
    ? spawn(node[0]!, node.slice(1), { stdio: ['pipe', 'pipe', 'inherit'], cwd: TREE, env })
    : spawn('bash', ['-c', `ulimit -n ${options.ulimit} && exec "$@"`, 'bash', ...node], { stdio: ['pipe', 'pipe', 'inherit'], cwd: TREE, env })
  children.add(proc)
  const exited = new Promise<number | null>(resolve => { proc.on('exit', code => { children.delete(proc); resolve(code) }) })
  const inbox: any[] = []
  const wake = new Set<() => void>()
  createInterface({ input: proc.stdout! }).on('line', line => {
    let msg: any
    try { msg = JSON.parse(line) } catch { process.stderr.write(`[${script}] ${line}\n`); return }
    inbox.push(msg)
    for (const w of wake) w()
  })
  const next = async (key: string, limit: number): Promise<any> => {
    const deadline = Date.now() + limit
    for (;;) {
      const at = inbox.findIndex(m => m[key] != null || (key === 'id' && m.id != null))
      if (at >= 0) return inbox.splice(at, 1)[0]![key]
      if (proc.exitCode != null || Date.now() > deadline) throw new Error(`${script}: no "${key}" within ${limit} ms (exit ${String(proc.exitCode)})`)
      await within(Math.max(1, deadline - Date.now()), Promise.race([new Promise<void>(resolve => { wake.add(resolve) }), exited]))
      wake.clear()
    }
  }
  let nextId = 1
  const request = async (method: string, limit = 120_000): Promise<any> => {
    const id = nextId++
    proc.stdin!.write(JSON.stringify({ id, method }) + '\n')
    const deadline = Date.now() + limit
    for (;;) {
      const at = inbox.findIndex(m => m.id === id)
      if (at >= 0) {
        const msg = inbox.splice(at, 1)[0]!
        if (msg.error != null) throw new Error(`${method}: ${msg.error.name as string}: ${msg.error.message as string}`)
        return msg.result
      }
      if (proc.exitCode != null || Date.now() > deadline) throw new Error(`${script}: no answer to ${method} within ${limit} ms`)
      await within(Math.max(1, deadline - Date.now()), Promise.race([new Promise<void>(resolve => { wake.add(resolve) }), exited]))
      wake.clear()
    }
  }
  // as the issue counts them: ls /proc/<pid>/fd | wc -l
  const fds = (): number => { try { return readdirSync(`/proc/${proc.pid!}/fd`).length } catch { return NaN } }
  const vmRss = (): number => { try { return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid!}/status`, 'utf8'))?.[1]) / 1024 } catch { return NaN } }
  return { proc, next, request, exited, fds, vmRss }
}

/** The fixture, built in a process of its own when not cached. */
async function fixture (users: number, pieces: number): Promise<Fixture> {
  const c = child('keeper-fixture.ts', [String(users), String(pieces)])
  const made = await c.next('fixture', 60 * 60_000)
  await c.exited
  return { ...JSON.parse(await readFile(join(made.directory, 'fixture.json'), 'utf8')), directory: made.directory, cached: made.cached }
}

/** RSS once it stops moving (< 2 MB between two samples a second apart, twice in a row), at most 30 s. */
async function settledMemory (c: Child): Promise<{ rss: number, heapUsed: number, external: number, arrayBuffers: number, settleMs: number }> {
  const t0 = Date.now()
  let prev = await c.request('memory')
  let calm = 0
  while (Date.now() - t0 < 30_000 && calm < 2) {
    await sleep(1000)
    const now = await c.request('memory')
    calm = Math.abs(now.rss - prev.rss) < 2 * 2 ** 20 ? calm + 1 : 0
    prev = now
  }
  // the child cannot read its own RSS when out of file descriptors: VmRSS from here
  const rss = prev.rss == null || Number.isNaN(prev.rss) ? c.vmRss() : mb(prev.rss)
  return { rss, heapUsed: mb(prev.heapUsed), external: mb(prev.external), arrayBuffers: mb(prev.arrayBuffers), settleMs: Date.now() - t0 }
}

interface Row {
  users: number
  /** CPU of the idle keeper, % of one core, over its first 10 s after start. */
  idleCpu: number
  readyMs: number
  allOpenMs: number
  importMs: number
  rss: number
  heapUsed: number
  external: number
  fds: number
  fdReport: any
  status: any
  peer?: any
  peerDone?: any
  rssAfterPeer?: number
  fdsAfterPeer?: number
  stopMs?: number
  fixtureSeconds: number
}

async function measure (users: number): Promise<Row> {
  const t = Date.now()
  const fx = await fixture(users, PIECES)
  const fixtureSeconds = (Date.now() - t) / 1000
  const work = await mkdtemp(join(tmpdir(), `npp-keeper-bench-${users}-`))
  dirs.push(work)
  const directory = join(work, 'keeper')
  await cp(fx.directory, directory, { recursive: true })
  console.log(`\n${users} users x ${PIECES} pieces: fixture ${fixtureSeconds.toFixed(1)} s${fx.cached === true ? ' (cached)' : ` (built in ${fx.buildSeconds.toFixed(1)} s${fx.base == null ? '' : ', from a smaller one'})`}`)

  const keeper = child('keeper-process.ts', [JSON.stringify({ role: 'keeper', directory, users, pieces: PIECES, identifyLimit: IDENTIFY_LIMIT })], { ulimit: LIMIT, gc: true })
  const ready = await keeper.next('ready', 10 * 60_000)
  console.log(`  keeper ready in ${secs(ready.readyMs)}, all open in ${secs(ready.allOpenMs)} (imports ${secs(ready.importMs)}); ${JSON.stringify(ready.status)}`)
  const cpu0 = await keeper.request('cpu')
  const wall0 = Date.now()
  const memory = await settledMemory(keeper)
  // CPU of the idle keeper while its RSS settles (its redials of kept users who are away, gossipsub heartbeats)
  await sleep(Math.max(0, 10_000 - (Date.now() - wall0)))
  const cpu1 = await keeper.request('cpu')
  const idleCpu = ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / 1000 / (Date.now() - wall0) * 100
  const fds = keeper.fds()
  const fdReport = await keeper.request('fds').catch((err: Error) => ({ total: fds, kinds: { [`unreadable (${err.message})`]: fds }, stores: {}, levelDbs: {} }))
  console.log(`  idle CPU ${fmt(idleCpu, 1)} % of one core over ${((Date.now() - wall0) / 1000).toFixed(0)} s`)
  console.log(`  RSS ${fmt(memory.rss)} MB (heap ${fmt(memory.heapUsed)} MB, external ${fmt(memory.external)} MB), ${fds} open files: ${JSON.stringify(fdReport.levelDbs)}`)
  const row: Row = { users, idleCpu, readyMs: ready.readyMs, allOpenMs: ready.allOpenMs, importMs: ready.importMs, rss: memory.rss, heapUsed: memory.heapUsed, external: memory.external, fds, fdReport, status: ready.status, fixtureSeconds }

  if (users > 0 && !args['no-peer']) {
    const prefixes = Object.fromEntries(fx.list.map(u => [u.peerId, u.prefix]))
    const peerDir = join(work, 'peer')
    const peer = child('keeper-process.ts', [JSON.stringify({ role: 'peer', directory: peerDir, users, pieces: PIECES, keeper: ready.multiaddrs[0], prefixes, wait: PEER_WAIT, identifyLimit: IDENTIFY_LIMIT })])
    row.peer = await peer.next('ready', 5 * 60_000)
    if (row.peer.refused != null) console.log(`  new peer: refused at ${secs(row.peer.refused.at)}: ${row.peer.refused.reason as string}: ${row.peer.refused.message as string}`)
    console.log(`  new peer: registered ${secs(row.peer.registeredMs)}, first introduced ${secs(row.peer.firstDiscoveredMs)}, its ${PIECES} pieces ${secs(row.peer.wholeMs)} from start (${secs(row.peer.wholeAfterRegisteredMs)} after registered)`)
    row.peerDone = await peer.next('done', PEER_WAIT + 60_000)
    // registration may come after the first catalog (when introductions do not wait for it)
    row.peer.registeredMs ??= row.peerDone.registeredMs
    console.log(`  new peer: RSS ${fmt(mb(row.peerDone.rss))} MB, ${row.peerDone.fds as number} open files, ${row.peerDone.companions as number} companions, introductions ${row.peerDone.introducedMs == null ? `not all checked within ${PEER_WAIT / 1000} s` : `all checked at ${secs(row.peerDone.introducedMs)}`}`)
    const after = await keeper.request('memory')
    row.rssAfterPeer = after.rss == null || Number.isNaN(after.rss) ? keeper.vmRss() : mb(after.rss)
    row.fdsAfterPeer = keeper.fds()
    await peer.request('stop', 60_000).catch(() => {})
    await within(10_000, peer.exited)
    peer.proc.kill('SIGKILL')
  }
  row.stopMs = await keeper.request('stop', 120_000).catch(() => undefined)
  await within(10_000, keeper.exited)
  keeper.proc.kill('SIGKILL')
  await rm(work, { recursive: true, force: true })
  return row
}

/** Least-squares line y = a + b x. */
function fit (xs: number[], ys: number[]): { a: number, b: number } {
  const n = xs.length
  const mx = xs.reduce((s, x) => s + x, 0) / n
  const my = ys.reduce((s, y) => s + y, 0) / n
  let sxy = 0
  let sxx = 0
  for (let i = 0; i < n; i++) { sxy += (xs[i]! - mx) * (ys[i]! - my); sxx += (xs[i]! - mx) ** 2 }
  const b = sxx === 0 ? 0 : sxy / sxx
  return { a: my - b * mx, b }
}

const ulimit = LIMIT ?? Number(execFileSync('bash', ['-c', 'ulimit -n']).toString().trim())
const label = args.label ?? (args.tree == null ? 'main' : `tree ${TREE}`)
const started = Date.now()
console.log(`keeper benchmark (${label}${IDENTIFY_LIMIT == null ? '' : `, identify messages up to ${IDENTIFY_LIMIT} bytes`}): ladder ${LADDER.join(', ')} users x ${PIECES} pieces, on ${cpus().length} x ${cpus()[0]?.model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ulimit -n ${ulimit}`)
const rows: Row[] = []
try {
  for (const users of LADDER) rows.push(await measure(users))
} finally {
  for (const d of dirs) await rm(d, { recursive: true, force: true }).catch(() => {})
}

const withUsers = rows.filter(r => r.users > 0)
const xs = rows.map(r => r.users)
const perUser = {
  rss: fit(xs, rows.map(r => r.rss)),
  fds: fit(xs, rows.map(r => r.fds)),
  allOpenMs: fit(xs, rows.map(r => r.allOpenMs))
}
const levelDbs = (r: Row): number => Object.values(r.fdReport.levelDbs as Record<string, number>).reduce((s, n) => s + n, 0)
const table = [
  '| users kept | start: ready | start: all open | RSS settled | open files | LevelDB stores open | replicas open / failed | protocols listed by identify (bytes) | idle CPU (first 10 s) | new peer: first catalog whole, from its start | from its `keeper:registered` | new peer after: companions, RSS, open files | keeper RSS / files after |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...rows.map(r => `| ${r.users} | ${secs(r.readyMs)} | ${secs(r.allOpenMs)} | ${fmt(r.rss)} MB | ${r.fds} | ${levelDbs(r)} | ${r.status.replicasOpen ?? 'n/a'} / ${r.status.replicaFailures ?? 'n/a'} | ${r.status.protocols ?? 'n/a'} (${r.status.protocolBytes ?? 'n/a'}) | ${fmt(r.idleCpu, 1)} % | ${r.peer == null ? '-' : secs(r.peer.wholeMs)} | ${r.peer == null ? '-' : r.peer.wholeAfterRegisteredMs != null ? secs(r.peer.wholeAfterRegisteredMs) : r.peer.registeredMs != null ? `before it (registered at ${secs(r.peer.registeredMs)})` : 'never registered'} | ${r.peerDone == null ? '-' : `${r.peerDone.companions as number}, ${fmt(mb(r.peerDone.rss))} MB, ${r.peerDone.fds as number} files${r.peerDone.introducedMs == null ? ` (not all checked in ${PEER_WAIT / 1000} s)` : ` (all checked at ${secs(r.peerDone.introducedMs)})`}`} | ${r.rssAfterPeer == null ? '-' : `${fmt(r.rssAfterPeer)} MB / ${r.fdsAfterPeer ?? 'n/a'}`} |`)
].join('\n')
const largest = rows[rows.length - 1]!
const kinds = Object.entries(largest.fdReport.kinds as Record<string, number>).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')
const stores = Object.entries(largest.fdReport.stores as Record<string, number>).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n} (${(largest.fdReport.levelDbs[k] ?? 0) as number} stores)`).join(', ')
const at = (f: { a: number, b: number }, n: number): number => f.a + f.b * n
const summary = [
  `Per kept user (least squares over ${xs.join(', ')} users): ${fmt(perUser.rss.b * 1024)} kB RSS, ${fmt(perUser.fds.b, 1)} open files, ${fmt(perUser.allOpenMs.b, 1)} ms of start; base ${fmt(perUser.rss.a)} MB, ${fmt(perUser.fds.a)} files.`,
  `5,000 users on paper: ${fmt(at(perUser.rss, 5000))} MB RSS, ${fmt(at(perUser.fds, 5000))} open files, ${secs(at(perUser.allOpenMs, 5000))} to open everything.`,
  `Open files of the ${largest.users}-user keeper by kind: ${kinds}. By store: ${stores}.`,
  `Keeper stop: ${rows.map(r => `${r.users}: ${secs(r.stopMs)}`).join(', ')}.`
].join('\n\n')
const targets = USERS === 500 && PIECES === 1000 && withUsers.length > 0
  ? (() => {
      const r = rows.find(x => x.users === 500)!
      const mark = (ok: boolean): string => ok ? 'met' : '**not met**'
      return [
        '| target (500 users x 1,000 pieces) | measured | |',
        '|---|---:|---|',
        `| RSS under 400 MB | ${fmt(r.rss)} MB | ${mark(r.rss < 400)} |`,
        `| under 1,000 open files | ${r.fds} | ${mark(r.fds < 1000)} |`,
        `| start under 3 s (to every replica open) | ${secs(r.allOpenMs)} (ready ${secs(r.readyMs)}) | ${mark(r.allOpenMs < 3000)} |`,
        `| a catalog received under 1 s on loopback (from \`keeper:registered\`) | ${secs(r.peer?.wholeAfterRegisteredMs)} (${secs(r.peer?.wholeMs)} from start) | ${mark((r.peer?.wholeAfterRegisteredMs ?? Infinity) < 1000)} |`
      ].join('\n')
    })()
  : ''
const command = `npm run bench:keeper -- ${process.argv.slice(2).join(' ')}`.trim()
const commit = (() => { try { return execFileSync('git', ['-C', TREE, 'describe', '--always', '--dirty']).toString().trim() } catch { return 'unknown' } })()
const report = `Produced by \`${command}\` (${label}, source ${commit}${IDENTIFY_LIMIT == null ? '' : `, identify messages accepted up to ${IDENTIFY_LIMIT} bytes in both processes`}) on ${new Date().toISOString().slice(0, 10)}: ${cpus().length} x ${cpus()[0]?.model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, \`ulimit -n\` ${ulimit}, ${PIECES} pieces per user; ${((Date.now() - started) / 60_000).toFixed(1)} min.\n\n${table}\n\n${summary}${targets === '' ? '' : `\n\n${targets}`}`
console.log(`\n${report}\n`)
if (args.write) await writeSection(args.tree == null ? 'keeper' : 'keeper-prototype', report)
