/**
 * `npx new-piece-please keeper` as a real process (issue 11): one command
 * runs a relay and a keeper; its allowlist is changed through the `keeper
 * allow` command and the admin API; it is killed with SIGKILL and restarted
 * from its directory, and still has every replica, its allowlist, its keys
 * and its token. Loopback and free ports only; every wait is for an output
 * line, an event or an HTTP answer, bounded.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as pause } from 'node:timers/promises'
import { peer, nextEvent, until, tempDir } from '../helpers/peers.ts'
import type { NewPiecePlease } from '../../src/index.ts'

const cli = fileURLToPath(new URL('../../src/relay/cli.ts', import.meta.url))
const guard = fileURLToPath(new URL('../setup/guard.ts', import.meta.url))
const LISTEN = '/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/tcp/0/ws'

const children: ChildProcess[] = []
after(() => { for (const c of children) if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL') })

interface Running {
  child: ChildProcess
  url: string
  keeperId: string
  relayId: string
  stdout: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** Start `keeper` from `dir` and resolve once it prints its HTTP API (30 s at most). */
async function startKeeper (dir: string, args: string[] = []): Promise<Running> {
  const child = spawn(process.execPath, ['--import', guard, cli, 'keeper', '--dir', dir, '--listen', LISTEN, '--http-port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  let err = ''
  child.stderr?.on('data', d => { err += String(d) })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => { resolve({ code, signal }) }))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`the keeper did not print its HTTP API within 30 s: ${out} ${err}`)) }, 30_000)
    child.stdout?.on('data', d => {
      out += String(d)
      const found = /HTTP API: (http:\/\/\S+)\/config/.exec(out)
      if (found != null) { clearTimeout(timer); resolve(found[1]!) }
    })
    void exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`the keeper exited (${code}) before it was ready: ${out} ${err}`)) })
  })
  return { child, url, keeperId: /^keeper (\S+)$/m.exec(out)![1]!, relayId: /^relay (\S+)$/m.exec(out)![1]!, stdout: () => out, exited }
}

/** Run the command line to its end (30 s at most). */
async function run (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, ['--import', guard, cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', d => { stdout += String(d) })
  child.stderr.on('data', d => { stderr += String(d) })
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

async function getJson (url: string, headers: Record<string, string> = {}): Promise<any> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) })
  assert.equal(res.status, 200, `${url}: ${res.status}`)
  return await res.json()
}

async function admin (url: string, op: 'allow' | 'deny', body: unknown, token?: string): Promise<{ status: number, body: any }> {
  const res = await fetch(`${url}/admin/${op}`, {
    method: 'POST',
    headers: token == null ? {} : { authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000)
  })
  return { status: res.status, body: await res.json() }
}

/**
 * The keeper's `/catalogs` entry of `peerId` once `check` holds: asked
 * again every 100 ms, 20 s at most (the keeper reports to no one in this
 * process, so its HTTP API is the thing to watch).
 */
async function catalogEntry (url: string, peerId: string, check: (entry: any) => boolean): Promise<any> {
  const deadline = Date.now() + 20_000
  let last: unknown
  while (Date.now() < deadline) {
    const entries: any[] = await getJson(`${url}/catalogs`)
    last = entries
    const entry = entries.find(e => e.peerId === peerId)
    if (entry != null && check(entry)) return entry
    await pause(100)
  }
  throw new Error(`/catalogs did not show ${peerId} as expected within 20 s: ${JSON.stringify(last)}`)
}

/** The Node (TCP) addresses of the keeper that `/config` lists. */
async function keepersOf (url: string): Promise<{ tcp: string[], all: string[] }> {
  const config = await getJson(`${url}/config`)
  assert.ok(Array.isArray(config.keepers), '/config lists keepers')
  return { all: config.keepers, tcp: config.keepers.filter((a: string) => !a.includes('/ws/')) }
}

async function piecesOf (who: NewPiecePlease, owner: string): Promise<string[]> {
  const { results } = await who.queryCatalog({ instrument: 'Cello' }, { timeout: 2000 })
  return results.filter(r => r.owner === owner).map(r => r.hash).sort()
}

