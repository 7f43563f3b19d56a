/**
 * What a developer meets first: `npx new-piece-please relay --help` and
 * `--version`, a clear word for a wrong option, where the relay keeps its key,
 * `require('new-piece-please')` from CommonJS, and a clear word on a Node
 * that is too old. The CLI runs from `src/` and, like an installed
 * dependency, from the package compiled into a temporary directory (never the
 * working tree). Every child gets a temporary HOME and XDG_DATA_HOME.
 */
import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tempDir } from '../helpers/peers.ts'
import { installedPackage } from '../helpers/package.ts'
import { checkNodeVersion, MIN_NODE_MAJOR, UnsupportedNodeError } from '../../src/platform/node-version.ts'
import { DEFAULT_MAX_RESERVATIONS, DEFAULT_RELAY_HTTP_HOST, DEFAULT_RELAY_LISTEN, DEFAULT_TRUSTED_REDIAL_INTERVAL } from '../../src/relay/relay.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))
const guard = fileURLToPath(new URL('../setup/guard.ts', import.meta.url))
const cli = join(root, 'src/relay/cli.ts')
const { version } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))

interface Result { code: number | null, stdout: string, stderr: string }

/**
 * Runs a child to its end (killed after 60 s), or, with `until`, until its
 * stdout matches; then `whenSeen` runs and the child is expected to exit.
 */
