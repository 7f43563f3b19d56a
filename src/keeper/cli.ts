/**
 * `new-piece-please keeper [options]`: a relay and a keeper in one process
 * (`./server.ts`) until SIGINT/SIGTERM. `new-piece-please keeper allow
 * <peerId>` and `keeper deny <peerId>` call a running keeper's admin API.
 * Reached through `../relay/cli.ts` (the package's `bin`), after its Node
 * version check. `--help` answers without loading libp2p. A bad option or
 * value exits 2 with a `KeeperConfigError` (or `InvalidPeerIdError`) line;
 * a failed admin call exits 1 with a `KeeperAdminError` line.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { KeeperConfigError, KeeperAdminError } from './errors.ts'
import { DEFAULT_CLI_HTTP_PORT, RELAY_CONFIG_KEYS, appDataDir, list, optionLines, parseOptions, readConfigFile, relayOptions, version, type CliOption } from '../relay/cli-options.ts'
import type { KeeperPolicy, KeeperServerInit } from './server.ts'
import type { RelayInit } from '../relay/relay.ts'
import { parseOpenFileLimit, type OpenFileLimit } from '../utils/open-file-limit.ts'

/** Time (ms) an admin call may take. */
const ADMIN_CALL_TIMEOUT = 30_000

/** Where the keeper keeps everything unless `--dir` says otherwise: `keeper` in the per-user data directory. */
function defaultDir (): string {
  return join(appDataDir(), 'keeper')
}

/** The `ulimit -n` the warning suggests, unless the keeper may need more. */
const SUGGESTED_OPEN_FILES = 65_536

/**
 * This process's open-file limit where the system states it (Linux's
 * `/proc/self/limits`; elsewhere `undefined`). Node raises its soft limit to
 * the hard one as it starts, so a low soft limit alone (systemd's 1,024 under
 * a hard 524,288) is no harm and reads as the hard one here; a low hard limit
 * (`ulimit -n 1024`, some containers, limits.conf) stays.
 */
async function openFileLimit (): Promise<OpenFileLimit | undefined> {
  try {
    return parseOpenFileLimit(await readFile('/proc/self/limits', 'utf8'))
  } catch {
    return undefined
  }
}

/** The start warning of a keeper whose open-file limit is below the `wanted` files (`openFilesWanted`). */
function openFileLimitWarning (limit: OpenFileLimit, wanted: number): string {
  const suggested = Math.max(SUGGESTED_OPEN_FILES, wanted)
  const hard = limit.hard < suggested ? ` (as root, or in /etc/security/limits.conf: the hard limit is ${limit.hard})` : ''
  return `warning: the open-file limit (ulimit -n) is ${limit.soft}, below the ${wanted} this keeper may hold at its connection caps; ` +
    `once it is reached, connections are refused and stores fail to open. Raise it before starting: ulimit -n ${suggested}${hard}, or LimitNOFILE=${suggested} in its systemd unit`
}

/** What the options of `keeper` set: the relay's options and the keeper's, as in a `--config` file. */
interface KeeperCliInit extends RelayInit, KeeperPolicy {
  dir?: string
  keeperListen?: string[]
  keeperAnnounce?: string[]
}

const KEEPER_CONFIG_KEYS = new Set([...RELAY_CONFIG_KEYS, 'dir', 'keeperListen', 'keeperAnnounce', 'allow', 'open', 'maxUsers', 'maxPiecesPerUser', 'maxBytesPerUser', 'maxBytes', 'idleTimeout'])

