#!/usr/bin/env node
/**
 * `new-piece-please-relay [options]` (or `new-piece-please relay [options]`):
 * runs the relay until SIGINT/SIGTERM.
 *
 *   --listen <multiaddr,...>   libp2p listen addresses (default: WebSockets and TCP on 127.0.0.1, free ports)
 *   --announce <multiaddr,...> extra addresses to announce
 *   --http-host <host>         HTTP API host (default 127.0.0.1)
 *   --http-port <port>         HTTP API port (default 9090; 0 picks a free one)
 *   --key-file <path>          private key file, created if missing (default ./.npp-relay/relay.key)
 *   --max-reservations <n>     peers that may hold a reservation at once (default 256)
 *   --config <file.json>       any of the above as JSON ({ listen, announce, httpHost, httpPort, keyFile, trusted, maxReservations })
 */
import { readFile } from 'node:fs/promises'
import { createRelay, type RelayInit } from './relay.ts'
import { RelayConfigError, NewPiecePleaseError } from '../errors.ts'

const DEFAULT_CLI_HTTP_PORT = 9090
const DEFAULT_CLI_KEY_FILE = './.npp-relay/relay.key'

async function parse (argv: string[]): Promise<RelayInit> {
  const args = argv[0] === 'relay' ? argv.slice(1) : argv
  let init: RelayInit = { httpPort: DEFAULT_CLI_HTTP_PORT, keyFile: DEFAULT_CLI_KEY_FILE }
  const list = (v: string): string[] => v.split(',').map(s => s.trim()).filter(s => s.length > 0)
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]
    const value = args[i + 1]
    if (value === undefined || value.startsWith('--')) throw new RelayConfigError(`${flag} needs a value`)
    i++
    switch (flag) {
      case '--listen': init.listen = list(value); break
      case '--announce': init.announce = list(value); break
      case '--http-host': init.httpHost = value; break
      case '--http-port': init.httpPort = Number(value); break
      case '--key-file': init.keyFile = value; break
      case '--max-reservations': init.maxReservations = Number(value); break
      case '--config': {
        let text: string
        try {
          text = await readFile(value, 'utf8')
        } catch (err: any) {
          throw new RelayConfigError(`cannot read config file ${value}: ${err?.message ?? err}`)
        }
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch (err: any) {
          throw new RelayConfigError(`config file ${value} is not JSON: ${err?.message ?? err}`)
        }
        if (json == null || typeof json !== 'object' || Array.isArray(json)) throw new RelayConfigError(`config file ${value} must hold a JSON object`)
        const allowed = new Set(['listen', 'announce', 'httpHost', 'httpPort', 'keyFile', 'trusted', 'trustedRedialInterval', 'maxReservations'])
        const unknown = Object.keys(json).filter(k => !allowed.has(k))
        if (unknown.length > 0) throw new RelayConfigError(`config file ${value}: unknown key(s) ${unknown.join(', ')}`)
        init = { ...init, ...(json as RelayInit) }
        break
      }
      default: throw new RelayConfigError(`unknown option ${String(flag)} (see the README)`)
    }
  }
  return init
}

try {
  const relay = await createRelay(await parse(process.argv.slice(2)))
  const config = relay.config()
  process.stdout.write(`relay ${config.peerId}\n`)
  for (const addr of config.multiaddrs) process.stdout.write(`  ${addr}\n`)
  process.stdout.write(`HTTP API: ${relay.httpUrl}/config  ${relay.httpUrl}/peers  ${relay.httpUrl}/health\n`)
  const shutdown = (signal: string): void => {
    process.stdout.write(`${signal}: stopping\n`)
    relay.stop().then(() => { process.exit(0) }, (err: unknown) => {
      process.stderr.write(`could not stop cleanly: ${String(err)}\n`)
      process.exit(1)
    })
  }
  process.once('SIGINT', () => { shutdown('SIGINT') })
  process.once('SIGTERM', () => { shutdown('SIGTERM') })
} catch (err: any) {
  process.stderr.write(`${err instanceof NewPiecePleaseError ? err.name : 'Error'}: ${err?.message ?? err}\n`)
  process.exit(2)
}
