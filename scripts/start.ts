/**
 * `npm start`: a keeper beside the relay (one process, as `npx
 * new-piece-please keeper --open` runs them) and the demo page (a production
 * build, served from a temporary directory) on this machine. Prints the URL
 * to open, in two tabs or browsers to see them become companions; the keeper
 * keeps each page's catalog, so one tab finds the other's pieces even after
 * it closes.
 *
 *   NPP_RELAY_HTTP_PORT (default 9090), NPP_WEB_PORT (default 5173),
 *   NPP_HOST (default 127.0.0.1), NPP_RELAY_KEY (default ./.npp-relay/relay.key),
 *   NPP_KEEPER_DIR (default `keeper` beside the relay key: ./.npp-relay/keeper)
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { build } from 'vite'
import { createKeeperServer } from '../src/keeper/server.ts'
import { serveStatic } from './static-server.ts'

const host = process.env.NPP_HOST ?? '127.0.0.1'
const keyFile = process.env.NPP_RELAY_KEY ?? './.npp-relay/relay.key'
const out = await mkdtemp(join(tmpdir(), 'npp-demo-'))
const t0 = performance.now()
await build({ configFile: new URL('../vite.config.ts', import.meta.url).pathname, logLevel: 'warn', build: { outDir: out, emptyOutDir: true } })
console.log(`built the demo page in ${(performance.now() - t0).toFixed(0)} ms`)
const listen = [`/ip4/${host}/tcp/0/ws`, `/ip4/${host}/tcp/0`]
const keeper = await createKeeperServer({
  directory: process.env.NPP_KEEPER_DIR ?? join(dirname(keyFile), 'keeper'),
  // a local demo: keep anyone's catalog (a group's keeper serves an allowlist)
  open: true,
  listen,
  relay: { httpHost: host, httpPort: Number(process.env.NPP_RELAY_HTTP_PORT ?? 9090), keyFile, listen }
})
const site = await serveStatic(out, host, Number(process.env.NPP_WEB_PORT ?? 5173))
const config = `${keeper.httpUrl}/config`
console.log(`keeper ${keeper.peerId} beside relay ${keeper.relay.peerId}, keeping anyone's catalog`)
console.log(`  peers use ${config} (also ${keeper.httpUrl}/catalogs and /health)`)
console.log(`  data in ${keeper.directory}, relay key ${keeper.relayKeyFile} (delete them to start afresh)`)
const page = (profile: string): string => `${site.url}/?relay=${encodeURIComponent(config)}&profile=${profile}`
console.log(`\nOpen the demo: ${page('a')}\nand, in another tab, a second peer: ${page('b')}\n(each profile is its own catalog and peer id, kept in this browser; the two become companions. Ctrl-C stops)`)

const stop = (): void => {
  Promise.all([site.close(), keeper.stop(), rm(out, { recursive: true, force: true })])
    .then(() => { process.exit(0) }, () => { process.exit(1) })
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
