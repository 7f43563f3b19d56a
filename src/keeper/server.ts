/**
 * The keeper service of `npx new-piece-please keeper`: a relay and a keeper
 * in one process, so a small group runs one always-on service.
 *
 * - the relay (`createRelay`), with its options and HTTP API; its `/config`
 *   gains `keepers`, the keeper's multiaddrs (TCP for Node peers, WebSockets
 *   for browsers), so the one URL peers take as `relay` also gives them the
 *   keeper;
 * - a `NewPiecePlease` run as a keeper (`init.keeper`), listening on TCP and
 *   WebSockets, its peer id and replicas in `<directory>/node`;
 * - the allowlist and the unlisted peers in `<directory>/keeper.json`
 *   (saved at every change, atomically: see `./state.ts`), the admin token
 *   in `<directory>/admin-token`, the relay's key in `<directory>/relay.key`;
 * - the keeper's HTTP endpoints (`./http.ts`) on the relay's server, and
 *   its replica counts and storage in `/health`.
 *
 * Everything it keeps is under one directory: stop it and copy the
 * directory to back it up.
 */
import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createRelay, relayConnectionLimits, DEFAULT_MAX_RESERVATIONS, DEFAULT_RELAY_LISTEN, DEFAULT_RELAY_PEERS_PER_ADDRESS, type Relay, type RelayConfig, type RelayInit } from '../relay/relay.ts'
import { createNewPiecePlease, type NewPiecePlease } from '../new-piece-please.ts'
import { crowdConnectionLimits } from '../peering/crowd.ts'
import { platform } from '../platform/node.ts'
import { DEFAULT_PEERS_PER_ADDRESS, MAX_COMPANIONS } from '../constants.ts'
import { describe } from '../errors.ts'
import { logger } from '../utils/logger.ts'
import { DEFAULT_KEEPER_IDLE_TIMEOUT, DEFAULT_MAX_BYTES, DEFAULT_MAX_BYTES_PER_USER, DEFAULT_MAX_PIECES_PER_USER, type KeeperService, type KeeperServiceInit } from './keeper.ts'
import { KeeperConfigError } from './errors.ts'
import { keeperHttp } from './http.ts'
import { STATE_FILE_NAME, TOKEN_FILE_NAME, StateFile, canonicalPeerId, loadToken, readState } from './state.ts'

const log = logger('keeper:server')

export const RELAY_KEY_FILE_NAME = 'relay.key'
/** The keeper node's own directory (its peer id, replicas, OrbitDB keystore), under the keeper's. */
export const NODE_DIR_NAME = 'node'
export const DEFAULT_KEEPER_USERNAME = 'keeper'

/** Who the keeper serves and its quotas, as `KeeperServiceInit` has them (`allow` is added to the allowlist saved in `keeper.json`). */
export type KeeperPolicy = Pick<KeeperServiceInit, 'allow' | 'open' | 'maxUsers' | 'maxPiecesPerUser' | 'maxBytesPerUser' | 'maxBytes' | 'idleTimeout'>

export interface KeeperServerInit extends KeeperPolicy {
  /** The folder holding everything the keeper keeps (created when missing). */
  directory: string
  /**
   * The relay's options. `keyFile` defaults to `relay.key` in `directory`.
   *
   * @default {}
   */
  relay?: RelayInit
  /**
   * The keeper node's listen addresses: TCP for Node peers, WebSockets for
   * browsers.
   *
   * @default the relay's listen addresses with free ports (`tcp/0`)
   */
  listen?: string[]
  /**
   * Addresses the keeper node announces instead (and `/config` lists): a
   * public address or DNS name when it listens behind NAT.
   *
   * @default [] (its listen addresses)
   */
  announce?: string[]
  /** The keeper node's username (its own profile). @default 'keeper' */
  username?: string
}

/** The relay's `/config`, with the keeper's multiaddrs. */
export interface KeeperConfig extends RelayConfig {
  keepers: string[]
}

