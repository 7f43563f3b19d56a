/**
 * `npm run soak [-- options]`: the churn soak. A relay and several peer
 * processes on 127.0.0.1, all started at once, each writing a piece every
 * `--interval` ms; random SIGKILLs of peers and restarts on the same storage,
 * at least one pair killed together and one relay restart (on the same port,
 * with the same key); one or two peers never killed, whose RSS shows whether
 * memory levels off. When the churn stops and the writes settle it checks
 * that no acknowledged write (one whose promise resolved) is lost from its
 * writer's catalog, and that every peer's replica of every other peer's
 * catalog holds all that peer's acknowledged writes within
 * `--converge-timeout` seconds. Exit code 0 when both hold, 1 otherwise; a
 * markdown summary for bench/RESULTS.md is printed at the end.
 *
 * Not part of `npm test`. Loopback only (every child runs with the test
 * network guard), OS-chosen ports, temporary directories removed at the end
 * (`--keep-dir` keeps them, with every process's stderr log). See `--help`.
 */
import { mkdtemp, mkdir, writeFile, copyFile, symlink } from 'node:fs/promises'
import { readFileSync, rmSync } from 'node:fs'
import { tmpdir, cpus, totalmem } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { SoakPeer, SoakRelay, rssKib, codeIn, REPO_ROOT, KNOWN_FAILURES, type SoakCode } from './soak-procs.ts'
import { markdown, median, rssMarks, rssRow, seconds, type RssSample, type RssRow } from './soak-report.ts'

// --- options ------------------------------------------------------------------

interface SoakOptions {
  /** Churn duration. */
  minutes: number
  peers: number
  crowd: boolean
  seed: string
  json: string | undefined
  /** Pause between a peer's writes (ms). */
  interval: number
  /** Bound on convergence after the churn (s). */
  convergeTimeout: number
  /** Peers never killed (the first ones). */
  keep: number
  /** Mean time between two kills (s). */
  killEvery: number
  /** `DEBUG` namespaces of the children (what the failure counts read). */
  debug: string
  keepDir: boolean
  /** Self-check of the harness: wipe the first killed peer's storage before its restart, so the soak must fail. */
  faultWipe: boolean
  /** Run a snapshot of this commit instead of the working tree. */
  ref: string | undefined
}

const DEFAULT_MINUTES = 5
const DEFAULT_PEERS = 6
/** `--crowd`: at least this many peers behind one address (127.0.0.1). */
const CROWD_PEERS = 40
const DEFAULT_CONVERGE_TIMEOUT = 120
/** Children log the library's parts and libp2p's connection manager (refused inbound connections). */
const DEFAULT_DEBUG = 'npp:*,libp2p:connection-manager'
/** RSS sampling period. */
const RSS_EVERY_MS = 10_000
/** How often the convergence check asks every peer for its view. */
const POLL_EVERY_MS = 5_000
/** Views asked at once (40 peers each querying 40 sources is enough load). */
const VIEW_CONCURRENCY = 8
/** Time limit of each source of a view's query. */
const VIEW_SOURCE_TIMEOUT = 5_000
/** One relay restart and one double kill per this much churn (at least one of each). */
const BLOCK_MS = 10 * 60_000

const USAGE = `Usage: npm run soak -- [options]

  --minutes <n>           churn duration in minutes (default ${DEFAULT_MINUTES})
  --peers <n>             peer processes (default ${DEFAULT_PEERS}; ${CROWD_PEERS} with --crowd)
  --crowd                 ${CROWD_PEERS} or more peers behind one address (127.0.0.1)
  --seed <s>              seed of the churn schedule (default: random, printed)
  --interval <ms>         pause between a peer's writes (default max(1000, 250 x peers))
  --converge-timeout <s>  bound on convergence after the churn (default ${DEFAULT_CONVERGE_TIMEOUT})
  --keep <n>              peers never killed (default 1, or 2 from 4 peers on)
  --kill-every <s>        mean time between kills (default 120 / killable peers, 10 to 30)
  --debug <namespaces>    DEBUG of the children (default ${DEFAULT_DEBUG})
  --ref <commit>          run the library as of <commit> (git archive into the temporary
                          directory) instead of the working tree, whose src/ may change
                          while a long soak restarts peers
  --json <file>           write every result (events, RSS series) to <file>
  --keep-dir              keep the temporary directory (storage and stderr logs)
  --fault-wipe            self-check of this harness: wipe the first killed peer's storage
                          before it restarts; the soak must then report lost writes and fail
  -h, --help              print this help
`

