/**
 * `npx new-piece-please keeper` warns at start, on stderr, when its
 * open-file limit is below what it may hold at its connection caps
 * (`openFilesWanted`), and not when the limit is enough. The limit is set by
 * `ulimit -n` (soft and hard: Node raises a soft limit to the hard one as it
 * starts) in a shell that then runs the command. Linux only (the limit is
 * read from /proc/self/limits, as on every machine this suite runs on); loopback and free ports; every wait is for an
 * output line or the exit, bounded.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { tempDir } from '../helpers/peers.ts'
import { openFilesWanted } from '../../src/keeper/server.ts'
import { parseOpenFileLimit } from '../../src/utils/open-file-limit.ts'

const cli = fileURLToPath(new URL('../../src/relay/cli.ts', import.meta.url))
const guard = fileURLToPath(new URL('../setup/guard.ts', import.meta.url))
const LISTEN = '/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/tcp/0/ws'
/** A common limit: `ulimit -n 1024`, the soft default of many systems. */
const LOW = 1024

const children: ChildProcess[] = []
after(() => { for (const c of children) if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL') })

const limit = await readFile('/proc/self/limits', 'utf8').then(parseOpenFileLimit, () => undefined)

/** Start the keeper under an open-file limit of `n`, stop it once it printed its HTTP API (30 s at most), and give what it printed. */
async function keeperUnder (n: number): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const dir = await tempDir()
  const child = spawn('bash', ['-c', 'ulimit -n "$1" && shift && exec "$@"', 'bash', String(n),
    process.execPath, '--import', guard, cli, 'keeper', '--dir', dir, '--listen', LISTEN, '--http-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', d => { stderr += String(d) })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => { resolve(code) }))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`the keeper did not print its HTTP API within 30 s: ${stdout} ${stderr}`)) }, 30_000)
    child.stdout.on('data', d => {
      stdout += String(d)
      if (/^HTTP API: /m.test(stdout)) { clearTimeout(timer); resolve() }
    })
    void exited.then(code => { clearTimeout(timer); reject(new Error(`the keeper exited (${code}) before it was ready: ${stdout} ${stderr}`)) })
  })
  child.kill('SIGTERM')
  const code = await exited
  return { code, stdout, stderr }
}

describe('keeper open-file limit warning', () => {
  const wanted = openFilesWanted()

  it('warns on stderr when the limit is below what the keeper may hold', async () => {
    // the machines this suite runs on are Linux (network namespaces, Debian's Chromium)
    assert.ok(limit != null, '/proc/self/limits is readable')
    const low = Math.min(LOW, limit.hard)
    assert.ok(low < wanted, `${low} < ${wanted}`)
    const { code, stdout, stderr } = await keeperUnder(low)
    assert.equal(code, 0, stderr)
    const lines = stderr.split('\n').filter(l => l.startsWith('warning: the open-file limit'))
    assert.equal(lines.length, 1, `one warning line on stderr: ${JSON.stringify(stderr)}`)
    assert.match(lines[0]!, new RegExp(`is ${low}, below the ${wanted} `))
    assert.match(lines[0]!, /ulimit -n \d+/)
    assert.match(lines[0]!, /LimitNOFILE=\d+/)
    assert.doesNotMatch(stdout, /open-file limit/, 'on stderr only')
  })

  it('says nothing when the limit is enough', async () => {
    assert.ok(limit != null && limit.hard >= wanted, `a hard open-file limit of ${wanted} or more, to run the keeper under it (${JSON.stringify(limit)})`)
    const { code, stderr } = await keeperUnder(wanted)
    assert.equal(code, 0, stderr)
    assert.doesNotMatch(stderr, /open-file limit/)
  })
})
