/**
 * Handles on the soak's child processes (bench/soak-peer.ts and
 * bench/soak-relay.ts): spawn with the loopback guard, wait for `ready`
 * (bounded), requests over stdin (bounded), SIGKILL, RSS from /proc, and
 * stderr copied to a log file while known failure strings are counted.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { SoakPeerInit } from './soak-peer.ts'

/** Where the children's scripts are: this checkout, or a snapshot of a commit (`--ref`). */
export interface SoakCode {
  peerScript: string
  relayScript: string
  /** The tests' network guard, preloaded into every child: loopback only. */
  guard: string
}

/** The scripts of the tree rooted at `root` (a directory holding `bench/`, `src/` and `test/setup/`). */
export function codeIn (root: string): SoakCode {
  return { peerScript: join(root, 'bench', 'soak-peer.ts'), relayScript: join(root, 'bench', 'soak-relay.ts'), guard: join(root, 'test', 'setup', 'guard.ts') }
}

/** This checkout. */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url))
/** Lines of stderr kept per process for the report. */
const TAIL_LINES = 12

/**
 * Strings in a child's stderr that name a known failure (the peers run with
 * `DEBUG` set so libp2p and the library log them); each is counted per
 * process.
 */
export const KNOWN_FAILURES: ReadonlyArray<{ label: string, pattern: RegExp }> = [
  { label: 'LEVEL_LOCKED', pattern: /LEVEL_LOCKED/ },
  { label: 'StorageLockedError', pattern: /StorageLockedError/ },
  { label: 'inboundConnectionThreshold', pattern: /inboundConnectionThreshold/ },
  { label: 'maxConnections exceeded', pattern: /maxConnections exceeded/ },
  { label: 'incomingPendingConnections exceeded', pattern: /incomingPendingConnections exceeded/ },
  { label: 'was not a recipient', pattern: /was not a recipient/ },
  { label: 'rejected user db', pattern: /rejected user db/ },
  { label: 'could not open the replica', pattern: /could not open the replica/ },
  { label: 'Database failed to open', pattern: /Database failed to open/ },
  { label: 'CBOR decode error', pattern: /CBOR decode error/ },
  { label: 'indexing failed', pattern: /indexing \S+ failed/ },
  { label: 'EADDRINUSE', pattern: /EADDRINUSE/ },
  { label: 'uncaught / unhandled', pattern: /Uncaught|UnhandledPromiseRejection|unhandled rejection/i },
  { label: 'start failed', pattern: /soak-(peer|relay): start failed/ },
  { label: 'TimeoutError (any)', pattern: /TimeoutError/ }
]

/** A child's stderr: copied to `file`, known failures counted, the last lines kept. */
class StderrWatch {
  readonly counts = new Map<string, number>()
  readonly tail: string[] = []
  private readonly file: WriteStream

  constructor (file: string) {
    this.file = createWriteStream(file, { flags: 'a' })
    // a log that cannot be written must not end the soak
    this.file.on('error', () => {})
  }

  attach (child: ChildProcessWithoutNullStreams, header: string): void {
    this.file.write(`--- ${header} (pid ${child.pid}) at ${new Date().toISOString()}\n`)
    child.stderr.pipe(this.file, { end: false })
    createInterface({ input: child.stderr }).on('line', (line) => {
      for (const { label, pattern } of KNOWN_FAILURES) {
        if (pattern.test(line)) this.counts.set(label, (this.counts.get(label) ?? 0) + 1)
      }
      // the tail is for the report: leave out debug chatter that names nothing failing
      if (/error|fail|refused|exceeded|locked|not a recipient/i.test(line)) {
        this.tail.push(line.length > 300 ? `${line.slice(0, 300)}…` : line)
        if (this.tail.length > TAIL_LINES) this.tail.shift()
      }
    })
  }

  async close (): Promise<void> {
    await new Promise<void>(resolve => { this.file.end(resolve) })
  }
}

/** VmRSS of a live process in KiB, from /proc (Linux); undefined when it is gone. */
export function rssKib (pid: number | undefined): number | undefined {
  if (pid == null) return undefined
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])
    return Number.isFinite(kb) && kb > 0 ? kb : undefined
  } catch {
    return undefined
  }
}

