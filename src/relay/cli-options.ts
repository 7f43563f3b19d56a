/**
 * What the `relay` and `keeper` commands share: the per-user data directory,
 * the package version, a small option parser and the relay's options (the
 * keeper takes them all). Only Node built-ins and the error classes: `--help`
 * answers without loading libp2p.
 */
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import type { RelayInit } from './relay.ts'

export const DEFAULT_CLI_HTTP_PORT = 9090
/** The folder, under the per-user data directory, that holds the commands' keys and data. */
const APP_DATA_DIR = 'new-piece-please'

/**
 * The command's folder in the per-user data directory, never the current
 * one (where a key is easy to commit): `$XDG_DATA_HOME` (when an absolute
 * path, as the XDG spec asks) else `~/.local/share`; on macOS
 * `~/Library/Application Support`; on Windows `%LOCALAPPDATA%`.
 */
export function appDataDir (env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  let base: string
  if (platform === 'darwin') base = join(homedir(), 'Library', 'Application Support')
  else if (platform === 'win32') base = env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local')
  else base = env.XDG_DATA_HOME != null && isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : join(homedir(), '.local', 'share')
  return join(base, APP_DATA_DIR)
}

/** The installed package's version, read through the package's own `exports` (`./package.json`). */
export async function version (): Promise<string> {
  const url = new URL(import.meta.resolve('new-piece-please/package.json'))
  return JSON.parse(await readFile(url, 'utf8')).version
}

/** One `--flag`: its help lines, its default as `--help` shows it, and how it sets the command's init. */
export interface CliOption<T> {
  flag: string
  /** The value's placeholder; empty for a switch (`--open`, or `--open=false`). */
  arg: string
  help: string[]
  default: () => string
  apply(init: T, value: string): void | Promise<void>
}

type ErrorClass = new (message: string) => Error

/** The `--help` lines of `options`: each option, what it does, and its default on the line below. */
export function optionLines (options: ReadonlyArray<CliOption<any>>, extra: Array<[string, string]> = []): string {
  const width = Math.max(...options.map(o => `${o.flag} ${o.arg}`.length), ...extra.map(([left]) => left.length)) + 2
  const line = (left: string, right: string): string => `  ${left.padEnd(width)}${right}\n`
  return options.map(o => [...o.help, `default: ${o.default()}`].map((text, i) => line(i === 0 ? `${o.flag} ${o.arg}`.trimEnd() : '', text)).join('')).join('') +
    extra.map(([left, right]) => line(left, right)).join('')
}

/**
 * Apply `args` (`--name value` or `--name=value`; a switch takes no value)
 * to `init` in order. Anything else throws `Err` naming it, with `see` (the
 * help command to read) in the message.
 */
export async function parseOptions<T> (args: readonly string[], options: ReadonlyArray<CliOption<T>>, init: T, see: string, Err: ErrorClass): Promise<T> {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1
    const flag = eq > 0 ? arg.slice(0, eq) : arg
    if (!flag.startsWith('-')) throw new Err(`unexpected argument ${flag} (options start with --; see ${see})`)
    const option = options.find(o => o.flag === flag)
    if (option == null) throw new Err(`unknown option ${flag} (see ${see})`)
    let value: string | undefined
    if (option.arg === '') {
      value = eq > 0 ? arg.slice(eq + 1) : 'true'
      if (value !== 'true' && value !== 'false') throw new Err(`${flag} takes no value, or =true or =false; got ${value}`)
    } else {
      value = eq > 0 ? arg.slice(eq + 1) : args[++i]
      if (value === undefined || (eq < 0 && value.startsWith('--'))) throw new Err(`${flag} needs a value`)
    }
    await option.apply(init, value)
  }
  return init
}

/** A comma-separated list, blanks left out. */
export function list (value: string): string[] {
  return value.split(',').map(s => s.trim()).filter(s => s.length > 0)
}

/** The JSON object in `file`, whose keys must all be in `keys`. */
export async function readConfigFile (file: string, keys: ReadonlySet<string>, Err: ErrorClass): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err: any) {
    throw new Err(`cannot read config file ${file}: ${err?.message ?? err}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err: any) {
    throw new Err(`config file ${file} is not JSON: ${err?.message ?? err}`)
  }
  if (json == null || typeof json !== 'object' || Array.isArray(json)) throw new Err(`config file ${file} must hold a JSON object`)
  const unknown = Object.keys(json).filter(k => !keys.has(k))
  if (unknown.length > 0) throw new Err(`config file ${file}: unknown key(s) ${unknown.join(', ')}`)
  return json as Record<string, unknown>
}

/** The keys of a relay `--config` file. */
export const RELAY_CONFIG_KEYS: ReadonlySet<string> = new Set(['listen', 'announce', 'httpHost', 'httpPort', 'keyFile', 'trusted', 'trustedRedialInterval', 'maxReservations', 'peersPerAddress'])

/**
 * The relay's options but `--config`, in the order `--help` lists them.
 * The defaults shown for `createRelay`'s own options are its named constants
 * in `./relay.ts` (test/process/first-impressions.test.ts checks they
 * agree); they are written out here so `--help` does not load libp2p.
 * `keyFile` says where the key goes by default.
 */
export function relayOptions (keyFile: () => string): Array<CliOption<RelayInit>> {
  return [
    { flag: '--listen', arg: '<multiaddr,...>', help: ['libp2p listen addresses (WebSockets for browsers, TCP for Node peers)'], default: () => '/ip4/127.0.0.1/tcp/0/ws,/ip4/127.0.0.1/tcp/0 (free ports)', apply: (init, v) => { init.listen = list(v) } },
    { flag: '--announce', arg: '<multiaddr,...>', help: ['extra addresses to announce (a public address behind NAT)'], default: () => 'none', apply: (init, v) => { init.announce = list(v) } },
    { flag: '--http-host', arg: '<host>', help: ['HTTP API host'], default: () => '127.0.0.1', apply: (init, v) => { init.httpHost = v } },
    { flag: '--http-port', arg: '<port>', help: ['HTTP API port (0 picks a free one)'], default: () => String(DEFAULT_CLI_HTTP_PORT), apply: (init, v) => { init.httpPort = Number(v) } },
    { flag: '--key-file', arg: '<path>', help: ['the relay\'s private key, created if missing, so its peer id stays the same', '(its addresses too only with fixed --listen ports)'], default: keyFile, apply: (init, v) => { init.keyFile = v } },
    { flag: '--max-reservations', arg: '<n>', help: ['peers that may hold a reservation at once'], default: () => '256', apply: (init, v) => { init.maxReservations = Number(v) } },
    { flag: '--peers-per-address', arg: '<n>', help: ['peers expected behind one IP address (a school NAT):', 'inbound connections per second per host, gossipsub colocation'], default: () => '256', apply: (init, v) => { init.peersPerAddress = Number(v) } }
  ]
}
