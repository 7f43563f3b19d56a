/**
 * Browser defaults: WebSockets to reach the relay, circuit relay v2 for
 * signalling, WebRTC for direct browser-to-browser links (no public STUN:
 * `iceServers: []` unless the caller passes some), and a connection gater
 * that lets the configured relay be dialed on `ws://` and private addresses
 * (it is often on a LAN or localhost) but nothing else there (`../gater.ts`). Storage goes through
 * `level`, which is IndexedDB in browsers. Selected by the package.json
 * `browser` field, so Node-only transports are never bundled.
 */
import { webSockets } from '@libp2p/websockets'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { webRTC } from '@libp2p/webrtc'
import type { ConnectionLimits, PlatformDefaults } from './types.ts'
import { RELAY_LISTEN } from '../constants.ts'
import { browserGater } from './browser-gater.ts'
import { StorageLockedError } from '../errors.ts'
import { isWebSocket } from '../utils/multiaddr.ts'
import { logger } from '../utils/logger.ts'
import { claimLocally } from './local-locks.ts'

const log = logger('platform')

/**
 * A browser peer: libp2p's browser cap on connections (100; every WebRTC
 * link is a peer connection, and browsers run out of those). Inbound
 * connections come through the relay or over WebRTC, whose upgrades are
 * slower on a phone: libp2p's 10 s to finish one, and one still going after
 * 5 s makes room when a newcomer needs it.
 */
export const BROWSER_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 100,
  maxPending: 64,
  inboundUpgradeTimeout: 10_000,
  stalledAfter: 5_000
}

export const platform: PlatformDefaults = {
  name: 'browser',
  defaultListen: RELAY_LISTEN,
  relayListen: RELAY_LISTEN,
  transports: async ({ iceServers }) => ({
    transports: [webSockets(), circuitRelayTransport(), webRTC({ rtcConfiguration: { iceServers } })],
    release: async () => {}
  }),
  connectionLimits: BROWSER_CONNECTION_LIMITS,
  // a browser can only dial WebSockets itself; everything else goes through the relay or WebRTC
  canDialDirectly: isWebSocket,
  connectionGater: (trusted) => browserGater(trusted),
  // IndexedDB has no lock of its own: two tabs on one catalog would be the
  // same peer twice. A Web Lock is released when the tab closes or crashes.
  // It cannot say which tab holds it, so the instances of this tab also
  // claim the name in `local-locks`: a start while another instance of this
  // tab is stopping (StrictMode's double mount, hot module reloading) waits
  // for it, and a refusal says whether this page or another tab holds it
  lockStorage: async (directory, options = {}) => {
    const name = `new-piece-please:${directory}`
    const letGo = await claimLocally(name, options, (ms) => new StorageLockedError(`the catalog "${directory}" is open in another instance in this page, which did not stop within ${ms} ms; stop it first (await npp.stop()) or use another directory`))
    const locks = (globalThis.navigator as any)?.locks
    if (locks?.request == null) {
      // insecure contexts (a page on a LAN address over http) have no Web Locks
      log.error('no Web Locks here (an insecure context?): a second tab on "%s" would not be refused', directory)
      return { release: async () => { letGo() } }
    }
    try {
      return await new Promise((resolve, reject) => {
        // the callback runs later (a lock is granted asynchronously), after `held` is set
        const held: Promise<unknown> | undefined = locks.request(name, { ifAvailable: true }, async (lock: unknown) => {
          if (lock == null) {
            reject(new StorageLockedError(`the catalog "${directory}" is open in another tab or window of this site; close it or use another directory`))
            return
          }
          await new Promise<void>(_resolve => {
            // resolves once the lock is really given back, so a start right after a stop finds it free
            resolve({ release: async () => { _resolve(); await held?.catch(() => {}); letGo() } })
          })
        })
        held?.catch(reject)
      })
    } catch (err) {
      letGo()
      throw err
    }
  },
  // browser-level names its IndexedDB database 'level-js-' + the path
  storeExists: async (path) => {
    const idb = globalThis.indexedDB as any
    if (idb == null) return false
    const name = `level-js-${path}`
    if (typeof idb.databases === 'function') return (await listDatabases()).has(name)
    return await openedBefore(idb, name)
  }
}

/**
 * Whether the IndexedDB database `name` exists, where `indexedDB.databases()`
 * is missing (Firefox before 126): opening it asks for an upgrade from
 * version 0 only when it does not, and that upgrade is aborted, so nothing
 * is created.
 */
async function openedBefore (idb: any, name: string): Promise<boolean> {
  return await new Promise<boolean>(resolve => {
    const request = idb.open(name)
    request.onupgradeneeded = (evt: { oldVersion: number }) => {
      if (evt.oldVersion === 0) {
        resolve(false)
        request.transaction?.abort()
      }
    }
    request.onsuccess = () => { request.result?.close(); resolve(true) }
    // the aborted upgrade fails the request: expected, not an error of the page
    request.onerror = (evt: { preventDefault?: () => void }) => { evt.preventDefault?.(); resolve(false) }
    request.onblocked = () => { resolve(true) }
  })
}

let known: Promise<Set<string>> | undefined
/** The IndexedDB databases of this origin, listed once per page: stores are created in it later, but none of the old layout. */
async function listDatabases (): Promise<Set<string>> {
  const listing: Promise<Set<string>> = known ?? (globalThis.indexedDB as any).databases().then((list: Array<{ name?: string }>) => new Set(list.map(d => d.name ?? '')), () => new Set<string>())
  known = listing
  return await listing
}