interface Spawned {
  child: ChildProcessWithoutNullStreams
  exited: Promise<number | null>
}

function spawnChild (code: SoakCode, script: string, arg: unknown, env: NodeJS.ProcessEnv): Spawned {
  const child = spawn(process.execPath, ['--conditions=npp-source', '--import', code.guard, script, JSON.stringify(arg)], { stdio: ['pipe', 'pipe', 'pipe'], env })
  // a child that died must not take the parent with it through EPIPE
  child.stdin.on('error', () => {})
  const exited = new Promise<number | null>(resolve => { child.once('exit', (code, signal) => { resolve(code ?? (signal != null ? -1 : null)) }) })
  return { child, exited }
}

async function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: no answer within ${ms} ms`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

export type PeerState = 'down' | 'starting' | 'up'

export interface SoakPeerSpec {
  code: SoakCode
  name: string
  directory: string
  neverKill: boolean
  interval: number
  maxWrites: number
  viewTimeout: number
  /** `DEBUG` namespaces for the child. */
  debug: string
  logFile: string
}

export interface StartOutcome {
  ok: boolean
  ms: number
  attempts: number
  error?: string
}

/** One soak peer, across its incarnations (same storage, same peer id). */
export class SoakPeer {
  readonly spec: SoakPeerSpec
  peerId = ''
  /** Incarnations started so far (1 after the first start). */
  incarnation = 0
  state: PeerState = 'down'
  readonly acked = new Set<string>()
  /** Hash → incarnation that acknowledged it. */
  readonly ackedBy = new Map<string, number>()
  readonly writeErrors = new Map<string, number>()
  readonly writeMs: number[] = []
  readonly stderr: StderrWatch
  /** Exits nobody asked for (a crash), with the code. */
  readonly crashes: Array<{ incarnation: number, code: number | null }> = []
  /** Peer ids seen at a start that differed from the first one. */
  readonly peerIdChanges: string[] = []
  /** Called with (event, nodeId) for db:discovered, companion:online/offline. */
  onEvent: ((event: string, nodeId: string) => void) | undefined
  /** Called when the process exits without being killed or stopped by us. */
  onCrash: ((code: number | null) => void) | undefined
  private current: Spawned | undefined
  private expectExit = false
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }>()

  constructor (spec: SoakPeerSpec) {
    this.spec = spec
    this.stderr = new StderrWatch(spec.logFile)
  }

  get name (): string { return this.spec.name }
  get pid (): number | undefined { return this.state === 'down' ? undefined : this.current?.child.pid }

  /** Start a new incarnation on the same storage; up to `attempts` tries, each bounded by `timeoutMs`. */
  async start (relay: string, timeoutMs: number, attempts = 3): Promise<StartOutcome> {
    const t0 = Date.now()
    let error = ''
    for (let attempt = 1; attempt <= attempts; attempt++) {
      error = await this.startOnce(relay, timeoutMs)
      if (error === '') return { ok: true, ms: Date.now() - t0, attempts: attempt }
      if (attempt < attempts) await new Promise(resolve => setTimeout(resolve, 1000 * attempt))
    }
    return { ok: false, ms: Date.now() - t0, attempts, error }
  }

  /** One start; resolves to '' once ready, else to what went wrong. */
  private async startOnce (relay: string, timeoutMs: number): Promise<string> {
    this.incarnation++
    const init: SoakPeerInit = {
      directory: this.spec.directory,
      relay,
      username: this.spec.name,
      prefix: `soak:${this.spec.name}:${this.incarnation}:`,
      interval: this.spec.interval,
      maxWrites: this.spec.maxWrites,
      viewTimeout: this.spec.viewTimeout
    }
    const spawned = spawnChild(this.spec.code, this.spec.code.peerScript, init, { ...process.env, DEBUG: this.spec.debug })
    const incarnation = this.incarnation
    this.current = spawned
    this.expectExit = false
    this.state = 'starting'
    this.stderr.attach(spawned.child, `${this.spec.name} incarnation ${incarnation}`)
    let markReady: (peerId: string) => void = () => {}
    const ready = new Promise<string>(resolve => { markReady = resolve })
    createInterface({ input: spawned.child.stdout }).on('line', (line) => { this.onLine(line, incarnation, this.current === spawned ? markReady : undefined) })
    void spawned.exited.then((code) => {
      if (this.current !== spawned) return
      for (const p of this.pending.values()) p.reject(new Error(`${this.spec.name} exited (${code})`))
      this.pending.clear()
      const wasUp = this.state === 'up'
      this.state = 'down'
      if (!this.expectExit && wasUp) {
        this.crashes.push({ incarnation, code })
        this.onCrash?.(code)
      }
    })
    const outcome = await Promise.race([
      ready.then(() => ''),
      spawned.exited.then(code => `exited with code ${code} before ready: ${this.stderr.tail.slice(-2).join(' | ')}`),
      new Promise<string>(resolve => setTimeout(() => { resolve(`not ready within ${timeoutMs} ms`) }, timeoutMs).unref())
    ])
    if (outcome !== '') await this.kill()
    return outcome
  }

  /** `markReady` is undefined for lines of an incarnation that was given up on. */
  private onLine (line: string, incarnation: number, markReady: ((peerId: string) => void) | undefined): void {
    let msg: any
    try {
      msg = JSON.parse(line)
    } catch {
      return // not ours
    }
    if (typeof msg.ack === 'string') {
      this.acked.add(msg.ack)
      this.ackedBy.set(msg.ack, incarnation)
      if (typeof msg.ms === 'number') this.writeMs.push(msg.ms)
    } else if (msg.writeError != null) {
      const name = String(msg.writeError.name)
      this.writeErrors.set(name, (this.writeErrors.get(name) ?? 0) + 1)
    } else if (msg.event != null) {
      this.onEvent?.(msg.event, msg.nodeId)
    } else if (msg.ready != null && markReady != null) {
      if (this.peerId === '') this.peerId = msg.ready.peerId
      else if (this.peerId !== msg.ready.peerId) this.peerIdChanges.push(msg.ready.peerId)
      this.state = 'up'
      markReady(msg.ready.peerId)
    } else if (typeof msg.id === 'number') {
      const p = this.pending.get(msg.id)
      this.pending.delete(msg.id)
      if (msg.error != null) p?.reject(Object.assign(new Error(msg.error.message), { name: msg.error.name }))
      else p?.resolve(msg.result)
    }
  }

  /** A request to the running incarnation, bounded by `timeoutMs`. */
  async call<T = any> (method: string, timeoutMs: number): Promise<T> {
    const spawned = this.current
    if (spawned == null || this.state !== 'up') throw new Error(`${this.spec.name} is ${this.state}`)
    const id = this.nextId++
    const answer = new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      spawned.child.stdin.write(JSON.stringify({ id, method }) + '\n')
    })
    try {
      return await withTimeout(answer, timeoutMs, `${this.spec.name}.${method}`)
    } finally {
      this.pending.delete(id)
    }
  }

  /** SIGKILL the running incarnation and wait (bounded) for it to be gone. */
  async kill (): Promise<void> {
    const spawned = this.current
    if (spawned == null) return
    this.expectExit = true
    if (spawned.child.exitCode == null && spawned.child.signalCode == null) spawned.child.kill('SIGKILL')
    await withTimeout(spawned.exited, 10_000, `${this.spec.name} exit after SIGKILL`).catch(() => {})
    this.state = 'down'
  }

  /** Stop cleanly; resolves to whether the process then exited by itself within `timeoutMs`. */
  async stop (timeoutMs: number): Promise<{ stopped: boolean, exited: boolean, error?: string }> {
    const spawned = this.current
    if (spawned == null || this.state !== 'up') return { stopped: false, exited: true }
    this.expectExit = true
    let error: string | undefined
    try {
      await this.call('stop', timeoutMs)
    } catch (err: any) {
      error = String(err?.message ?? err)
    }
    const code = await withTimeout(spawned.exited, timeoutMs, 'exit').catch(() => 'timeout' as const)
    if (code === 'timeout') await this.kill()
    this.state = 'down'
    return { stopped: error == null, exited: code !== 'timeout', ...(error != null ? { error } : {}) }
  }

  /** SIGKILL without waiting (exit handlers). */
  killNow (): void {
    const child = this.current?.child
    if (child != null && child.exitCode == null && child.signalCode == null) child.kill('SIGKILL')
  }

  async close (): Promise<void> {
    await this.stderr.close()
  }
}

/** The relay process; restarts keep its key and (once known) its TCP port. */
export class SoakRelay {
  peerId = ''
  /** The TCP multiaddr peers are given (with `/p2p/<id>`), fixed after the first start. */
  addr = ''
  state: PeerState = 'down'
  readonly stderr: StderrWatch
  starts = 0
  private listen: string[] = ['/ip4/127.0.0.1/tcp/0']
  private current: Spawned | undefined
  private readonly keyFile: string
  private readonly debug: string
  private readonly code: SoakCode

  constructor (code: SoakCode, keyFile: string, logFile: string, debug: string) {
    this.code = code
    this.keyFile = keyFile
    this.debug = debug
    this.stderr = new StderrWatch(logFile)
  }

  get pid (): number | undefined { return this.state === 'down' ? undefined : this.current?.child.pid }

  /** Start (again), retrying while the port is not free yet: `attempts` tries, each bounded. */
  async start (attempts = 10): Promise<StartOutcome> {
    const t0 = Date.now()
    let error = ''
    for (let attempt = 1; attempt <= attempts; attempt++) {
      error = await this.startOnce()
      if (error === '') return { ok: true, ms: Date.now() - t0, attempts: attempt }
      await new Promise(resolve => setTimeout(resolve, 1000))
    }
    return { ok: false, ms: Date.now() - t0, attempts, error }
  }

  private async startOnce (): Promise<string> {
    const spawned = spawnChild(this.code, this.code.relayScript, { listen: this.listen, keyFile: this.keyFile }, { ...process.env, DEBUG: this.debug })
    this.current = spawned
    this.state = 'starting'
    this.starts++
    this.stderr.attach(spawned.child, `relay start ${this.starts}`)
    let markReady: (r: { peerId: string, multiaddrs: string[] }) => void = () => {}
    const ready = new Promise<{ peerId: string, multiaddrs: string[] }>(resolve => { markReady = resolve })
    createInterface({ input: spawned.child.stdout }).on('line', (line) => {
      try {
        const msg = JSON.parse(line)
        if (msg.ready != null) markReady(msg.ready)
      } catch {}
    })
    void spawned.exited.then(() => { if (this.current === spawned) this.state = 'down' })
    const outcome = await Promise.race([
      ready,
      spawned.exited.then(code => `exited with code ${code}: ${this.stderr.tail.slice(-1).join('')}`),
      new Promise<string>(resolve => setTimeout(() => { resolve('not ready within 30 s') }, 30_000).unref())
    ])
    if (typeof outcome === 'string') {
      this.killNow()
      await withTimeout(spawned.exited, 10_000, 'relay exit').catch(() => {})
      return outcome
    }
    const tcp = outcome.multiaddrs.find(a => /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//.test(a))
    if (tcp == null) return `no TCP multiaddr among ${outcome.multiaddrs.join(' ')}`
    if (this.peerId !== '' && this.peerId !== outcome.peerId) return `came back as ${outcome.peerId}, not ${this.peerId}`
    if (this.addr !== '' && this.addr !== tcp) return `came back on ${tcp}, not ${this.addr}`
    this.peerId = outcome.peerId
    this.addr = tcp
    // a restart listens on the same port, so the peers' relay multiaddr still holds
    this.listen = [tcp.replace(/\/p2p\/.*$/, '')]
    this.state = 'up'
    return ''
  }

  /** Kill (SIGKILL, a crash, or SIGTERM, a clean stop) and wait, bounded. */
  async kill (signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    const spawned = this.current
    if (spawned == null) return
    if (spawned.child.exitCode == null && spawned.child.signalCode == null) spawned.child.kill(signal)
    const code = await withTimeout(spawned.exited, 10_000, 'relay exit').catch(() => 'timeout' as const)
    if (code === 'timeout') {
      spawned.child.kill('SIGKILL')
      await withTimeout(spawned.exited, 10_000, 'relay exit').catch(() => {})
    }
    this.state = 'down'
  }

  killNow (): void {
    const child = this.current?.child
    if (child != null && child.exitCode == null && child.signalCode == null) child.kill('SIGKILL')
  }

  async close (): Promise<void> {
    await this.stderr.close()
  }
}
