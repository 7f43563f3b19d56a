import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { NewPiecePleaseInit } from '../../src/index.ts'

const fixture = fileURLToPath(new URL('../fixtures/peer-process.ts', import.meta.url))
const guard = fileURLToPath(new URL('../setup/guard.ts', import.meta.url))

/** A `NewPiecePlease` in a child process (with the network guard), driven over stdio. */
export class ProcessPeer {
  readonly child: ChildProcessWithoutNullStreams
  peerId = ''
  multiaddrs: string[] = []
  readonly events: Array<{ event: string, detail: any }> = []
  readonly exited: Promise<number | null>
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }>()
  private readonly waiters: Array<{ match: (e: { event: string, detail: any }) => boolean, resolve: (d: any) => void }> = []
  stderr = ''

  private constructor (init: NewPiecePleaseInit, execArgv: string[]) {
    this.child = spawn(process.execPath, [...execArgv, '--import', guard, fixture, JSON.stringify(init)], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.child.stderr.on('data', (d) => { this.stderr += String(d) })
    this.exited = new Promise(resolve => this.child.on('exit', code => {
      for (const p of this.pending.values()) p.reject(new Error(`peer process exited (${code}): ${this.stderr}`))
      resolve(code)
    }))
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line)
      if (msg.event != null) {
        this.events.push(msg)
        for (const w of [...this.waiters]) {
          if (w.match(msg)) {
            this.waiters.splice(this.waiters.indexOf(w), 1)
            w.resolve(msg.detail)
          }
        }
        return
      }
      const p = this.pending.get(msg.id)
      this.pending.delete(msg.id)
      if (msg.error != null) p?.reject(Object.assign(new Error(msg.error.message), { name: msg.error.name }))
      else p?.resolve(msg.result)
    })
  }

  /** `execArgv`: Node options for the child, e.g. `--expose-gc` so that `memory({ gc: true })` collects first. */
  static async start (init: NewPiecePleaseInit, ms = 30_000, execArgv: string[] = []): Promise<ProcessPeer> {
    const peer = new ProcessPeer(init, execArgv)
    const ready = await peer.waitFor(e => e.event === 'ready', ms)
    peer.peerId = ready.peerId
    peer.multiaddrs = ready.multiaddrs
    return peer
  }

  async call<T = any> (method: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++
    return await new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.child.stdin.write(JSON.stringify({ id, method, args }) + '\n')
    })
  }

  /** Resolve with the detail of a past or future event matching `match`. */
  async waitFor (match: (e: { event: string, detail: any }) => boolean, ms = 15_000): Promise<any> {
    const past = this.events.find(match)
    if (past != null) return past.detail
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`no matching event within ${ms} ms; stderr: ${this.stderr}`)) }, ms)
      this.waiters.push({ match, resolve: (d) => { clearTimeout(timer); resolve(d) } })
    })
  }

  /** The child's memory in bytes (`process.memoryUsage()` and `peak`, see test/fixtures/peer-process.ts). */
  async memory (options: { gc?: boolean, resetPeak?: boolean } = {}): Promise<NodeJS.MemoryUsage & { peak: number }> {
    return await this.call('memory', options)
  }

  kill (): void {
    if (this.child.exitCode == null) this.child.kill('SIGKILL')
  }
}
