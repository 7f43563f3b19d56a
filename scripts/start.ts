/**
 * `npm start`: the relay and the demo page (a production build, served from
 * a temporary directory) on this machine. Prints the URL to open, in two
 * tabs or browsers to see them become companions.
 *
 *   NPP_RELAY_HTTP_PORT (default 9090), NPP_WEB_PORT (default 5173),
 *   NPP_HOST (default 127.0.0.1), NPP_RELAY_KEY (default ./.npp-relay/relay.key)
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { build } from 'vite'
import { createRelay } from 'new-piece-please/relay'
import { serveStatic } from './static-server.ts'

const host = process.env.NPP_HOST ?? '127.0.0.1'
const out = await mkdtemp(join(tmpdir(), 'npp-demo-'))
const t0 = performance.now()
await build({ configFile: new URL('../vite.config.ts', import.meta.url).pathname, logLevel: 'warn', build: { outDir: out, emptyOutDir: true } })
console.log(`built the demo page in ${(performance.now() - t0).toFixed(0)} ms`)
const relay = await createRelay({
  httpHost: host,
  httpPort: Number(process.env.NPP_RELAY_HTTP_PORT ?? 9090),
  keyFile: process.env.NPP_RELAY_KEY ?? './.npp-relay/relay.key',
  listen: [`/ip4/${host}/tcp/0/ws`, `/ip4/${host}/tcp/0`]
})
const site = await serveStatic(out, host, Number(process.env.NPP_WEB_PORT ?? 5173))
console.log(`relay ${relay.peerId} (${relay.httpUrl}/health)`)
const page = (profile: string): string => `${site.url}/?relay=${encodeURIComponent(`${relay.httpUrl}/config`)}&profile=${profile}`
console.log(`\nOpen the demo: ${page('a')}\nand, in another tab, a second peer: ${page('b')}\n(each profile is its own catalog and peer id, kept in this browser; the two become companions. Ctrl-C stops)`)

const stop = (): void => {
  Promise.all([site.close(), relay.stop(), rm(out, { recursive: true, force: true })])
    .then(() => { process.exit(0) }, () => { process.exit(1) })
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