function parseOptions (argv: readonly string[]): SoakOptions {
  const values = new Map<string, string>()
  const flags = new Set<string>()
  const valued = ['--minutes', '--peers', '--seed', '--json', '--interval', '--converge-timeout', '--keep', '--kill-every', '--debug', '--ref']
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '--crowd' || arg === '--keep-dir' || arg === '--fault-wipe') { flags.add(arg); continue }
    if (arg === '--help' || arg === '-h') { process.stdout.write(USAGE); process.exit(0) }
    const eq = arg.indexOf('=')
    const name = eq > 0 ? arg.slice(0, eq) : arg
    if (!valued.includes(name)) throw new TypeError(`unknown option ${arg} (see npm run soak -- --help)`)
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i]
    if (value == null) throw new TypeError(`${name} needs a value`)
    values.set(name, value)
  }
  const number = (name: string, fallback: number, min: number, max: number, integer = false): number => {
    const raw = values.get(name)
    if (raw == null) return fallback
    const n = Number(raw)
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) throw new TypeError(`expected ${name} to be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(raw)}`)
    return n
  }
  const crowd = flags.has('--crowd')
  const peers = number('--peers', crowd ? CROWD_PEERS : DEFAULT_PEERS, 2, 200, true)
  if (crowd && peers < CROWD_PEERS) throw new TypeError(`--crowd means at least ${CROWD_PEERS} peers, got --peers ${peers}`)
  const keep = number('--keep', peers >= 4 ? 2 : 1, 0, peers - 1, true)
  const killable = peers - keep
  return {
    minutes: number('--minutes', DEFAULT_MINUTES, 0.25, 24 * 60),
    peers,
    crowd,
    seed: values.get('--seed') ?? String(Math.floor(Math.random() * 1e6)),
    json: values.has('--json') ? resolve(values.get('--json') as string) : undefined,
    interval: number('--interval', Math.max(1000, 250 * peers), 100, 600_000, true),
    convergeTimeout: number('--converge-timeout', DEFAULT_CONVERGE_TIMEOUT, 5, 3600),
    keep,
    killEvery: number('--kill-every', Math.min(30, Math.max(10, 120 / Math.max(1, killable))), 1, 3600),
    debug: values.get('--debug') ?? DEFAULT_DEBUG,
    keepDir: flags.has('--keep-dir'),
    faultWipe: flags.has('--fault-wipe'),
    ref: values.get('--ref')
  }
}

// --- the schedule -------------------------------------------------------------

/** mulberry32 over an FNV-1a hash of the seed: the same seed, the same schedule. */
function random (seed: string): () => number {
  let a = 2166136261
  for (let i = 0; i < seed.length; i++) a = Math.imul(a ^ seed.charCodeAt(i), 16777619)
  return () => {
    a = (a + 0x6D2B79F5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Planned =
  | { at: number, kind: 'kill', pick: number, downMs: number }
  | { at: number, kind: 'double', picks: [number, number], downMs: number }
  | { at: number, kind: 'relay', signal: 'SIGKILL' | 'SIGTERM', downMs: number }

/**
 * Kills spaced by `killEvery` on average (half to one and a half times it),
 * each peer down for 0 to 8 s (0: restarted at once, as a supervisor
 * would); per 10 minutes of churn one double kill (at 30 %) and one relay
 * restart (at 55 %: a crash, then a clean stop, alternately).
 */
function plan (rng: () => number, durationMs: number, killEveryMs: number, killable: number): Planned[] {
  const events: Planned[] = []
  const down = (): number => Math.round(rng() * 8000)
  if (killable >= 1) {
    for (let t = killEveryMs * (0.5 + rng()); t < durationMs - 5000 && events.length < 100_000; t += killEveryMs * (0.5 + rng())) {
      events.push({ at: t, kind: 'kill', pick: rng(), downMs: down() })
    }
  }
  const blocks = Math.max(1, Math.round(durationMs / BLOCK_MS))
  for (let b = 0; b < blocks; b++) {
    if (killable >= 2) events.push({ at: durationMs * (b + 0.3) / blocks, kind: 'double', picks: [rng(), rng()], downMs: down() })
    events.push({ at: durationMs * (b + 0.55) / blocks, kind: 'relay', signal: b % 2 === 0 ? 'SIGKILL' : 'SIGTERM', downMs: 1000 + Math.round(rng() * 4000) })
  }
  return events.sort((a, b) => a.at - b.at)
}

// --- the run ------------------------------------------------------------------

/** A bad option or ref ends the run with one line and exit code 2 (1 is a failed soak). */
function usageError (err: any): never {
  process.stderr.write(`soak: ${String(err?.message ?? err).trim()}\n`)
  process.exit(2)
}
let options: SoakOptions
try {
  options = parseOptions(process.argv.slice(2))
} catch (err) {
  usageError(err)
}
const command = `npm run soak -- ${process.argv.slice(2).join(' ')}`.trim()
const root = await mkdtemp(join(tmpdir(), 'npp-soak-'))
const logs = join(root, 'logs')
await mkdir(logs)
const startTimeout = 60_000 + options.peers * 3000
const churnMs = Math.round(options.minutes * 60_000)
const maxWrites = Math.ceil((churnMs + startTimeout * 4) / options.interval) + 1000

const { code, codeLabel } = await prepareCode(options.ref, join(root, 'code')).catch((err: unknown) => {
  rmSync(root, { recursive: true, force: true })
  return usageError(err)
})
const relay = new SoakRelay(code, join(root, 'relay.key'), join(logs, 'relay.log'), options.debug)
const peers: SoakPeer[] = Array.from({ length: options.peers }, (_, i) => {
  const name = `p${String(i).padStart(2, '0')}`
  return new SoakPeer({
    code,
    name,
    directory: join(root, name),
    neverKill: i < options.keep,
    interval: options.interval,
    maxWrites,
    viewTimeout: VIEW_SOURCE_TIMEOUT,
    debug: options.debug,
    logFile: join(logs, `${name}.log`)
  })
})

// no child outlives this process, whatever ends it
let cleaned = false
const killAll = (): void => {
  for (const p of peers) p.killNow()
  relay.killNow()
}
const cleanup = (): void => {
  if (cleaned) return
  cleaned = true
  killAll()
  if (!options.keepDir) rmSync(root, { recursive: true, force: true })
}
process.on('exit', cleanup)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stdout.write(`\n${signal}: killing every child and removing ${root}\n`)
    cleanup()
    process.exit(130)
  })
}