describe('the keeper command', () => {
  it('allowlist through the CLI and the admin API; A writes and leaves; after SIGKILL and restart, B gets A\'s catalog through the keeper', { timeout: 150_000 }, async (t) => {
    const dir = await tempDir()
    const t0 = Date.now()
    const first = await startKeeper(dir)
    const startMs = Date.now() - t0
    const keepers = await keepersOf(first.url)
    assert.equal(keepers.all.length, 2, 'a TCP and a WebSocket address')
    assert.ok(keepers.all.every(a => a.endsWith(`/p2p/${first.keeperId}`)))
    assert.ok(keepers.all.some(a => a.includes('/ws/')), 'browsers can dial it directly')
    assert.ok((await stat(join(dir, 'admin-token'))).mode % 0o1000 === 0o600, 'the token is private')
    const token = (await readFile(join(dir, 'admin-token'), 'utf8')).trim()

    // deny by default: A is refused until allowed
    const a = await peer({ username: 'ada', keepers: keepers.tcp, reconnectInterval: 500 })
    const refused = await nextEvent(a, 'keeper:refused', s => s.peerId === first.keeperId, 20_000)
    assert.equal(refused.error.reason, 'not-allowed')
    await a.addNewPiece('QmKeptOne', 'Cello')
    await a.addNewPiece('QmKeptTwo', 'Cello')
    await a.addNewPiece('QmKeptThree', 'Cello')

    const registered = nextEvent(a, 'keeper:registered', s => s.peerId === first.keeperId, 20_000)
    const allowed = await run(['keeper', 'allow', a.peerId, '--url', first.url, '--dir', dir])
    assert.equal(allowed.code, 0, allowed.stderr)
    assert.equal(allowed.stdout, `allowed ${a.peerId}\n`)
    const again = await run(['keeper', 'allow', a.peerId, '--url', first.url, '--dir', dir])
    assert.equal(again.code, 0, again.stderr)
    assert.equal(again.stdout, `${a.peerId} was allowed already\n`, 'allowing twice is one allow')
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'keeper.json'), 'utf8')).allow, [a.peerId])
    await registered
    // registration waits for the keeper to have A's catalog
    const kept = await catalogEntry(first.url, a.peerId, e => e.pieces === 3)
    assert.equal(kept.username, 'ada')
    assert.equal(kept.listed, true)
    // a write after registration reaches the keeper too
    await a.addNewPiece('QmKeptLatest', 'Cello')
    await catalogEntry(first.url, a.peerId, e => e.pieces === 4)
    await a.stop()

    // SIGKILL: no clean stop, nothing flushed on the way out
    first.child.kill('SIGKILL')
    assert.equal((await first.exited).signal, 'SIGKILL')
    const t1 = Date.now()
    const second = await startKeeper(dir)
    const restartMs = Date.now() - t1
    assert.equal(second.keeperId, first.keeperId, 'the keeper node keeps its peer id')
    assert.equal(second.relayId, first.relayId, 'the relay keeps its key')
    assert.match(second.stdout(), /^serving: 1 allowlisted peer\(s\)/m, 'the allowlist survived')
    assert.ok(!second.stdout().includes('(created)'), 'the same admin token')
    const afterRestart = await catalogEntry(second.url, a.peerId, e => e.pieces === 4)
    assert.equal(afterRestart.username, 'ada')
    const health = await getJson(`${second.url}/health`)
    assert.equal(health.status, 'ok')
    assert.equal(health.keeper.peerId, second.keeperId)
    assert.equal(health.keeper.users, 1)
    assert.equal(health.keeper.replicas, 3, 'profile, catalog and counters')
    assert.ok(health.keeper.bytes > 0)
    assert.equal(health.keeper.allowlisted, 1)
    assert.equal(typeof health.reservations, 'number', 'beside the relay\'s fields')

    // B, never allowlisted, is refused; A (offline) is not introduced to it
    const keepers2 = await keepersOf(second.url)
    const b = await peer({ username: 'bea', keepers: keepers2.tcp, reconnectInterval: 500 })
    const bRefused = await nextEvent(b, 'keeper:refused', s => s.peerId === second.keeperId, 20_000)
    assert.equal(bRefused.error.reason, 'not-allowed')
    assert.deepEqual(await b.getCompanions(), [])

    // the admin API: no token, a wrong token, then allowed twice (one allow)
    assert.equal((await admin(second.url, 'allow', { peerId: b.peerId })).status, 401)
    assert.equal((await admin(second.url, 'allow', { peerId: b.peerId }, 'not-the-token-at-all')).status, 401)
    const wrongToken = await run(['keeper', 'allow', b.peerId, '--url', second.url, '--token', 'not-the-token-at-all'])
    assert.equal(wrongToken.code, 1)
    assert.match(wrongToken.stderr, /^KeeperAdminError: the keeper at \S+ answered 401/)
    const discovered = nextEvent(b, 'db:discovered', c => c.nodeId === a.peerId, 30_000)
    const once = await admin(second.url, 'allow', { peerId: b.peerId }, token)
    assert.deepEqual([once.status, once.body], [200, { peerId: b.peerId, allowed: true, changed: true }])
    const twice = await admin(second.url, 'allow', { peerId: b.peerId }, token)
    assert.deepEqual([twice.status, twice.body], [200, { peerId: b.peerId, allowed: true, changed: false }])

    // B, never online with A, gets A's latest catalog through the restarted keeper
    const introduced = await discovered
    assert.equal(introduced.introducedBy, second.keeperId)
    await until(b, 'catalog:update', async () => (await piecesOf(b, a.peerId)).length === 4, 30_000)
    assert.deepEqual(await piecesOf(b, a.peerId), ['QmKeptLatest', 'QmKeptOne', 'QmKeptThree', 'QmKeptTwo'])

    // deny through the CLI drops what was kept; the file follows every change
    const denied = await run(['keeper', 'deny', a.peerId, '--url', second.url, '--dir', dir])
    assert.equal(denied.code, 0, denied.stderr)
    assert.equal(denied.stdout, `denied ${a.peerId} (what was kept of it is dropped)\n`)
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'keeper.json'), 'utf8')).allow, [b.peerId])
    assert.deepEqual((await getJson(`${second.url}/catalogs`, { authorization: `Bearer ${token}` })).map((e: any) => e.peerId), [b.peerId])

    second.child.kill('SIGTERM')
    assert.equal((await second.exited).code, 0, 'SIGTERM stops it cleanly')
    t.diagnostic(`keeper start ${startMs} ms, restart after SIGKILL ${restartMs} ms, whole story ${Date.now() - t0} ms`)
  })

  it('a user kept unlisted stays unlisted after SIGKILL and restart: not in the public /catalogs, nor introduced', { timeout: 120_000 }, async () => {
    const dir = await tempDir()
    const first = await startKeeper(dir)
    const c = await peer({ username: 'cyd', listed: false, keepers: (await keepersOf(first.url)).tcp, reconnectInterval: 500 })
    await nextEvent(c, 'keeper:refused', s => s.peerId === first.keeperId, 20_000)
    const registered = nextEvent(c, 'keeper:registered', s => s.peerId === first.keeperId, 20_000)
    const allowed = await run(['keeper', 'allow', c.peerId, '--url', first.url, '--dir', dir])
    assert.equal(allowed.code, 0, allowed.stderr)
    await registered
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'keeper.json'), 'utf8')).unlisted, [c.peerId], 'saved as soon as it registered')
    await c.stop()
    first.child.kill('SIGKILL')
    await first.exited

    const second = await startKeeper(dir, ['--open'])
    const token = (await readFile(join(dir, 'admin-token'), 'utf8')).trim()
    assert.deepEqual(await getJson(`${second.url}/catalogs`), [], 'the public list leaves it out')
    const all = await getJson(`${second.url}/catalogs`, { authorization: `Bearer ${token}` })
    assert.deepEqual(all.map((e: any) => [e.peerId, e.username, e.listed]), [[c.peerId, 'cyd', false]])
    // a newcomer (served: the keeper is --open now) is not introduced to it
    const d = await peer({ username: 'dan', keepers: (await keepersOf(second.url)).tcp })
    // introductions are taken while the keeper keeps D: either event may come first
    const [status] = await Promise.all([
      nextEvent(d, 'keeper:introduced', s => s.peerId === second.keeperId, 20_000),
      nextEvent(d, 'keeper:registered', s => s.peerId === second.keeperId, 20_000)
    ])
    assert.equal(status.introduced, 0)
    assert.deepEqual(await d.getCompanions(), [])
    second.child.kill('SIGTERM')
    assert.equal((await second.exited).code, 0)
  })

  it('bad input: exit 2 with a typed error line, never a start', async () => {
    const dir = await tempDir()
    const cases: Array<[string[], RegExp]> = [
      [['keeper', 'allow', 'not-a-peer-id', '--dir', dir], /^InvalidPeerIdError: string "not-a-peer-id" is not a peer id/],
      [['keeper', 'allow'], /^KeeperConfigError: keeper allow needs a peer id/],
      [['keeper', 'allow', '12D3KooWCesfH97p8D4htZmJuQdZEc1PaZD64HWNwFcqN5BVjDCy', '--dir', dir], /^KeeperConfigError: no admin token at /],
      [['keeper', 'frobnicate'], /^KeeperConfigError: unknown keeper command frobnicate /],
      [['keeper', '--dir', dir, '--colour', 'blue'], /^KeeperConfigError: unknown option --colour \(see new-piece-please keeper --help\)/],
      [['keeper', '--dir', dir, '--open=perhaps'], /^KeeperConfigError: --open takes no value, or =true or =false; got perhaps/],
      [['keeper', '--dir', dir, '--http-port', '0', '--max-users', 'many'], /^KeeperConfigError: expected maxUsers to be a positive integer, got number NaN/],
      [['keeper', '--dir', dir, '--http-port', '0', '--allow', 'nobody'], /^KeeperConfigError: allow: string "nobody" is not a peer id/]
    ]
    await Promise.all(cases.map(async ([args, message]) => {
      const { code, stdout, stderr } = await run(args)
      assert.equal(code, 2, `${args.join(' ')}: ${stderr}`)
      assert.match(stderr, message)
      assert.equal(stdout, '')
    }))
  })
})
