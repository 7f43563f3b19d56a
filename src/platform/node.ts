/**
 * Node defaults: TCP transport (WebSockets too when a listen address is
 * one), LevelDB storage under `directory`. With a relay configured, also
 * circuit relay v2 and WebRTC (through
 * `node-datachannel`), so browsers that meet this peer at the relay can link
 * to it directly; those are loaded only then. The browser build swaps this
 * module for `./browser.ts` (package.json `browser` field), so nothing here
 * is bundled for web apps.
 */
import { resolve } from 'node:path'
import { access } from 'node:fs/promises'
import { tcp } from '@libp2p/tcp'
import type { ConnectionLimits, PlatformDefaults } from './types.ts'
import { DEFAULT_LISTEN, RELAY_LISTEN } from '../constants.ts'
import { logger } from '../utils/logger.ts'
import { joinPath } from '../utils/path.ts'
import { StorageLockedError } from '../errors.ts'
import { isTcp, isWebSocket, tryMultiaddr } from '../utils/multiaddr.ts'
import { claimLocally } from './local-locks.ts'

const log = logger('platform')

/**
 * Stacks in this process running WebRTC. A native peer connection whose
 * remote vanished (a closed tab) can outlive libp2p's close and keep the
 * process alive; when the last of our WebRTC stacks stops, node-datachannel's
 * `cleanup()` releases what is left (it closes every node-datachannel peer
 * connection in the process, so only when none of ours runs).
 */
let webrtcStacks = 0

/**
 * A Node peer: libp2p's Node cap on connections (300). An inbound upgrade
 * (noise, then yamux) takes milliseconds on a LAN and a few round trips
 * across the internet: libp2p allows 10 s; 5 s here, and one still going
 * after 2 s makes room when a newcomer needs it (a slowloris held libp2p's
 * slots for the whole 10 s; issue 10, finding 5). A pending connection
 * costs a socket and a handshake state: 256 at once is cheap.
 */
export const NODE_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 300,
  maxPending: 256,
  inboundUpgradeTimeout: 5_000,
  stalledAfter: 2_000
}

export const platform: PlatformDefaults = {
  name: 'node',
  defaultListen: DEFAULT_LISTEN,
  relayListen: RELAY_LISTEN,
  transports: async ({ relay, iceServers, listen = [] }) => {
    // WebSockets only when asked to listen on them (a keeper, which browsers dial directly)
    const websockets = listen.some(addr => { const ma = tryMultiaddr(addr); return ma != null && isWebSocket(ma) })
    const direct = [tcp(), ...(websockets ? [(await import('@libp2p/websockets')).webSockets()] : [])]
    if (!relay) return { transports: direct, release: async () => {} }
    const [{ circuitRelayTransport }, { webRTC }, { cleanup }] = await Promise.all([import('@libp2p/circuit-relay-v2'), import('@libp2p/webrtc'), import('node-datachannel')])
    webrtcStacks++
    let released = false
    return {
      transports: [...direct, circuitRelayTransport(), webRTC({ rtcConfiguration: { iceServers } })],
      release: async () => {
        if (released) return
        released = true
        // no await between the count and the cleanup: a stack starting now
        // either counted already (no cleanup) or starts after it
        if (--webrtcStacks > 0) return
        cleanup()
        log('released WebRTC resources (node-datachannel cleanup)')
      }
    }
  },
  connectionLimits: NODE_CONNECTION_LIMITS,
  // TCP, not WebSockets (Node peers do not listen on them by default) and not through a relay
  canDialDirectly: isTcp,
  connectionGater: () => undefined,
  // a tiny LevelDB beside the data: its LOCK is an OS lock, released even
  // when the holder is killed, and it says clearly who failed and why. It
  // cannot tell this process from another (LEVEL_LOCKED either way), so the
  // instances of this process also claim the directory in `local-locks`: a
  // start while another instance here is stopping waits for it
  lockStorage: async (directory, options = {}) => {
    const { Level } = await import('level')
    const letGo = await claimLocally(resolve(directory), options, (ms) => new StorageLockedError(`${directory} is in use by another instance in this process, which did not stop within ${ms} ms; stop it first (await npp.stop()) or use another directory`))
    const db = new Level(joinPath(directory, 'instance-lock'))
    try {
      await db.open()
    } catch (err: any) {
      letGo()
      if (err?.cause?.code === 'LEVEL_LOCKED') throw new StorageLockedError(`${directory} is in use by a new-piece-please instance in another process; stop it or use another directory`)
      throw err
    }
    let released: Promise<void> | undefined
    return { release: async () => { released ??= db.close().finally(letGo); await released } }
  },
  storeExists: async (path) => {
    try {
      await access(joinPath(path, 'CURRENT'))
      return true
    } catch {
      return false
    }
  }
}