const t0 = Date.now()
const now = (): number => (Date.now() - t0) / 1000
const timeline: Array<{ t: number, what: string }> = []
const say = (what: string): void => {
  const t = now()
  timeline.push({ t, what })
  process.stdout.write(`[${t.toFixed(1).padStart(7)} s] ${what}\n`)
}

console.log(`churn soak: ${options.peers} peers (${options.keep} never killed), ${options.minutes} min of churn, a write every ${options.interval} ms per peer, seed ${options.seed}`)
console.log(`code: ${codeLabel}`)
if (options.json != null && !relative(REPO_ROOT, options.json).startsWith('..')) console.log(`note: --json ${options.json} is inside the working tree (npm runs scripts from the package root); a path under ${tmpdir()} keeps it clean`)
console.log(`temporary directory: ${root}${options.keepDir ? ' (kept)' : ' (removed at the end; --keep-dir keeps it)'}`)

// RSS of every live process, every 10 s, until the end
const rss: RssSample[] = []
const loads: Array<{ t: number, load: number }> = []
const sampleRss = (): void => {
  const t = now()
  try {
    loads.push({ t, load: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]) })
  } catch {}
  for (const p of peers) {
    const kib = rssKib(p.pid)
    if (kib != null) rss.push({ t, name: p.name, incarnation: p.incarnation, mib: kib / 1024 })
  }
  const kib = rssKib(relay.pid)
  if (kib != null) rss.push({ t, name: 'relay', incarnation: relay.starts, mib: kib / 1024 })
}
const sampler = setInterval(sampleRss, RSS_EVERY_MS)

// companions formed (first db:discovered per ordered pair), for the start line
const discovered = new Map<string, number>()
for (const p of peers) {
  p.onEvent = (event, nodeId) => {
    if (event !== 'db:discovered') return
    const key = `${p.name}<${nodeId}`
    if (!discovered.has(key)) discovered.set(key, now())
  }
}