async function run (command: string, args: string[], opts: { env?: NodeJS.ProcessEnv, cwd?: string, until?: RegExp, whenSeen?: (r: Result, child: ReturnType<typeof spawn>) => Promise<void> } = {}): Promise<Result> {
  const child = spawn(command, args, { cwd: opts.cwd ?? root, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  const result: Result = { code: null, stdout: '', stderr: '' }
  let seen: Promise<void> | undefined
  child.stdout.on('data', d => {
    result.stdout += String(d)
    if (opts.until != null && seen == null && opts.until.test(result.stdout)) seen = opts.whenSeen?.(result, child)
  })
  child.stderr.on('data', d => { result.stderr += String(d) })
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  result.code = await new Promise<number | null>(resolve => child.on('exit', resolve))
  clearTimeout(timer)
  await seen
  return result
}

/** A temporary HOME and XDG_DATA_HOME, so nothing reaches the real home or the working tree. */
async function homes (): Promise<{ home: string, xdg: string, env: NodeJS.ProcessEnv }> {
  const dir = await tempDir()
  const home = join(dir, 'home')
  const xdg = join(dir, 'xdg')
  await mkdir(home)
  return { home, xdg, env: { ...process.env, HOME: home, USERPROFILE: home, XDG_DATA_HOME: xdg, LOCALAPPDATA: join(home, 'AppData', 'Local') } }
}

/** The CLI's default key file for these homes, as its README and `--help` describe it. */
function expectedKeyFile (h: { home: string, xdg: string }): string {
  if (process.platform === 'darwin') return join(h.home, 'Library', 'Application Support', 'new-piece-please', 'relay.key')
  if (process.platform === 'win32') return join(h.home, 'AppData', 'Local', 'new-piece-please', 'relay.key')
  return join(h.xdg, 'new-piece-please', 'relay.key')
}

const source = async (args: string[], env?: NodeJS.ProcessEnv): Promise<Result> => await run(process.execPath, ['--import', guard, cli, ...args], { env: env ?? (await homes()).env })

describe('the relay command line', () => {
  it('--help lists every option with its default, and exits 0', async () => {
    const h = await homes()
    const { code, stdout, stderr } = await source(['relay', '--help'], h.env)
    assert.equal(code, 0, stderr)
    assert.match(stdout, /^Usage: new-piece-please relay \[options\]/)
    for (const flag of ['--listen', '--announce', '--http-host', '--http-port', '--key-file', '--max-reservations', '--config', '--help', '--version']) {
      assert.ok(stdout.includes(flag), `--help mentions ${flag}`)
    }
    // the defaults it prints are createRelay's (the CLI's own where they differ)
    assert.ok(stdout.includes(`default: ${DEFAULT_RELAY_LISTEN.join(',')}`), 'listen default')
    assert.ok(stdout.includes(`default: ${DEFAULT_RELAY_HTTP_HOST}\n`), 'http host default')
    assert.ok(stdout.includes('default: 9090\n'), 'the CLI\'s HTTP port')
    assert.ok(stdout.includes(`default: ${DEFAULT_MAX_RESERVATIONS}\n`), 'max reservations default')
    assert.ok(stdout.includes(`default ${DEFAULT_TRUSTED_REDIAL_INTERVAL})`), 'trustedRedialInterval default')
    assert.ok(stdout.includes(`default: ${expectedKeyFile(h)}\n`), 'the key file in the per-user data directory')
    assert.equal(stderr, '')
    // the same from new-piece-please-relay (no command), with -h, and as `help`
    await Promise.all([['--help'], ['-h'], ['help'], ['relay', '--http-port', '0', '--help']].map(async args => {
      const again = await source(args, h.env)
      assert.equal(again.code, 0, again.stderr)
      assert.equal(again.stdout, stdout, args.join(' '))
    }))
  })

  it('--version prints the package version, and exits 0', async () => {
    await Promise.all([['--version'], ['relay', '--version'], ['-v']].map(async args => {
      const { code, stdout, stderr } = await source(args)
      assert.equal(code, 0, stderr)
      assert.equal(stdout, `${String(version)}\n`)
    }))
  })

  it('an unknown option, command or a missing value exits 2 with a RelayConfigError line', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['relay', '--colour', 'blue'], /^RelayConfigError: unknown option --colour \(see new-piece-please relay --help\)\n$/],
      [['--colour=blue'], /^RelayConfigError: unknown option --colour /],
      [['serve'], /^RelayConfigError: unknown command serve /],
      [['relay', 'extra'], /^RelayConfigError: unexpected argument extra /],
      [['relay', '--http-port'], /^RelayConfigError: --http-port needs a value\n$/],
      [['relay', '--key-file', '--http-port', '0'], /^RelayConfigError: --key-file needs a value\n$/]
    ]
    await Promise.all(cases.map(async ([args, message]) => {
      const { code, stdout, stderr } = await source(args)
      assert.equal(code, 2, `${args.join(' ')}: ${stderr}`)
      assert.match(stderr, message)
      assert.equal(stdout, '')
    }))
  })

  it('keeps its key in the per-user data directory, says where, and --key-file (also as --key-file=) overrides it', async () => {
    const h = await homes()
    const start = async (args: string[]): Promise<Result> => await run(process.execPath, ['--import', guard, cli, 'relay', '--http-port', '0', ...args], {
      env: h.env,
      until: /HTTP API/,
      whenSeen: async (_, child) => { child.kill('SIGTERM') }
    })
    const first = await start([])
    assert.equal(first.code, 0, first.stderr)
    assert.ok(first.stdout.includes(`private key: ${expectedKeyFile(h)}\n`), first.stdout)
    assert.ok((await stat(expectedKeyFile(h))).isFile(), 'the key was written there')
    const other = join(h.home, 'elsewhere', 'k')
    const second = await start([`--key-file=${other}`])
    assert.equal(second.code, 0, second.stderr)
    assert.ok(second.stdout.includes(`private key: ${other}\n`), second.stdout)
    assert.ok((await stat(other)).isFile())
  })

  it('without a usable XDG_DATA_HOME the key goes under ~/.local/share (Linux and other Unix; macOS and Windows ignore it)', async () => {
    const h = await homes()
    await Promise.all([undefined, 'relative/dir'].map(async xdg => {
      const env = { ...h.env, XDG_DATA_HOME: xdg }
      if (xdg == null) delete env.XDG_DATA_HOME
      const { stdout } = await source(['--help'], env)
      const expected = process.platform === 'darwin' || process.platform === 'win32' ? expectedKeyFile(h) : join(h.home, '.local', 'share', 'new-piece-please', 'relay.key')
      assert.ok(stdout.includes(`default: ${expected}\n`), `XDG_DATA_HOME=${String(xdg)}`)
    }))
  })
})

