#!/usr/bin/env node
/**
 * `new-piece-please relay [options]` (or `new-piece-please-relay [options]`):
 * runs the relay until SIGINT/SIGTERM. `--help` lists the options with their
 * defaults (see {@link usage}), `--version` prints the package version; both
 * exit 0. An unknown command or option, or a bad value, exits 2 with a
 * `RelayConfigError` line; so does a relay that cannot start.
 *
 * Up front it imports only Node built-ins and the error classes: the Node
 * version check runs before anything else can fail (on Node 20 libp2p stops
 * with "Pubsub is not started", which says nothing about the cause), and
 * `--help`/`--version` answer without loading libp2p.
 */
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { RelayConfigError } from '../errors.ts'
import type { RelayInit } from './relay.ts'

const DEFAULT_CLI_HTTP_PORT = 9090
/** The folder, under the per-user data directory, that holds the CLI's key. */
const APP_DATA_DIR = 'new-piece-please'
const KEY_FILE_NAME = 'relay.key'

/**
 * Where the CLI keeps the relay's private key unless `--key-file` (or
 * `keyFile` in `--config`) says otherwise: the per-user data directory, never
 * the current one, where a key is easy to commit. `$XDG_DATA_HOME` (when an
 * absolute path, as the XDG spec asks) else `~/.local/share`; on macOS
 * `~/Library/Application Support`; on Windows `%LOCALAPPDATA%`.
 */
function defaultKeyFile (env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  let base: string
  if (platform === 'darwin') base = join(homedir(), 'Library', 'Application Support')
  else if (platform === 'win32') base = env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local')
  else base = env.XDG_DATA_HOME != null && isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : join(homedir(), '.local', 'share')
  return join(base, APP_DATA_DIR, KEY_FILE_NAME)
}

/**
 * The options, in the order `--help` lists them. The defaults shown for
 * `createRelay`'s own options are its named constants in `./relay.ts`
 * (test/process/first-impressions.test.ts checks they agree); they are
 * written out here so `--help` does not load libp2p.
 */
const OPTIONS: ReadonlyArray<{ flag: string, arg: string, help: string[], default: () => string }> = [
  { flag: '--listen', arg: '<multiaddr,...>', help: ['libp2p listen addresses (WebSockets for browsers, TCP for Node peers)'], default: () => '/ip4/127.0.0.1/tcp/0/ws,/ip4/127.0.0.1/tcp/0 (free ports)' },
  { flag: '--announce', arg: '<multiaddr,...>', help: ['extra addresses to announce (a public address behind NAT)'], default: () => 'none' },
  { flag: '--http-host', arg: '<host>', help: ['HTTP API host'], default: () => '127.0.0.1' },
  { flag: '--http-port', arg: '<port>', help: ['HTTP API port (0 picks a free one)'], default: () => String(DEFAULT_CLI_HTTP_PORT) },
  { flag: '--key-file', arg: '<path>', help: ['the relay\'s private key, created if missing, so its peer id stays the same', '(its addresses too only with fixed --listen ports)'], default: () => defaultKeyFile() },
  { flag: '--max-reservations', arg: '<n>', help: ['peers that may hold a reservation at once'], default: () => '256' },
  { flag: '--peers-per-address', arg: '<n>', help: ['peers expected behind one IP address (a school NAT):', 'inbound connections per second per host, gossipsub colocation'], default: () => '256' },
  {
    flag: '--config',
    arg: '<file.json>',
    help: [
      'a JSON object with any of listen, announce, httpHost, httpPort, keyFile,',
      'maxReservations, peersPerAddress, trusted (multiaddrs ending in /p2p/<id>, default none)',
      'and trustedRedialInterval (ms, default 10000); options after it override it'
    ],
    default: () => 'none'
  }
]

const CONFIG_KEYS = new Set(['listen', 'announce', 'httpHost', 'httpPort', 'keyFile', 'trusted', 'trustedRedialInterval', 'maxReservations', 'peersPerAddress'])

/** The `--help` text: each option, what it does, and its default on the line below. */
function usage (): string {
  const width = Math.max(...OPTIONS.map(o => `${o.flag} ${o.arg}`.length)) + 2
  const line = (left: string, right: string): string => `  ${left.padEnd(width)}${right}\n`
  return 'Usage: new-piece-please relay [options]\n' +
    '       new-piece-please-relay [options]\n\n' +
    'Runs a new-piece-please relay (libp2p over WebSockets and TCP, circuit relay v2,\n' +
    'pubsub peer discovery) and its HTTP API (/config, /peers, /health) until Ctrl-C.\n\n' +
    'Options (--name value or --name=value):\n' +
    OPTIONS.map(o => [...o.help, `default: ${o.default()}`].map((text, i) => line(i === 0 ? `${o.flag} ${o.arg}` : '', text)).join('')).join('') +
    line('-h, --help', 'print this help and exit') +
    line('-v, --version', 'print the version and exit')
}