let passed = true
let exitCode = 1
try {
  // 1. the relay, then every peer at once
  const relayStart = await relay.start()
  if (!relayStart.ok) throw new Error(`the relay did not start: ${relayStart.error}`)
  say(`relay ${relay.peerId.slice(-6)} on ${relay.addr.replace(/\/p2p\/.*/, '')}`)
  const firstStarts = await Promise.all(peers.map(async p => await p.start(relay.addr, startTimeout)))
  const startFailed = peers.filter((_, i) => !(firstStarts[i]?.ok ?? false))
  const startMs = firstStarts.filter(s => s.ok).map(s => s.ms)
  say(`${peers.length - startFailed.length}/${peers.length} peers started at once, slowest in ${seconds(Math.max(0, ...startMs) / 1000)}${startFailed.length > 0 ? `; failed: ${startFailed.map(p => `${p.name} (${firstStarts[peers.indexOf(p)]?.error})`).join(', ')}` : ''}`)
  sampleRss()

  // 2. the churn
  const churnStart = now()
  const rng = random(options.seed)
  const killable = peers.filter(p => !p.spec.neverKill)
  const schedule = plan(rng, churnMs, options.killEvery * 1000, killable.length)
  const tasks = new Set<Promise<void>>()
  const track = (task: Promise<void>): void => {
    const done = task.catch((err: any) => { say(`task failed: ${err?.message ?? err}`) }).finally(() => { tasks.delete(done) })
    tasks.add(done)
  }
  const churn = { kills: 0, doubleKills: 0, relayRestarts: 0, skipped: 0, restarts: [] as number[], restartFailures: [] as string[], crashes: [] as string[] }
  const lostAtRestart: string[] = []
  let phase: 'churn' | 'settle' | 'verify' | 'done' = 'churn'

  /** The writer's own catalog must hold every write it acknowledged before (checked at each restart and at the end). */
  const checkOwn = async (p: SoakPeer, when: string): Promise<void> => {
    const expected = [...p.acked]
    try {
      const own = new Set(await p.call<string[]>('own', 30_000))
      const missing = expected.filter(h => !own.has(h))
      if (missing.length > 0) {
        lostAtRestart.push(`${p.name} ${when}: ${missing.length} of ${expected.length} missing (e.g. ${missing.slice(0, 3).join(', ')})`)
        say(`LOST: ${p.name} ${when} misses ${missing.length} acknowledged write(s)`)
      }
    } catch (err: any) {
      say(`${p.name}: own catalog not readable ${when}: ${err?.message ?? err}`)
    }
  }
  const restart = async (p: SoakPeer, why: string): Promise<void> => {
    const outcome = await p.start(relay.addr, startTimeout)
    if (outcome.ok) {
      churn.restarts.push(outcome.ms)
      say(`${p.name} back (incarnation ${p.incarnation}, ${why}) in ${seconds(outcome.ms / 1000)}${outcome.attempts > 1 ? ` after ${outcome.attempts} attempts` : ''}`)
      await checkOwn(p, `at restart ${p.incarnation}`)
    } else {
      churn.restartFailures.push(`${p.name}: ${outcome.error}`)
      say(`${p.name} did NOT come back after ${outcome.attempts} attempts: ${outcome.error}`)
    }
  }
  for (const p of peers) {
    p.onCrash = (code) => {
      churn.crashes.push(`${p.name} incarnation ${p.incarnation} exited with ${code}`)
      say(`${p.name} exited by itself (code ${code}): ${p.stderr.tail.slice(-1).join('')}`)
      if (phase === 'churn' || phase === 'settle') track((async () => { await sleep(1000); await restart(p, 'after a crash') })())
    }
  }
  let wiped = false
  const killAndRestart = async (victims: SoakPeer[], downMs: number): Promise<void> => {
    await Promise.all(victims.map(async v => { await v.kill() }))
    if (options.faultWipe && !wiped && victims[0] != null) {
      wiped = true
      rmSync(victims[0].spec.directory, { recursive: true, force: true })
      say(`--fault-wipe: removed ${victims[0].name}'s storage; the soak must fail`)
    }
    await sleep(downMs)
    await Promise.all(victims.map(async v => { await restart(v, `down ${seconds(downMs / 1000)}`) }))
  }
  const pickUp = (pick: number, except?: SoakPeer): SoakPeer | undefined => {
    const candidates = killable.filter(p => p.state === 'up' && p !== except)
    return candidates[Math.floor(pick * candidates.length)]
  }
  /** Wait (until the churn ends at the latest) for `n` killable peers to be up: a planned kill is postponed, not dropped, while victims are restarting. */
  const untilUp = async (n: number): Promise<boolean> => {
    const end = t0 + churnStart * 1000 + churnMs
    while (killable.filter(p => p.state === 'up').length < n) {
      if (Date.now() + 500 >= end) return false
      await sleep(500)
    }
    return true
  }

  say(`churn for ${options.minutes} min: ${schedule.filter(e => e.kind === 'kill').length} kills, ${schedule.filter(e => e.kind === 'double').length} double kill(s), ${schedule.filter(e => e.kind === 'relay').length} relay restart(s) planned`)
  for (const event of schedule) {
    const wait = t0 + churnStart * 1000 + event.at - Date.now()
    if (wait > 0) await sleep(wait)
    if (event.kind !== 'relay' && !await untilUp(event.kind === 'double' ? 2 : 1)) { churn.skipped++; continue }
    if (event.kind === 'kill') {
      const victim = pickUp(event.pick)
      if (victim == null) { churn.skipped++; continue }
      churn.kills++
      say(`SIGKILL ${victim.name} (down ${seconds(event.downMs / 1000)})`)
      track(killAndRestart([victim], event.downMs))
    } else if (event.kind === 'double') {
      const a = pickUp(event.picks[0])
      const b = a == null ? undefined : pickUp(event.picks[1], a)
      if (a == null || b == null) { churn.skipped++; continue }
      churn.kills += 2
      churn.doubleKills++
      say(`SIGKILL ${a.name} and ${b.name} together (down ${seconds(event.downMs / 1000)})`)
      track(killAndRestart([a, b], event.downMs))
    } else {
      if (relay.state !== 'up') { churn.skipped++; continue }
      churn.relayRestarts++
      say(`relay ${event.signal} (down ${seconds(event.downMs / 1000)})`)
      track((async () => {
        await relay.kill(event.signal)
        await sleep(event.downMs)
        const outcome = await relay.start()
        if (outcome.ok) say(`relay back on the same address in ${seconds(outcome.ms / 1000)}${outcome.attempts > 1 ? ` (${outcome.attempts} attempts)` : ''}`)
        else {
          churn.restartFailures.push(`relay: ${outcome.error}`)
          say(`relay did NOT come back: ${outcome.error}`)
        }
      })())
    }
  }
  const untilEnd = t0 + churnStart * 1000 + churnMs - Date.now()
  if (untilEnd > 0) await sleep(untilEnd)
  const churnEnd = now()
  phase = 'settle'
  say(`churn over: waiting for ${tasks.size} restart(s) in progress`)
  await Promise.race([Promise.allSettled([...tasks]), sleep(startTimeout * 4)])
  // whoever is still down gets one more try, so the check below covers everyone
  if (relay.state !== 'up') {
    const outcome = await relay.start()
    if (!outcome.ok) say(`relay still down: ${outcome.error}`)
  }
  for (const p of peers.filter(p => p.state === 'down')) await restart(p, 'after the churn')

  // 3. writes stop; every acknowledged write must be in the writer's catalog and every replica
  await Promise.all(peers.filter(p => p.state === 'up').map(async p => {
    try {
      await p.call('stopWriting', 30_000)
    } catch (err: any) {
      say(`${p.name}: stopWriting failed: ${err?.message ?? err}`)
    }
  }))
  phase = 'verify'
  const stopped = now()
  const acked = peers.reduce((n, p) => n + p.acked.size, 0)
  say(`writes stopped: ${acked} acknowledged; checking convergence (at most ${options.convergeTimeout} s)`)

  type View = { own: string[], byOwner: Record<string, string[]>, companions: Array<{ nodeId: string, online: boolean }>, sources: Array<{ owner: string, status: string, online: boolean, count: number }>, peers: string[] }
  const views = new Map<SoakPeer, View>()
  const convergedAt = new Map<string, number>()
  const pairKey = (reader: SoakPeer, writer: SoakPeer): string => `${reader.name}<${writer.name}`
  const totalPairs = peers.length * (peers.length - 1)
  const pairState = (reader: SoakPeer, writer: SoakPeer, view: View | undefined): { converged: boolean, companion: boolean, missing: number } => {
    if (view == null) return { converged: false, companion: false, missing: writer.acked.size }
    const companion = view.companions.some(c => c.nodeId === writer.peerId)
    const have = new Set(view.byOwner[writer.peerId] ?? [])
    let missing = 0
    for (const h of writer.acked) if (!have.has(h)) missing++
    return { converged: companion && missing === 0, companion, missing }
  }
  const maxRounds = Math.ceil(options.convergeTimeout * 1000 / POLL_EVERY_MS) + 1
  for (let round = 0; round < maxRounds; round++) {
    const queue = peers.filter(p => p.state === 'up')
    await Promise.all(Array.from({ length: VIEW_CONCURRENCY }, async () => {
      for (let p = queue.shift(); p != null; p = queue.shift()) {
        try {
          views.set(p, await p.call<View>('view', VIEW_SOURCE_TIMEOUT * 4))
        } catch (err: any) {
          say(`${p.name}: view failed: ${err?.message ?? err}`)
          continue
        }
        const t = now() - stopped
        for (const w of peers) {
          if (w !== p && !convergedAt.has(pairKey(p, w)) && pairState(p, w, views.get(p)).converged) convergedAt.set(pairKey(p, w), t)
        }
      }
    }))
    const elapsed = now() - stopped
    if (convergedAt.size === totalPairs || elapsed >= options.convergeTimeout) break
    if (round % 4 === 0) say(`${convergedAt.size}/${totalPairs} pairs converged after ${seconds(elapsed)}`)
    await sleep(Math.min(POLL_EVERY_MS, Math.max(0, (options.convergeTimeout - elapsed) * 1000)))
  }
  const convergeTimes = [...convergedAt.values()]
  say(`${convergedAt.size}/${totalPairs} pairs converged${convergedAt.size < totalPairs ? ` (${options.convergeTimeout} s bound reached)` : ''}`)

  // lost: acknowledged, yet not in the writer's own catalog at its last view
  // (a peer whose catalog could not be read at all is unverified, not lost: it fails the run either way)
  const lost = new Map<string, number>()
  const unverified: string[] = []
  for (const p of peers) {
    const view = views.get(p)
    if (view == null) {
      unverified.push(p.name)
      continue
    }
    const own = new Set(view.own)
    const missing = [...p.acked].filter(h => !own.has(h))
    if (missing.length > 0) lost.set(p.name, missing.length)
  }
  if (unverified.length > 0) say(`never answered a view, so their writes are unverified: ${unverified.join(', ')}`)
  const lostTotal = [...lost.values()].reduce((a, b) => a + b, 0)
  const notConverged: string[] = []
  /** Why pairs did not converge, tallied: what to look at first in a crowd. */
  const reasons = new Map<string, number>()
  let companions = 0
  for (const reader of peers) {
    for (const writer of peers) {
      if (reader === writer) continue
      const view = views.get(reader)
      const state = pairState(reader, writer, view)
      if (state.companion) companions++
      if (convergedAt.has(pairKey(reader, writer))) continue
      const source = view?.sources.find(s => s.owner === writer.peerId)
      const reason = view == null ? 'reader gave no view' : !state.companion ? (view.peers.includes(writer.peerId) ? 'connected, not a companion' : 'not connected, not a companion') : (view.peers.includes(writer.peerId) ? 'companion, connected, writes missing' : 'companion, not connected, writes missing')
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1)
      notConverged.push(`${reader.name} ← ${writer.name}: ${view == null ? 'no view' : `${state.missing} of ${writer.acked.size} missing, ${state.companion ? 'companion' : 'not a companion'}, ${view.peers.includes(writer.peerId) ? 'connected' : 'not connected'}, ${source == null ? 'no replica open' : `replica ${source.status}`}`}`)
    }
  }

  // 4. stats, then a clean stop: each process must exit by itself
  clearInterval(sampler)
  phase = 'done'
  const stats: Record<string, unknown> = {}
  await Promise.all(peers.filter(p => p.state === 'up').map(async p => { stats[p.name] = await p.call('stats', 10_000).catch(() => null) }))
  const stops = await Promise.all(peers.map(async p => ({ name: p.name, ...await p.stop(20_000) })))
  await relay.kill('SIGTERM')
  const notExited = stops.filter(s => !s.exited).map(s => s.name)
  say(`stopped: ${stops.length - notExited.length}/${stops.length} peers exited by themselves${notExited.length > 0 ? `; killed: ${notExited.join(', ')}` : ''}`)

  // 5. the report
  const failures = new Map<string, { total: number, by: Map<string, number> }>()
  for (const proc of [relay, ...peers]) {
    const name = proc instanceof SoakPeer ? proc.name : 'relay'
    for (const [label, count] of proc.stderr.counts) {
      const f = failures.get(label) ?? { total: 0, by: new Map() }
      f.total += count
      f.by.set(name, count)
      failures.set(label, f)
    }
  }
  const failureText = [...failures].sort((a, b) => b[1].total - a[1].total).map(([label, f]) => {
    const top = [...f.by].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([n, c]) => `${n} ${c}`).join(', ')
    return `${label} ×${f.total} (${top}${f.by.size > 3 ? ', …' : ''})`
  }).join('; ') || 'none'
  const writeErrors = new Map<string, number>()
  for (const p of peers) for (const [name, n] of p.writeErrors) writeErrors.set(name, (writeErrors.get(name) ?? 0) + n)
  const writeMs = peers.flatMap(p => p.writeMs)
  const marks = rssMarks(options.minutes)
  const keepers = peers.filter(p => p.spec.neverKill)
  const rssRows: RssRow[] = [
    ...keepers.map(p => rssRow(p.name, rss, churnStart, churnEnd, marks, p.crashes.length > 0 ? 'crashed' : 'never killed')),
    // restarted: its slope would measure the restarts
    { ...rssRow('relay', rss, churnStart, churnEnd, marks, 'restarted'), slopeFirst: undefined, slopeSecond: undefined },
    // every peer's mean at each sample time, killed ones included (a restart starts them small)
    rssRow('all peers, mean', meanSeries(rss, peers.map(p => p.name)), churnStart, churnEnd, marks)
  ]
  // first discoveries between the soak's peers (a peer id that changed at a restart is not one of them)
  const formed = [...discovered].filter(([key]) => peers.some(p => p.peerId !== '' && key.endsWith(`<${p.peerId}`))).map(([, t]) => t)
  const pairsConverged = convergedAt.size
  passed = lostTotal === 0 && lostAtRestart.length === 0 && pairsConverged === totalPairs && unverified.length === 0 && peers.every(p => p.peerIdChanges.length === 0)
  const summary = {
    command,
    setup: `${options.peers} peers (${options.keep} never killed) and a relay, all on 127.0.0.1, persistent storage, a write every ${options.interval} ms per peer; code: ${codeLabel}; Node ${process.version}, ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; seed ${options.seed}`,
    start: `all ${options.peers} at once: ${peers.length - startFailed.length} ready, slowest in ${seconds(Math.max(0, ...startMs) / 1000)}; ${formed.length === totalPairs ? `every pair companions ${seconds(Math.max(...formed))} after the start` : `${formed.length}/${totalPairs} pairs ever companions`}`,
    churn: `${options.minutes} min: ${churn.kills} SIGKILLs (${churn.doubleKills} of two peers together), ${churn.relayRestarts} relay restart(s); restarts ${churn.restarts.length} ok (median ${seconds((median(churn.restarts) ?? NaN) / 1000)}), ${churn.restartFailures.length} failed; ${churn.crashes.length} crash(es)${peers.some(p => p.peerIdChanges.length > 0) ? `; peer id changed at a restart: ${peers.filter(p => p.peerIdChanges.length > 0).map(p => p.name).join(', ')}` : ''}${churn.skipped > 0 ? `; ${churn.skipped} kill(s) not done (nobody up to kill before the churn ended)` : ''}`,
    writes: `${acked} acknowledged (median ${median(writeMs) ?? 'n/a'} ms, max ${writeMs.length > 0 ? Math.max(...writeMs) : 'n/a'} ms); ${[...writeErrors.values()].reduce((a, b) => a + b, 0)} rejected${writeErrors.size > 0 ? ` (${[...writeErrors].map(([n, c]) => `${n} ${c}`).join(', ')})` : ''}`,
    lost: lostTotal,
    lostDetail: [
      ...(lost.size > 0 ? [[...lost].map(([n, c]) => `${n}: ${c}`).join(', ')] : []),
      ...(lostAtRestart.length > 0 ? [`${lostAtRestart.length} restart(s) missing writes`] : []),
      ...(unverified.length > 0 ? [`not verified (no view): ${unverified.length} peer(s), ${unverified.join(' ')}`] : [])
    ].join('; '),
    pairs: { converged: pairsConverged, companions, total: totalPairs, maxS: convergeTimes.length > 0 ? Math.max(...convergeTimes) : undefined, medianS: median(convergeTimes), timeoutS: options.convergeTimeout },
    failures: failureText,
    network: (() => {
      const links = [...views.values()].map(v => v.peers.length)
      const sum = (key: 'discoveriesSucceeded' | 'discoveriesFailed'): number => Object.values(stats).reduce<number>((n, st: any) => n + (Number(st?.[key]) || 0), 0)
      const load = loads.map(l => l.load)
      return `peers connected to each peer at the end: median ${median(links) ?? 'n/a'} (min ${links.length > 0 ? Math.min(...links) : 'n/a'}, max ${links.length > 0 ? Math.max(...links) : 'n/a'}); ` +
        `discoveries ${sum('discoveriesSucceeded')} verified, ${sum('discoveriesFailed')} failed (last incarnations); ` +
        `1-min load average median ${median(load)?.toFixed(1) ?? 'n/a'}, max ${load.length > 0 ? Math.max(...load).toFixed(1) : 'n/a'} on ${cpus().length} CPUs`
    })(),
    cleanStop: `${stops.length - notExited.length}/${stops.length} peers exited by themselves after stop()${notExited.length > 0 ? ` (not: ${notExited.join(', ')})` : ''}`,
    passed,
    rssHeader: [...marks.map(m => m === 0 ? 'start' : `${m} min`), 'end of churn', 'last'],
    rssRows,
    notConverged: [
      ...(reasons.size > 0 ? [`by reason: ${[...reasons].sort((a, b) => b[1] - a[1]).map(([r, n]) => `${r} ${n}`).join('; ')}`] : []),
      ...(notConverged.length > 12 ? [...notConverged.slice(0, 12), `… and ${notConverged.length - 12} more`] : notConverged)
    ],
    lostAtRestart
  }
  console.log(`\n${markdown(summary)}\n`)
  if (options.json != null) {
    await writeFile(options.json, JSON.stringify({
      options,
      summary,
      timeline,
      churn,
      peers: peers.map(p => ({ name: p.name, peerId: p.peerId, neverKilled: p.spec.neverKill, incarnations: p.incarnation, acked: p.acked.size, writeErrors: Object.fromEntries(p.writeErrors), crashes: p.crashes, peerIdChanges: p.peerIdChanges, failures: Object.fromEntries(p.stderr.counts), stderrTail: p.stderr.tail, stats: stats[p.name] ?? null })),
      relay: { peerId: relay.peerId, addr: relay.addr, starts: relay.starts, failures: Object.fromEntries(relay.stderr.counts), stderrTail: relay.stderr.tail },
      pairs: Object.fromEntries(convergedAt),
      notConverged,
      knownFailures: KNOWN_FAILURES.map(f => f.label),
      rss,
      loads
    }, null, 2))
    console.log(`results: ${options.json}`)
  }
  exitCode = passed ? 0 : 1
} catch (err: any) {
  console.error(`soak aborted: ${err?.stack ?? err}`)
  exitCode = 1
} finally {
  clearInterval(sampler)
  killAll()
  await Promise.all([...peers, relay].map(async p => { await p.close() }))
  cleanup()
  if (options.keepDir) console.log(`kept ${root} (storage, and each process's stderr in logs/)`)
}
process.exit(exitCode)

