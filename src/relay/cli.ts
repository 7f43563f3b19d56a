#!/usr/bin/env node
/**
 * `new-piece-please relay [options]` (or `new-piece-please-relay [options]`):
 * runs the relay until SIGINT/SIGTERM; `new-piece-please keeper ...` runs
 * the keeper command (`../keeper/cli.ts`). `--help` lists the options with
 * their defaults (see {@link usage}), `--version` prints the package
 * version; both exit 0. An unknown command or option, or a bad value, exits
 * 2 with a `RelayConfigError` line; so does a relay that cannot start.
 *
 * Up front it imports only Node built-ins and the error classes: the Node
 * version check runs before anything else can fail (on Node 20 libp2p stops
 * with "Pubsub is not started", which says nothing about the cause), and
 * `--help`/`--version` answer without loading libp2p.
 */
import { join } from 'node:path'
import { RelayConfigError } from '../errors.ts'
import { DEFAULT_CLI_HTTP_PORT, RELAY_CONFIG_KEYS, appDataDir, optionLines, parseOptions, readConfigFile, relayOptions, version, type CliOption } from './cli-options.ts'
import type { RelayInit } from './relay.ts'

/**
 * Where the CLI keeps the relay's private key unless `--key-file` (or
 * `keyFile` in `--config`) says otherwise: `relay.key` in the per-user data
 * directory (see `appDataDir`).
 */
function defaultKeyFile (): string {
  return join(appDataDir(), 'relay.key')
}

/** The options, in the order `--help` lists them. */
const OPTIONS: ReadonlyArray<CliOption<RelayInit>> = [
  ...relayOptions(defaultKeyFile),
  {
    flag: '--config',
    arg: '<file.json>',
    help: [
      'a JSON object with any of listen, announce, httpHost, httpPort, keyFile,',
      'maxReservations, peersPerAddress, trusted (multiaddrs ending in /p2p/<id>, default none)',
      'and trustedRedialInterval (ms, default 10000); options after it override it'
    ],
    default: () => 'none',
    apply: async (init, file) => { Object.assign(init, await readConfigFile(file, RELAY_CONFIG_KEYS, RelayConfigError)) }
  }
]

/** The `--help` text: each option, what it does, and its default on the line below. */
function usage (): string {
  return 'Usage: new-piece-please relay [options]\n' +
    '       new-piece-please-relay [options]\n\n' +
    'Runs a new-piece-please relay (libp2p over WebSockets and TCP, circuit relay v2,\n' +
    'pubsub peer discovery) and its HTTP API (/config, /peers, /health) until Ctrl-C.\n' +
    'new-piece-please keeper runs a keeper beside it (see new-piece-please keeper --help).\n\n' +
    'Options (--name value or --name=value):\n' +
    optionLines(OPTIONS, [['-h, --help', 'print this help and exit'], ['-v, --version', 'print the version and exit']])
}

type Command = { run: 'help' } | { run: 'version' } | { run: 'relay', init: RelayInit } | { run: 'keeper', args: readonly string[] }

async function parse (argv: readonly string[]): Promise<Command> {
  let args = argv
  if (args[0] === 'relay') args = args.slice(1)
  else if (args[0] === 'keeper') return { run: 'keeper', args: args.slice(1) }
  else if (args[0] === 'help') return { run: 'help' }
  else if (args[0] != null && !args[0].startsWith('-')) throw new RelayConfigError(`unknown command ${args[0]} (the commands are "relay" and "keeper"; see new-piece-please --help)`)
  // asking for help or the version wins over everything else on the line
  if (args.includes('--help') || args.includes('-h')) return { run: 'help' }
  if (args.includes('--version') || args.includes('-v')) return { run: 'version' }
  const init = await parseOptions<RelayInit>(args, OPTIONS, { httpPort: DEFAULT_CLI_HTTP_PORT, keyFile: defaultKeyFile() }, 'new-piece-please relay --help', RelayConfigError)
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
  if (command.run === 'keeper') {
    const { keeperMain } = await import('../keeper/cli.ts')
    await keeperMain(command.args)
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
  // 1: a running keeper refused an admin call or could not be reached; 2: bad options or a failed start
  process.exit(err?.name === 'KeeperAdminError' ? 1 : 2)
}
