import type { ConnectionGater } from '@libp2p/interface'
import type { Libp2pOptions } from 'libp2p'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { IceServer } from '../types.ts'
import type { LocalLockOptions } from './local-locks.ts'

/** What a platform needs to know to pick its transports. */
export interface TransportOptions {
  /** A relay is configured: be reachable through it (circuit relay v2) and directly over WebRTC. */
  relay: boolean
  /** ICE servers for WebRTC; `[]` (no STUN, host candidates only) unless the caller opts in. */
  iceServers: IceServer[]
  /** The listen addresses: in Node, a WebSocket one adds the WebSockets transport (a keeper that browsers dial). */
  listen?: readonly string[]
}

/**
 * libp2p connection limits of a platform; `peering/crowd.ts` turns them
 * into libp2p's `connectionManager` options and the inbound gate's limits.
 */
export interface ConnectionLimits {
  /** Connections in all; beyond it libp2p refuses inbound ones and prunes. */
  maxConnections: number
  /** Inbound connections still upgrading (encryption, multiplexing), all addresses together. */
  maxPending: number
  /** An inbound connection must finish its upgrade within this long (ms), or it is closed. */
  inboundUpgradeTimeout: number
  /** An inbound connection still upgrading after this long (ms) is dropped when a newcomer needs its slot. */
  stalledAfter: number
}

/** What differs between Node and browsers when a stack is built. */
export interface PlatformDefaults {
  name: 'node' | 'browser'
  /** Listen addresses used when `init.listen` is not given. */
  defaultListen: readonly string[]
  /** Added to the listen addresses when a relay is configured: a reservation on it, and WebRTC through it. */
  relayListen: readonly string[]
  /** The transports, and what to call once the libp2p node using them has stopped. */
  transports(options: TransportOptions): Promise<{ transports: Array<Libp2pOptions['transports'] extends Array<infer T> | undefined ? T : never>, release(): Promise<void> }>
  /** Connection limits (`peersPerAddress` sets the per-address ones). */
  connectionLimits: ConnectionLimits
  /** Whether a multiaddr a peer announced can be dialed directly (not relayed, not WebRTC) from here. */
  canDialDirectly(addr: Multiaddr): boolean
  /** `trusted`: the configured relay and bootstrap addresses, which may be dialed even where the platform's default would refuse them. */
  connectionGater(trusted: readonly string[]): ConnectionGater | undefined
  /**
   * Claim `directory` for this instance until `release()` (safe to call
   * twice). An instance of this process (Node) or tab (browser) holding it is
   * waited for, up to `options.wait` (`DEFAULT_LOCK_WAIT`): it may be
   * stopping. Rejects with `StorageLockedError` when it does not let go in
   * that time, or at once when another process or tab holds it; the message
   * says which.
   */
  lockStorage(directory: string, options?: LocalLockOptions): Promise<{ release(): Promise<void> }>
  /**
   * Whether a LevelDB store (`level`) exists at `path`: a directory with a
   * `CURRENT` file in Node, an IndexedDB database of that name in a browser.
   * Tells a database written before the shared store (its own stores) from a
   * new one.
   */
  storeExists(path: string): Promise<boolean>
}