describe('the Node version check', () => {
  it(`throws UnsupportedNodeError below Node ${MIN_NODE_MAJOR}, and says which Node it is`, () => {
    assert.equal(MIN_NODE_MAJOR, 22)
    assert.throws(() => { checkNodeVersion('20.20.2') }, (err: any) => err instanceof UnsupportedNodeError && err.name === 'UnsupportedNodeError' && err.code === 'UnsupportedNodeError' &&
      err.message === 'new-piece-please needs Node 22 or newer (this is Node 20.20.2)')
    assert.throws(() => { checkNodeVersion('18.0.0') }, UnsupportedNodeError)
  })

  it('lets Node 22 and newer through, and anything that is not Node', () => {
    for (const v of ['22.0.0', '22.23.3', '24.1.0', '100.0.0', undefined, 'not-a-version']) checkNodeVersion(v)
    checkNodeVersion() // this process
  })
})

describe('the package as installed', () => {
  let app = ''
  let homeEnv: NodeJS.ProcessEnv = {}
  let oldNode: string[] = []
  before(async () => {
    app = (await installedPackage()).app
    homeEnv = (await homes()).env
    // this Node, telling the package it is Node 20: the check must run
    // before anything that could fail on a real Node 20 (the CLI's and both
    // entry points' first import), whatever this machine has installed
    const preload = join(app, 'node-20.mjs')
    await writeFile(preload, "Object.defineProperty(process.versions, 'node', { value: '20.20.2' })\n")
    oldNode = ['--import', preload]
  })

  it('require() from CommonJS works, for both entry points', async () => {
    await writeFile(join(app, 'main.cjs'), [
      "const { createNewPiecePlease, RelayConfigError } = require('new-piece-please')",
      "const { createRelay, DEFAULT_MAX_RESERVATIONS } = require('new-piece-please/relay')",
      'console.log(typeof createNewPiecePlease, typeof RelayConfigError, typeof createRelay, DEFAULT_MAX_RESERVATIONS)'
    ].join('\n'))
    const { code, stdout, stderr } = await run(process.execPath, ['--import', guard, 'main.cjs'], { cwd: app, env: homeEnv })
    assert.equal(code, 0, stderr)
    assert.equal(stdout, `function function function ${DEFAULT_MAX_RESERVATIONS}\n`)
    assert.equal(stderr, '', 'no warning either')
  })

  it('the installed CLI answers --version from its own package.json', async () => {
    const { code, stdout, stderr } = await run(process.execPath, [join(app, 'node_modules/new-piece-please/dist/src/relay/cli.js'), '--version'], { cwd: app, env: homeEnv })
    assert.equal(code, 0, stderr)
    assert.equal(stdout, `${String(version)}\n`)
  })

  it(`on a Node older than ${MIN_NODE_MAJOR}, the CLI says so and exits 2`, async () => {
    const { code, stdout, stderr } = await run(process.execPath, [...oldNode, join(app, 'node_modules/new-piece-please/dist/src/relay/cli.js'), 'relay', '--http-port', '0'], { cwd: app, env: homeEnv })
    assert.equal(code, 2)
    assert.match(stderr, /^UnsupportedNodeError: new-piece-please needs Node 22 or newer \(this is Node 20\.20\.2\)\n$/)
    assert.equal(stdout, '')
  })

  it(`on a Node older than ${MIN_NODE_MAJOR}, importing the library says so, from either entry point`, async () => {
    await Promise.all(['new-piece-please', 'new-piece-please/relay'].map(async entry => {
      const { code, stderr } = await run(process.execPath, [...oldNode, '--input-type=module', '-e', `await import('${entry}')`], { cwd: app, env: homeEnv })
      assert.notEqual(code, 0, entry)
      assert.match(stderr, /UnsupportedNodeError: new-piece-please needs Node 22 or newer \(this is Node 20\.20\.2\)/, entry)
    }))
  })
})