const OPTIONS: ReadonlyArray<CliOption<KeeperCliInit>> = [
  { flag: '--dir', arg: '<path>', help: ['the keeper\'s directory: its peer id, the replicas it keeps, keeper.json', '(allowlist), admin-token and the relay\'s key (back it up while stopped)'], default: defaultDir, apply: (init, v) => { init.dir = v } },
  { flag: '--allow', arg: '<peerId,...>', help: ['serve these peers (added to the saved allowlist; repeatable)'], default: () => 'none (deny by default)', apply: (init, v) => { init.allow = [...(init.allow ?? []), ...list(v)] } },
  { flag: '--open', arg: '', help: ['serve anyone, within the quotas'], default: () => 'false', apply: (init, v) => { init.open = v === 'true' } },
  { flag: '--max-users', arg: '<n>', help: ['users kept at most'], default: () => '256', apply: (init, v) => { init.maxUsers = Number(v) } },
  { flag: '--max-pieces-per-user', arg: '<n>', help: ['pieces per user at most (a user who grows over is dropped)'], default: () => '100000', apply: (init, v) => { init.maxPiecesPerUser = Number(v) } },
  { flag: '--max-bytes-per-user', arg: '<n>', help: ['bytes of log entries per user at most'], default: () => '67108864 (64 MiB)', apply: (init, v) => { init.maxBytesPerUser = Number(v) } },
  { flag: '--max-bytes', arg: '<n>', help: ['bytes of log entries for all users together at most'], default: () => '4294967296 (4 GiB)', apply: (init, v) => { init.maxBytes = Number(v) } },
  { flag: '--idle-timeout', arg: '<ms>', help: ['a kept user\'s databases close this long after their last use', '(they open again when a peer wants them)'], default: () => '60000', apply: (init, v) => { init.idleTimeout = Number(v) } },
  { flag: '--keeper-listen', arg: '<multiaddr,...>', help: ['the keeper node\'s listen addresses (TCP for Node peers, WebSockets for browsers)'], default: () => 'the relay\'s --listen addresses on free ports', apply: (init, v) => { init.keeperListen = list(v) } },
  { flag: '--keeper-announce', arg: '<multiaddr,...>', help: ['addresses the keeper node announces instead of its listen addresses,', 'and /config lists (a public address or name behind NAT; fix --keeper-listen ports)'], default: () => 'none', apply: (init, v) => { init.keeperAnnounce = list(v) } },
  ...relayOptions(() => '<dir>/relay.key') as Array<CliOption<KeeperCliInit>>,
  {
    flag: '--config',
    arg: '<file.json>',
    help: [
      'a JSON object with any of the relay\'s config keys (see new-piece-please relay --help)',
      'and dir, keeperListen, keeperAnnounce, allow, open, maxUsers, maxPiecesPerUser, maxBytesPerUser,',
      'maxBytes, idleTimeout; options after it override it (allow adds to it)'
    ],
    default: () => 'none',
    apply: async (init, file) => {
      const { allow, ...rest } = await readConfigFile(file, KEEPER_CONFIG_KEYS, KeeperConfigError)
      if (allow !== undefined && (!Array.isArray(allow) || !allow.every(a => typeof a === 'string'))) throw new KeeperConfigError(`config file ${file}: expected allow to be an array of peer ids`)
      Object.assign(init, rest)
      if (allow !== undefined) init.allow = [...(init.allow ?? []), ...allow]
    }
  }
]

interface AdminInit { dir?: string, url?: string, token?: string }

const ADMIN_OPTIONS: ReadonlyArray<CliOption<AdminInit>> = [
  { flag: '--url', arg: '<url>', help: ['the running keeper\'s HTTP API'], default: () => `http://127.0.0.1:${DEFAULT_CLI_HTTP_PORT}`, apply: (init, v) => { init.url = v } },
  { flag: '--token', arg: '<token>', help: ['the admin token'], default: () => 'read from <dir>/admin-token', apply: (init, v) => { init.token = v } },
  { flag: '--dir', arg: '<path>', help: ['the keeper\'s directory (for its admin-token)'], default: defaultDir, apply: (init, v) => { init.dir = v } }
]

function usage (): string {
  return 'Usage: new-piece-please keeper [options]\n' +
    '       new-piece-please keeper allow <peerId> [--url <url>] [--token <token>] [--dir <path>]\n' +
    '       new-piece-please keeper deny <peerId> [--url <url>] [--token <token>] [--dir <path>]\n\n' +
    'Runs a keeper and a relay in one process until Ctrl-C: the keeper keeps the\n' +
    'catalogs of the peers it serves (deny by default) so companions get them while\n' +
    'their owners are offline. HTTP API: the relay\'s /config (with "keepers"), /peers,\n' +
    '/health (with "keeper"), and /catalogs, POST /admin/allow, POST /admin/deny\n' +
    '(Authorization: Bearer <the admin-token file in --dir>).\n' +
    '"keeper allow" and "keeper deny" call a running keeper\'s admin API (idempotent).\n\n' +
    'Options (--name value or --name=value):\n' +
    optionLines(OPTIONS, [['-h, --help', 'print this help and exit'], ['-v, --version', 'print the version and exit']]) +
    '\nOptions of allow and deny:\n' +
    optionLines(ADMIN_OPTIONS)
}

export async function keeperMain (argv: readonly string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h') || argv[0] === 'help') {
    process.stdout.write(usage())
    return
  }
  if (argv.includes('--version') || argv.includes('-v')) {
    process.stdout.write(`${await version()}\n`)
    return
  }
  if (argv[0] === 'allow' || argv[0] === 'deny') {
    await admin(argv[0], argv.slice(1))
    return
  }
  if (argv[0] != null && !argv[0].startsWith('-')) throw new KeeperConfigError(`unknown keeper command ${argv[0]} (the commands are "allow" and "deny"; see new-piece-please keeper --help)`)
  const init = await parseOptions<KeeperCliInit>(argv, OPTIONS, { httpPort: DEFAULT_CLI_HTTP_PORT }, 'new-piece-please keeper --help', KeeperConfigError)
  await run(init)
}