export interface KeeperServer {
  /** The keeper node's peer id. */
  readonly peerId: string
  readonly directory: string
  /** The admin token's file (mode 0600). */
  readonly tokenFile: string
  /** Whether the token was created by this start. */
  readonly tokenCreated: boolean
  readonly stateFile: string
  readonly relayKeyFile: string
  /** Base URL of the HTTP API, e.g. `http://127.0.0.1:9090`. */
  readonly httpUrl: string
  readonly relay: Relay
  readonly node: NewPiecePlease
  readonly service: KeeperService
  config(): KeeperConfig
  /** Serve `peerId` and save the allowlist. Idempotent: `changed` says whether it was new. */
  allow(peerId: string): Promise<{ changed: boolean }>
  /** Stop serving `peerId`, drop what is kept of it, save. Idempotent. */
  deny(peerId: string): Promise<{ changed: boolean, dropped: boolean }>
  /** Safe to call twice. */
  stop(): Promise<void>
}

/**
 * Files a keeper holds open beside its connections: its LevelDB stores (43
 * open files in all for a 500-user keeper since every database shares one
 * store, bench/RESULTS.md; a few more as the stores grow tables), the HTTP
 * API's clients, Node's own pipes and event loop.
 */
export const FILES_BESIDE_CONNECTIONS = 256

/**
 * Open files a keeper may hold with its connections at their caps. Every
 * connection is a socket, and so is every inbound one still upgrading: the
 * relay's open and pending ones (1,024 and 1,024 by default, more with
 * `maxReservations` or `peersPerAddress`), the keeper node's (300 and 256:
 * kept users and their peers dial it), and `FILES_BESIDE_CONNECTIONS`;
 * 2,860 with the defaults. A process whose open-file limit is lower
 * (`ulimit -n 1024`, or a hard limit of 1,024 from limits.conf or a
 * container: Node raises a lower soft limit to the hard one itself) runs out
 * of file descriptors before libp2p refuses anything: new connections fail
 * at accept (EMFILE) and a store that opens then fails.
 */
export function openFilesWanted (relay: RelayInit = {}): number {
  const relayLimits = crowdConnectionLimits(relay.peersPerAddress ?? DEFAULT_RELAY_PEERS_PER_ADDRESS, relayConnectionLimits(relay.maxReservations ?? DEFAULT_MAX_RESERVATIONS))
  // the keeper node takes the relay's peersPerAddress (see createKeeperServer)
  const nodeLimits = crowdConnectionLimits(relay.peersPerAddress ?? DEFAULT_PEERS_PER_ADDRESS, platform.connectionLimits)
  return (relayLimits.connectionManager.maxConnections ?? 0) + relayLimits.gate.maxPending +
    (nodeLimits.connectionManager.maxConnections ?? 0) + nodeLimits.gate.maxPending +
    FILES_BESIDE_CONNECTIONS
}

function quota (name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new KeeperConfigError(`expected ${name} to be a positive integer, got ${describe(value)}`)
  return value
}

/** `addrs` on free ports: the keeper listens where the relay does, on ports of its own. */
export function freePorts (addrs: readonly string[]): string[] {
  return addrs.map(a => a.replace(/\/tcp\/\d+/, '/tcp/0'))
}

