/**
 * The relay of the churn soak (bench/soak.ts) in its own OS process:
 * `createRelay` from src/relay/ with the listen addresses and key file it is
 * given (a restart passes the TCP port of the first start, and the same key,
 * so the peers' `relay` multiaddr stays valid). Prints
 * `{"ready":{"peerId","multiaddrs","httpUrl"}}` on stdout once listening, or
 * one line on stderr and exit code 2 when it cannot start (a port not yet
 * free after a kill, for instance). SIGTERM stops it cleanly; so does the
 * end of stdin (the parent is gone), so no orphan is left behind.
 */
import { createRelay } from '../src/relay/relay.ts'

const { listen, keyFile } = JSON.parse(process.argv[2] ?? '{}') as { listen: string[], keyFile: string }
let relay: Awaited<ReturnType<typeof createRelay>>
try {
  relay = await createRelay({ listen, keyFile, httpPort: 0 })
} catch (err: any) {
  process.stderr.write(`soak-relay: start failed: ${err?.name}: ${err?.message}\n`)
  process.exit(2)
}

const stop = (code: number): void => {
  relay.stop().then(() => { process.exit(code) }, (err: any) => {
    process.stderr.write(`soak-relay: stop failed: ${err?.message ?? err}\n`)
    process.exit(1)
  })
}
process.once('SIGTERM', () => { stop(0) })
process.stdin.on('end', () => { stop(4) })
process.stdin.resume()
const { peerId, multiaddrs } = relay.config()
process.stdout.write(JSON.stringify({ ready: { peerId, multiaddrs, httpUrl: relay.httpUrl } }) + '\n')
