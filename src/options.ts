/**
 * `NewPiecePleaseInit` checked and completed with its defaults, once, when
 * the instance is constructed: a bad option throws `InvalidOptionError`
 * naming what was received, before anything starts.
 */
import { platform } from './platform/node.ts'
import { checkRelayOption } from './peering/relay-client.ts'
import { InvalidOptionError, describe } from './errors.ts'
import { trailingPeerId } from './utils/multiaddr.ts'
import { assertProfileValue, positiveInteger, stringList, iceServerList } from './utils/validate.ts'
import {
  DEFAULT_DIRECTORY, DEFAULT_RECONNECT_INTERVAL, DEFAULT_QUERY_TIMEOUT,
  DEFAULT_DISCOVERY_TIMEOUT, DEFAULT_DIAL_TIMEOUT, DEFAULT_PEERS_PER_ADDRESS, DEFAULT_MAX_INTRODUCED
} from './constants.ts'
import type { IceServer, NewPiecePleaseInit } from './types.ts'

/** Every option with its default applied (`helia` and `orbitdb` stay in the init). */
export interface ResolvedOptions {
  directory: string
  storage: 'persistent' | 'memory'
  listen: string[]
  announce: string[]
  bootstrap: string[]
  reconnectInterval: number
  queryTimeout: number
  discoveryTimeout: number
  dialTimeout: number
  username?: string
  pubsubDiscovery: boolean
  relay?: string
  requireRelay: boolean
  peersPerAddress: number
  iceServers: IceServer[]
  keepers: string[]
  listed: boolean
  maxIntroduced: number
}

function booleanOption (name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new InvalidOptionError(`expected ${name} to be true or false, got ${describe(value)}`)
  return value
}

function countOption (name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 100_000) throw new InvalidOptionError(`expected ${name} to be an integer from 1 to 100000, got ${describe(value)}`)
  return value
}

/** Companions taken from keepers at most: 0 takes none. */
function maxIntroducedOption (value: unknown): number {
  if (value === undefined) return DEFAULT_MAX_INTRODUCED
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 100_000) throw new InvalidOptionError(`expected maxIntroduced to be an integer from 0 to 100000, got ${describe(value)}`)
  return value
}

/** Keepers are multiaddrs naming their peer (`/p2p/<id>`): the peer id is who is asked. */
function keeperList (value: unknown): string[] {
  const list = stringList('keepers', value, [])
  for (const addr of list) {
    if (trailingPeerId(addr) == null) throw new InvalidOptionError(`expected each keeper to be a multiaddr ending in /p2p/<peer id>, got ${describe(addr)}`)
  }
  return list
}

export function resolveOptions (init: NewPiecePleaseInit): ResolvedOptions {
  if (init == null || typeof init !== 'object') throw new InvalidOptionError(`expected an options object, got ${describe(init)}`)
  const storage = init.storage ?? 'persistent'
  if (storage !== 'persistent' && storage !== 'memory') throw new InvalidOptionError(`expected storage to be 'persistent' or 'memory', got ${describe(storage)}`)
  if (init.directory !== undefined && (typeof init.directory !== 'string' || init.directory.length === 0)) {
    throw new InvalidOptionError(`expected directory to be a non-empty string, got ${describe(init.directory)}`)
  }
  if (init.username !== undefined) assertProfileValue('username', init.username)
  return {
    directory: init.directory ?? DEFAULT_DIRECTORY,
    storage,
    listen: stringList('listen', init.listen, platform.defaultListen),
    announce: stringList('announce', init.announce, []),
    bootstrap: stringList('bootstrap', init.bootstrap, []),
    reconnectInterval: positiveInteger('reconnectInterval', init.reconnectInterval, DEFAULT_RECONNECT_INTERVAL),
    queryTimeout: positiveInteger('queryTimeout', init.queryTimeout, DEFAULT_QUERY_TIMEOUT),
    discoveryTimeout: positiveInteger('discoveryTimeout', init.discoveryTimeout, DEFAULT_DISCOVERY_TIMEOUT),
    dialTimeout: positiveInteger('dialTimeout', init.dialTimeout, DEFAULT_DIAL_TIMEOUT),
    username: init.username,
    pubsubDiscovery: init.pubsubDiscovery ?? init.relay !== undefined,
    relay: checkRelayOption(init.relay),
    requireRelay: booleanOption('requireRelay', init.requireRelay, false),
    peersPerAddress: countOption('peersPerAddress', init.peersPerAddress, DEFAULT_PEERS_PER_ADDRESS),
    iceServers: iceServerList(init.iceServers),
    keepers: keeperList(init.keepers),
    listed: booleanOption('listed', init.listed, true),
    maxIntroduced: maxIntroducedOption(init.maxIntroduced)
  }
}