export async function createKeeperServer (init: KeeperServerInit): Promise<KeeperServer> {
  if (typeof init.directory !== 'string' || init.directory.length === 0) throw new KeeperConfigError(`expected directory to be a path, got ${describe(init.directory)}`)
  const directory = resolve(init.directory)
  const quotas = {
    maxUsers: quota('maxUsers', init.maxUsers, MAX_COMPANIONS),
    maxPiecesPerUser: quota('maxPiecesPerUser', init.maxPiecesPerUser, DEFAULT_MAX_PIECES_PER_USER),
    maxBytesPerUser: quota('maxBytesPerUser', init.maxBytesPerUser, DEFAULT_MAX_BYTES_PER_USER),
    maxBytes: quota('maxBytes', init.maxBytes, DEFAULT_MAX_BYTES),
    idleTimeout: quota('idleTimeout', init.idleTimeout, DEFAULT_KEEPER_IDLE_TIMEOUT)
  }
  if (init.open !== undefined && typeof init.open !== 'boolean') throw new KeeperConfigError(`expected open to be true or false, got ${describe(init.open)}`)
  if (init.allow !== undefined && !Array.isArray(init.allow)) throw new KeeperConfigError(`expected allow to be an array of peer ids, got ${describe(init.allow)}`)
  const allowAtStart = (init.allow ?? []).map(id => {
    try {
      return canonicalPeerId(id)
    } catch (err: any) {
      throw new KeeperConfigError(`allow: ${String(err?.message ?? err)}`)
    }
  })
  const relayInit: RelayInit = { ...init.relay, keyFile: init.relay?.keyFile ?? join(directory, RELAY_KEY_FILE_NAME) }
  const listen = init.listen ?? freePorts(relayInit.listen ?? DEFAULT_RELAY_LISTEN)

  try {
    await mkdir(directory, { recursive: true, mode: 0o700 })
  } catch (err: any) {
    throw new KeeperConfigError(`cannot create the keeper's directory ${directory}: ${String(err?.message ?? err)}`)
  }
  const stateFile = join(directory, STATE_FILE_NAME)
  const tokenFile = join(directory, TOKEN_FILE_NAME)
  const saved = await readState(stateFile)
  const { token, created: tokenCreated } = await loadToken(tokenFile)

  const node = await createNewPiecePlease({
    directory: join(directory, NODE_DIR_NAME),
    listen,
    announce: init.announce,
    username: init.username ?? DEFAULT_KEEPER_USERNAME,
    peersPerAddress: relayInit.peersPerAddress,
    // --allow at start takes a peer off the denied list, as `keeper allow` does
    keeper: { allow: [...new Set([...saved.allow, ...allowAtStart])], unlisted: saved.unlisted, deny: (saved.deny ?? []).filter(id => !allowAtStart.includes(id)), open: init.open ?? false, ...quotas }
  })
  const service = node.keeperService as KeeperService
  const state = new StateFile(stateFile, () => ({ allow: service.allowlist(), unlisted: service.unlistedPeers(), deny: service.deniedPeers() }))
  // a registration is answered once its unlisted flag is saved (the listener's promise)
  const unwatch = service.onChange(async () => {
    await state.save().catch((err: unknown) => { log.error('could not save the allowlist: %e', err) })
  })

  const allow = async (peerId: string): Promise<{ changed: boolean }> => {
    const changed = !service.allowlist().includes(peerId) || service.deniedPeers().includes(peerId)
    service.allow(peerId)
    await state.save()
    return { changed }
  }
  const deny = async (peerId: string): Promise<{ changed: boolean, dropped: boolean }> => {
    const changed = service.allowlist().includes(peerId) || !service.deniedPeers().includes(peerId)
    const dropped = service.kept().some(k => k.peerId === peerId)
    await service.deny(peerId)
    await state.save()
    return { changed, dropped }
  }

  let relay: Relay
  try {
    // the file says who is served now (the --allow ones included) from the first moment
    await state.save()
    relay = await createRelay(relayInit, {
      config: () => ({ keepers: node.getMultiaddrs() }),
      health: () => ({
        keeper: {
          peerId: node.peerId,
          ...service.storage(),
          allowlisted: service.allowlist().length,
          open: init.open ?? false,
          connections: node.libp2p.getConnections().length,
          ...quotas
        }
      }),
      ...keeperHttp({ kept: () => service.kept(), allow, deny }, { token })
    })
  } catch (err) {
    unwatch()
    await state.flush()
    await node.stop()
    throw err
  }

  let stopping: Promise<void> | undefined
  log('keeper %s beside relay %s, HTTP on %s, data in %s', node.peerId, relay.peerId, relay.httpUrl, directory)
  return {
    peerId: node.peerId,
    directory,
    tokenFile,
    tokenCreated,
    stateFile,
    relayKeyFile: relayInit.keyFile as string,
    httpUrl: relay.httpUrl,
    relay,
    node,
    service,
    config: () => ({ ...relay.config(), keepers: node.getMultiaddrs() }),
    allow: async (peerId) => await allow(canonicalPeerId(peerId)),
    deny: async (peerId) => await deny(canonicalPeerId(peerId)),
    async stop () {
      stopping ??= (async () => {
        await relay.stop()
        unwatch()
        await state.flush()
        await node.stop()
      })()
      await stopping
    }
  }
}