/** The mean RSS of the named processes at each sampling time, as one series named 'all peers, mean'. */
function meanSeries (samples: readonly RssSample[], names: readonly string[]): RssSample[] {
  const wanted = new Set(names)
  const byTime = new Map<number, number[]>()
  for (const s of samples) {
    if (!wanted.has(s.name)) continue
    const list = byTime.get(s.t) ?? []
    list.push(s.mib)
    byTime.set(s.t, list)
  }
  return [...byTime].map(([t, list]) => ({ t, name: 'all peers, mean', incarnation: 0, mib: list.reduce((a, b) => a + b, 0) / list.length }))
}

/**
 * The code the children run: this checkout (saying whether src/ has
 * uncommitted changes, which peers restarted later would load), or with
 * `--ref` a snapshot of that commit's src/ and test/setup/ (git archive),
 * beside this checkout's soak child scripts and node_modules.
 */
async function prepareCode (ref: string | undefined, into: string): Promise<{ code: SoakCode, codeLabel: string }> {
  const git = async (...args: string[]): Promise<string> => (await promisify(execFile)('git', ['-C', REPO_ROOT, ...args])).stdout.trim()
  if (ref == null) {
    const head = await git('rev-parse', '--short', 'HEAD').catch(() => 'unknown')
    const dirty = await git('status', '--porcelain', '--', 'src').catch(() => '')
    if (dirty !== '') console.log('note: src/ has uncommitted changes; a peer restarted later loads src/ as it is then (--ref HEAD runs a fixed snapshot)')
    return { code: codeIn(REPO_ROOT), codeLabel: `working tree at ${head}${dirty !== '' ? ' with uncommitted changes in src/' : ''}` }
  }
  const commit = await git('rev-parse', '--verify', `${ref}^{commit}`)
  await mkdir(join(into, 'bench'), { recursive: true })
  await new Promise<void>((resolve, reject) => {
    const archive = spawn('git', ['-C', REPO_ROOT, 'archive', '--format=tar', commit, 'src', 'test/setup', 'package.json'], { stdio: ['ignore', 'pipe', 'inherit'] })
    const tar = spawn('tar', ['-x', '-C', into], { stdio: ['pipe', 'inherit', 'inherit'] })
    archive.stdout.pipe(tar.stdin)
    archive.once('error', reject)
    tar.once('error', reject)
    tar.once('exit', code => { code === 0 ? resolve() : reject(new Error(`git archive ${commit} | tar -x failed (${code})`)) })
  })
  for (const script of ['soak-peer.ts', 'soak-relay.ts']) await copyFile(join(REPO_ROOT, 'bench', script), join(into, 'bench', script))
  await symlink(join(REPO_ROOT, 'node_modules'), join(into, 'node_modules'), 'dir')
  return { code: codeIn(into), codeLabel: `${commit.slice(0, 7)} (snapshot of ${ref})` }
}