/** The installed package's version, read through the package's own `exports` (`./package.json`). */
async function version (): Promise<string> {
  const url = new URL(import.meta.resolve('new-piece-please/package.json'))
  return JSON.parse(await readFile(url, 'utf8')).version
}

type Command = { run: 'help' } | { run: 'version' } | { run: 'relay', init: RelayInit }

async function readConfig (file: string): Promise<RelayInit> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err: any) {
    throw new RelayConfigError(`cannot read config file ${file}: ${err?.message ?? err}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err: any) {
    throw new RelayConfigError(`config file ${file} is not JSON: ${err?.message ?? err}`)
  }
  if (json == null || typeof json !== 'object' || Array.isArray(json)) throw new RelayConfigError(`config file ${file} must hold a JSON object`)
  const unknown = Object.keys(json).filter(k => !CONFIG_KEYS.has(k))
  if (unknown.length > 0) throw new RelayConfigError(`config file ${file}: unknown key(s) ${unknown.join(', ')}`)
  return json as RelayInit
}

async function parse (argv: readonly string[]): Promise<Command> {
  let args = argv
  if (args[0] === 'relay') args = args.slice(1)
  else if (args[0] === 'help') return { run: 'help' }
  else if (args[0] != null && !args[0].startsWith('-')) throw new RelayConfigError(`unknown command ${args[0]} (the command is "relay"; see new-piece-please --help)`)
  // asking for help or the version wins over everything else on the line
  if (args.includes('--help') || args.includes('-h')) return { run: 'help' }
  if (args.includes('--version') || args.includes('-v')) return { run: 'version' }

  let init: RelayInit = { httpPort: DEFAULT_CLI_HTTP_PORT, keyFile: defaultKeyFile() }
  const list = (v: string): string[] => v.split(',').map(s => s.trim()).filter(s => s.length > 0)
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1
    const flag = eq > 0 ? arg.slice(0, eq) : arg
    if (!flag.startsWith('-')) throw new RelayConfigError(`unexpected argument ${flag} (options start with --; see new-piece-please relay --help)`)
    if (!OPTIONS.some(o => o.flag === flag)) throw new RelayConfigError(`unknown option ${flag} (see new-piece-please relay --help)`)
    const value = eq > 0 ? arg.slice(eq + 1) : args[++i]
    if (value === undefined || (eq < 0 && value.startsWith('--'))) throw new RelayConfigError(`${flag} needs a value`)
    switch (flag) {
      case '--listen': init.listen = list(value); break
      case '--announce': init.announce = list(value); break
      case '--http-host': init.httpHost = value; break
      case '--http-port': init.httpPort = Number(value); break
      case '--key-file': init.keyFile = value; break
      case '--max-reservations': init.maxReservations = Number(value); break
      case '--peers-per-address': init.peersPerAddress = Number(value); break
      case '--config': init = { ...init, ...(await readConfig(value)) }; break
    }
  }
  return { run: 'relay', init }
}

async function main (argv: readonly string[]): Promise<void> {
  // first: an old Node fails here with UnsupportedNodeError, not deep inside libp2p
  await import('../platform/node-version.ts')
  const command = await parse(argv)
  if (command.run === 'help') {
    process.stdout.write(usage())
    return
  }
  if (command.run === 'version') {
    process.stdout.write(`${await version()}\n`)
    return
  }
  const { createRelay } = await import('./relay.ts')
  const relay = await createRelay(command.init)
  const shutdown = (signal: string): void => {
    process.stdout.write(`${signal}: stopping\n`)
    relay.stop().then(() => { process.exit(0) }, (err: unknown) => {
      process.stderr.write(`could not stop cleanly: ${String(err)}\n`)
      process.exit(1)
    })
  }
  // before the lines below: a supervisor may signal as soon as it reads
  // them, and with no listener yet the signal would kill the process
  process.once('SIGINT', () => { shutdown('SIGINT') })
  process.once('SIGTERM', () => { shutdown('SIGTERM') })
  const config = relay.config()
  process.stdout.write(`relay ${config.peerId}\n`)
  for (const addr of config.multiaddrs) process.stdout.write(`  ${addr}\n`)
  process.stdout.write(`private key: ${command.init.keyFile ?? '(none: a new key at every start)'}\n`)
  process.stdout.write(`HTTP API: ${relay.httpUrl}/config  ${relay.httpUrl}/peers  ${relay.httpUrl}/health\n`)
}

try {
  await main(process.argv.slice(2))
} catch (err: any) {
  process.stderr.write(`${typeof err?.name === 'string' ? err.name : 'Error'}: ${err?.message ?? err}\n`)
  process.exit(2)
}
