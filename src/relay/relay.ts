/**
 * The relay: a small Node service that browsers dial. libp2p with
 * WebSockets (browsers) and TCP (Node peers), a circuit relay v2 server for
 * WebRTC signalling, identify, gossipsub, and the pubsub peer-discovery topic
 * (it runs discovery itself, or browsers would never hear of each other).
 * Its private key persists in a file, so its multiaddrs are stable. A small
 * HTTP API answers `GET /config`, `GET /peers` and `GET /health`.
 */
// first: on a Node that is too old this says so before anything else can fail
import '../platform/node-version.ts'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { readFile, writeFile, mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { pubsubPeerDiscovery, TOPIC } from '@libp2p/pubsub-peer-discovery'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { RelayConfigError, RelayStartError, describe } from '../errors.ts'
import { trailingPeerId, tryMultiaddr, isWebSocket } from '../utils/multiaddr.ts'
import { repeatingTask } from '@libp2p/utils'
import { KEEP_ALIVE } from '@libp2p/interface'
import { logger } from '../utils/logger.ts'
import { crowdConnectionLimits, crowdScoreParams } from '../peering/crowd.ts'
import { inboundGate } from '../peering/inbound-gate.ts'
import { MAX_IDENTIFY_MESSAGE_BYTES } from '../constants.ts'
import type { ConnectionLimits } from '../platform/types.ts'
import { RESERVATION_TTL, reservationKeeper } from './reservations.ts'

const log = logger('relay')

/** Defaults, named so the README and the code agree. */
export const DEFAULT_RELAY_LISTEN: readonly string[] = ['/ip4/127.0.0.1/tcp/0/ws', '/ip4/127.0.0.1/tcp/0']
export const DEFAULT_RELAY_HTTP_HOST = '127.0.0.1'
export const DEFAULT_RELAY_HTTP_PORT = 0
export const DEFAULT_TRUSTED_REDIAL_INTERVAL = 10_000
/** The peer-store tag that keeps trusted peers linked (libp2p treats every tag starting with `KEEP_ALIVE` so). */
const TRUSTED_TAG = `${KEEP_ALIVE}-npp-trusted`
/** Peers that may hold a reservation at once (every browser holds one to be reachable); libp2p's own default is 15. */
export const DEFAULT_MAX_RESERVATIONS = 256
/** Peers expected behind one IP address. */
export const DEFAULT_RELAY_PEERS_PER_ADDRESS = 256
/** A relayed connection is for signalling (WebRTC SDP, discovery): it is closed after this long... */
export const RELAYED_DURATION_LIMIT = 2 * 60_000
/** ...or after this many bytes, whichever comes first. */
export const RELAYED_DATA_LIMIT = 128n * 1024n
export { RESERVATION_TTL }

/**
 * The relay's connection limits. Every reservation holder keeps a
 * connection, and so do Node peers that only meet others through the relay:
 * four connections per reservation, at least 1024 (libp2p's Node default,
 * 300, was reached by 299 connections from one host; issue 10, finding 5).
 * Upgrades as on a Node peer (`NODE_CONNECTION_LIMITS`): 5 s at most, and
 * one still going after 2 s makes room when a newcomer needs it.
 */
export function relayConnectionLimits (maxReservations: number): ConnectionLimits {
  return { maxConnections: Math.max(1024, 4 * maxReservations), maxPending: 1024, inboundUpgradeTimeout: 5_000, stalledAfter: 2_000 }
}

export interface RelayInit {
  /** libp2p listen multiaddrs. @default ['/ip4/127.0.0.1/tcp/0/ws', '/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  /** Extra multiaddrs to announce (a public address behind NAT). @default [] */
  announce?: string[]
  /** Host of the HTTP API. @default '127.0.0.1' */
  httpHost?: string
  /** Port of the HTTP API (0 picks a free one). @default `0` (a free port; the CLI uses `9090`) */
  httpPort?: number
  /**
   * File holding the relay's private key; created when missing. Without it the key is new at every start.
   * @default none (a new key at every start; the CLI uses `new-piece-please/relay.key` in the per-user data directory)
   */
  keyFile?: string
  /** Multiaddrs (with `/p2p/<id>`) of peers the relay keeps dialing and hands to browsers. @default [] */
  trusted?: string[]
  /** How often trusted peers that are not connected are redialed (ms). @default 10000 */
  trustedRedialInterval?: number
  /**
   * Peers that may hold a reservation at once. A reservation lasts
   * `RESERVATION_TTL` (10 min) unless renewed and is given back as soon as
   * its holder disconnects; the relay keeps up to four connections per
   * reservation (at least 1024). @default 256
   */
  maxReservations?: number
  /**
   * Peers expected behind one IP address (a school or conservatory NAT):
   * inbound connections per second and inbound connections still upgrading
   * per address, and gossipsub's IP colocation threshold (libp2p's defaults,
   * 5 per second and 10 pending for everybody, turn a class away); one
   * address may keep twice as many open connections. @default 256
   */
  peersPerAddress?: number
}

export interface RelayConfig {
  peerId: string
  /** All the relay's multiaddrs (with `/p2p/<id>`). */
  multiaddrs: string[]
  /** The WebSocket ones, for browsers. */
  websocket: string[]
  /** The pubsub peer-discovery topic the relay runs. */
  discoveryTopic: string
  /** Trusted peers' multiaddrs. */
  trusted: string[]
}

/**
 * What a service running in the relay's process (the keeper, `npx
 * new-piece-please keeper`) adds to the relay's HTTP API: collaborators
 * handed to `createRelay(init, extension)`, not options.
 */
export interface RelayExtension {
  /** Fields added to `GET /config` (the relay's own fields win over them). */
  config?(): Record<string, unknown>
  /** Fields added to `GET /health` (the relay's own fields win over them). */
  health?(): Record<string, unknown>
  /** The paths `handle` answers, named in the relay's 404 answer. */
  paths?: string[]
  /**
   * Answer a request the relay does not (`/config`, `/peers` and `/health`
   * are the relay's): resolve `true` once answered, `false` to let the relay
   * answer 404 or 405. A rejection is answered 500.
   */
  handle?(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean>
}

export interface Relay {
  readonly peerId: string
  readonly libp2p: Libp2p
  /** Base URL of the HTTP API, e.g. `http://127.0.0.1:9090`. */
  readonly httpUrl: string
  config(): RelayConfig
  stop(): Promise<void>
}

async function loadKey (keyFile: string | undefined): Promise<PrivateKey> {
  if (keyFile == null) return await generateKeyPair('Ed25519')
  let bytes: Buffer
  try {
    bytes = await readFile(keyFile)
  } catch (err: any) {
    if (err?.code !== 'ENOENT') throw new RelayConfigError(`cannot read key file ${keyFile}: ${err?.message ?? err}`)
    const key = await generateKeyPair('Ed25519')
    try {
      await mkdir(dirname(keyFile), { recursive: true })
      await writeFile(keyFile, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
    } catch (err: any) {
      throw new RelayConfigError(`cannot write key file ${keyFile}: ${err?.message ?? err}`)
    }
    log('created a new key in %s', keyFile)
    return key
  }
  try {
    return privateKeyFromProtobuf(new Uint8Array(bytes))
  } catch (err: any) {
    throw new RelayConfigError(`key file ${keyFile} does not hold a libp2p private key: ${err?.message ?? err}`)
  }
}

function checkAddrs (name: string, value: unknown): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || !value.every(v => typeof v === 'string')) throw new RelayConfigError(`expected ${name} to be an array of multiaddr strings, got ${describe(value)}`)
  for (const v of value) {
    if (tryMultiaddr(v) == null) throw new RelayConfigError(`${name}: ${describe(v)} is not a multiaddr`)
  }
  return value
}

async function listenHttp (server: Server, host: string, port: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    const onError = (err: any): void => {
      reject(err?.code === 'EADDRINUSE'
        ? new RelayStartError(`HTTP port ${port} on ${host} is already in use`)
        : new RelayStartError(`cannot listen for HTTP on ${host}:${port}: ${err?.message ?? err}`))
    }
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      const address = server.address()
      resolve(typeof address === 'object' && address != null ? address.port : port)
    })
  })
}