async function run (init: KeeperCliInit): Promise<void> {
  const { dir, keeperListen, keeperAnnounce, allow, open, maxUsers, maxPiecesPerUser, maxBytesPerUser, maxBytes, idleTimeout, ...relay } = init
  const serverInit: KeeperServerInit = { directory: dir ?? defaultDir(), relay, listen: keeperListen, announce: keeperAnnounce, allow, open, maxUsers, maxPiecesPerUser, maxBytesPerUser, maxBytes, idleTimeout }
  const { createKeeperServer, openFilesWanted } = await import('./server.ts')
  // before starting: a start that runs out of file descriptors fails without saying why
  const limit = await openFileLimit()
  const wanted = openFilesWanted(relay)
  if (limit !== undefined && limit.soft < wanted) process.stderr.write(openFileLimitWarning(limit, wanted) + '\n')
  const keeper = await createKeeperServer(serverInit)
  const shutdown = (signal: string): void => {
    process.stdout.write(`${signal}: stopping\n`)
    keeper.stop().then(() => { process.exit(0) }, (err: unknown) => {
      process.stderr.write(`could not stop cleanly: ${String(err)}\n`)
      process.exit(1)
    })
  }
  // before the lines below: a supervisor may signal as soon as it reads them
  process.once('SIGINT', () => { shutdown('SIGINT') })
  process.once('SIGTERM', () => { shutdown('SIGTERM') })
  const config = keeper.config()
  const served = open === true ? 'anyone (--open), within the quotas' : `${keeper.service.allowlist().length} allowlisted peer(s) (deny by default)`
  const out = [
    `keeper ${keeper.peerId}`,
    ...config.keepers.map(a => `  ${a}`),
    `relay ${config.peerId}`,
    ...config.multiaddrs.map(a => `  ${a}`),
    `serving: ${served}`,
    `data: ${keeper.directory} (stop the keeper, then copy this directory to back it up)`,
    `admin token: ${keeper.tokenFile}${keeper.tokenCreated ? ' (created)' : ''}`,
    `peers use: relay: '${keeper.httpUrl}/config'`,
    `HTTP API: ${keeper.httpUrl}/config  ${keeper.httpUrl}/catalogs  ${keeper.httpUrl}/health`
  ]
  process.stdout.write(out.join('\n') + '\n')
}

/** `keeper allow|deny <peerId>`; a keeper that says no or cannot be reached throws `KeeperAdminError` (exit code 1). */
async function admin (op: 'allow' | 'deny', args: readonly string[]): Promise<void> {
  const peerArg = args[0]
  if (peerArg == null || peerArg.startsWith('-')) throw new KeeperConfigError(`keeper ${op} needs a peer id: new-piece-please keeper ${op} <peerId>`)
  const { canonicalPeerId, readToken, TOKEN_FILE_NAME } = await import('./state.ts')
  const peerId = canonicalPeerId(peerArg)
  const init = await parseOptions<AdminInit>(args.slice(1), ADMIN_OPTIONS, {}, 'new-piece-please keeper --help', KeeperConfigError)
  const base = init.url ?? `http://127.0.0.1:${DEFAULT_CLI_HTTP_PORT}`
  let url: URL
  try {
    url = new URL(`/admin/${op}`, base)
  } catch {
    throw new KeeperConfigError(`--url ${base} is not a URL (expected something like http://127.0.0.1:9090)`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new KeeperConfigError(`--url ${base} is not an http(s) URL`)
  const token = init.token ?? await readToken(join(init.dir ?? defaultDir(), TOKEN_FILE_NAME))
  let response: Response
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ peerId }),
      signal: AbortSignal.timeout(ADMIN_CALL_TIMEOUT)
    })
  } catch (err: any) {
    throw new KeeperAdminError(`cannot reach the keeper at ${base}: ${String(err?.cause?.message ?? err?.message ?? err)} (is it running? --url says where)`)
  }
  const text = await response.text()
  let body: Record<string, unknown> = {}
  try {
    body = JSON.parse(text)
  } catch {}
  if (!response.ok) {
    const why = typeof body.message === 'string' ? body.message : text.slice(0, 200)
    throw new KeeperAdminError(`the keeper at ${base} answered ${response.status}: ${why}`, response.status)
  }
  const what = op === 'allow'
    ? (body.changed === true ? `allowed ${peerId}` : `${peerId} was allowed already`)
    : (body.changed === true ? `denied ${peerId}` : `${peerId} was not on the allowlist`) + (body.dropped === true ? ' (what was kept of it is dropped)' : '')
  process.stdout.write(what + '\n')
}