export async function createRelay (init: RelayInit = {}, extension: RelayExtension = {}): Promise<Relay> {
  const listen = init.listen === undefined ? [...DEFAULT_RELAY_LISTEN] : checkAddrs('listen', init.listen)
  const announce = checkAddrs('announce', init.announce)
  const trusted = checkAddrs('trusted', init.trusted)
  for (const t of trusted) {
    // the peer id tells whether it is connected, and lets browsers reach it through this relay
    if (trailingPeerId(t) == null) throw new RelayConfigError(`trusted: ${describe(t)} must end with /p2p/<peer id>`)
  }
  const maxReservations = init.maxReservations ?? DEFAULT_MAX_RESERVATIONS
  if (!Number.isInteger(maxReservations) || maxReservations < 1 || maxReservations > 100_000) throw new RelayConfigError(`expected maxReservations to be an integer from 1 to 100000, got ${describe(maxReservations)}`)
  const peersPerAddress = init.peersPerAddress ?? DEFAULT_RELAY_PEERS_PER_ADDRESS
  if (!Number.isInteger(peersPerAddress) || peersPerAddress < 1 || peersPerAddress > 100_000) throw new RelayConfigError(`expected peersPerAddress to be an integer from 1 to 100000, got ${describe(peersPerAddress)}`)
  const httpHost = init.httpHost ?? DEFAULT_RELAY_HTTP_HOST
  const httpPort = init.httpPort ?? DEFAULT_RELAY_HTTP_PORT
  if (!Number.isInteger(httpPort) || httpPort < 0 || httpPort > 65535) throw new RelayConfigError(`expected httpPort to be a port number, got ${describe(httpPort)}`)
  const privateKey = await loadKey(init.keyFile)

  const limits = crowdConnectionLimits(peersPerAddress, relayConnectionLimits(maxReservations))
  const reservations = reservationKeeper(maxReservations)
  const gate = inboundGate(limits.gate, { denyInboundRelayReservation: reservations.denyInboundRelayReservation })
  let libp2p: Libp2p
  try {
    libp2p = await createLibp2p({
      privateKey,
      addresses: { listen, announce },
      transports: [webSockets(), tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionManager: limits.connectionManager,
      connectionGater: gate,
      peerDiscovery: [pubsubPeerDiscovery()],
      services: {
        identify: identify({ maxMessageSize: MAX_IDENTIFY_MESSAGE_BYTES }),
        pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, scoreParams: crowdScoreParams(peersPerAddress) }),
        relay: circuitRelayServer({
          reservations: {
            maxReservations,
            reservationTtl: RESERVATION_TTL,
            applyDefaultLimit: true,
            defaultDurationLimit: RELAYED_DURATION_LIMIT,
            defaultDataLimit: RELAYED_DATA_LIMIT
          }
        })
      }
    })
  } catch (err: any) {
    throw new RelayStartError(`libp2p could not start: ${err?.message ?? err}`)
  }
  reservations.attach(libp2p, (libp2p.services as any).relay)
  // relay discovery messages between peers even though nobody here reads them
  ;(libp2p.services as any).pubsub.subscribe(TOPIC)

  const config = (): RelayConfig => {
    const multiaddrs = libp2p.getMultiaddrs().map(String)
    return {
      peerId: libp2p.peerId.toString(),
      multiaddrs,
      websocket: libp2p.getMultiaddrs().filter(isWebSocket).map(String),
      discoveryTopic: TOPIC,
      trusted
    }
  }

  const started = Date.now()
  type Send = (status: number, body: unknown) => void
  const relayPaths = ['/config', '/peers', '/health']
  /** The relay's own answers, and 405/404 for what nobody answers. */
  const answer = (req: IncomingMessage, path: string, send: Send): void => {
    if (req.method !== 'GET') { send(405, { error: 'only GET' }); return }
    // the relay's own fields first and unchanged, the extension's after them
    if (path === '/config') { const own = config(); send(200, { ...own, ...extension.config?.(), ...own }); return }
    if (path === '/peers') {
      send(200, libp2p.getConnections().map(c => ({ peerId: c.remotePeer.toString(), addr: c.remoteAddr.toString(), direction: c.direction })))
      return
    }
    if (path === '/health') {
      const held = (libp2p.services as any).relay?.reservations?.size ?? 0
      const { refused, released } = reservations.stats()
      const inbound = gate.stats()
      const own = {
        status: 'ok',
        peerId: libp2p.peerId.toString(),
        connections: libp2p.getConnections().length,
        maxConnections: limits.connectionManager.maxConnections,
        reservations: held,
        maxReservations,
        reservationsRefused: refused,
        reservationsReleased: released,
        inboundRefused: inbound.refused,
        inboundDropped: inbound.dropped,
        uptimeMs: Date.now() - started
      }
      send(200, { ...own, ...extension.health?.(), ...own })
      return
    }
    const paths = [...relayPaths, ...(extension.paths ?? [])]
    send(404, { error: `no ${path}; try ${paths.slice(0, -1).join(', ')} or ${paths.at(-1) ?? ''}` })
  }
  const server = createServer((req, res) => {
    const send: Send = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json', 'access-control-allow-origin': '*', 'cache-control': 'no-store' })
      res.end(JSON.stringify(body))
    }
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    if (relayPaths.includes(path) || extension.handle == null) { answer(req, path, send); return }
    extension.handle(req, res, path).then(handled => {
      if (!handled) answer(req, path, send)
    }, (err: unknown) => {
      log.error('the HTTP handler beside the relay failed on %s %s: %e', req.method, path, err)
      if (!res.headersSent) send(500, { error: 'internal error' })
      else res.destroy()
    })
  })
  let port: number
  try {
    port = await listenHttp(server, httpHost, httpPort)
  } catch (err) {
    await libp2p.stop()
    throw err
  }

  // keep trusted peers connected: tagged KEEP_ALIVE (libp2p redials one that
  // drops) and dialed every trustedRedialInterval while not connected
  const trustedPeers = trusted.map(addr => ({ addr, ma: multiaddr(addr), peer: trailingPeerId(addr) }))
  for (const { ma, peer } of trustedPeers) {
    if (peer != null) await libp2p.peerStore.merge(peer, { multiaddrs: [ma], tags: { [TRUSTED_TAG]: { value: 100 } } }).catch(() => {})
  }
  const dialTrusted = async (): Promise<void> => {
    await Promise.all(trustedPeers.map(async ({ addr, ma, peer }) => {
      if (peer != null && libp2p.getConnections(peer).length > 0) return
      try {
        await libp2p.dial(ma, { signal: AbortSignal.any([shutdown.signal, AbortSignal.timeout(10_000)]) })
      } catch (err) {
        log('trusted peer %s not reachable: %e', addr, err)
      }
    }))
  }
  const shutdown = new AbortController()
  const keepTrusted = repeatingTask(dialTrusted, init.trustedRedialInterval ?? DEFAULT_TRUSTED_REDIAL_INTERVAL, { runImmediately: true })
  if (trustedPeers.length > 0) keepTrusted.start()

  let stopping: Promise<void> | undefined
  const host = httpHost.includes(':') ? `[${httpHost}]` : httpHost
  log('relay %s on %s, HTTP on %s:%d', libp2p.peerId.toString(), config().multiaddrs.join(' '), host, port)
  return {
    peerId: libp2p.peerId.toString(),
    libp2p,
    httpUrl: `http://${host}:${port}`,
    config,
    async stop () {
      stopping ??= (async () => {
        keepTrusted.stop()
        shutdown.abort()
        server.closeAllConnections()
        await new Promise<void>(resolve => server.close(() => { resolve() }))
        await libp2p.stop()
      })()
      await stopping
    }
  }
}
