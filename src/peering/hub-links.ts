/**
 * Keeps this peer linked to its hubs: the relay and the bootstrap peers the
 * user configured. A hub that is down at start, restarts, or turns a crowd
 * away (too many connections from one address) is dialed again with
 * exponential back-off and jitter for as long as the peer runs, and the
 * instance says when a hub link comes up or goes down (`hub:connected`,
 * `hub:disconnected`).
 *
 * libp2p's own reconnect queue gives up after five attempts (about 30 s), so
 * a relay down for longer was never seen again, and a peer refused once at
 * start (libp2p allows 5 inbound connections per second per host) stayed
 * isolated for good.
 */
import pRetry from 'p-retry'
import delay from 'delay'
import { nextEvent, withDeadline } from '../utils/abort.ts'
import { parseMultiaddr } from '../utils/validate.ts'
import { RelayUnavailableError } from '../errors.ts'
import type { Connection, Logger, PeerId } from '@libp2p/interface'
import type { NppComponents, Startable } from '../components.ts'
import type { HubStatus } from '../types.ts'

/** First pause after a failed dial of a hub; doubles on each failure. */
export const HUB_MIN_DELAY = 500
/** Longest pause between dials of a hub that stays away (plus up to half of it in jitter). */
export const HUB_MAX_DELAY = 10_000
/** Peer-store tag value that keeps hub links out of the connection manager's pruning. */
const HUB_TAG = 'npp-hub'

export interface HubTarget {
  kind: HubStatus['kind']
  /** What the user configured (a multiaddr, or the relay's `/config` URL). */
  configured: string
  /** The multiaddrs to dial; `resolve` fills them when the configured value is a URL. */
  addrs?: string[]
  /** Fetch the addresses to dial (the relay's `/config`); called on each attempt until it succeeds. */
  resolve?: (signal: AbortSignal) => Promise<string[]>
}

export interface HubLinksInit {
  hubs: HubTarget[]
  dialTimeout: number
  /** @default HUB_MIN_DELAY */
  minDelay?: number
  /** @default HUB_MAX_DELAY */
  maxDelay?: number
}

interface Hub extends HubTarget {
  status: HubStatus
}

export type HubLinksComponents = Pick<NppComponents, 'logger' | 'events'> & {
  libp2p: Pick<NppComponents['libp2p'], 'dial' | 'getConnections' | 'addEventListener' | 'removeEventListener'> & {
    peerStore?: Pick<NppComponents['libp2p']['peerStore'], 'merge'>
  }
}

export class HubLinks implements Startable {
  private readonly components: HubLinksComponents
  private readonly init: Required<HubLinksInit>
  private readonly log: Logger
  private readonly hubs: Hub[]
  private shutdown = new AbortController()
  private started = false

  constructor (components: HubLinksComponents, init: HubLinksInit) {
    this.components = components
    this.init = { minDelay: HUB_MIN_DELAY, maxDelay: HUB_MAX_DELAY, ...init }
    this.log = components.logger.forComponent('npp:hub-links')
    this.hubs = init.hubs.map(h => ({ ...h, status: { kind: h.kind, configured: h.configured, connected: false, since: Date.now(), failedDials: 0 } }))
  }

  /** Every hub and its link, as of now. */
  status (): HubStatus[] {
    return this.hubs.map(h => ({ ...h.status }))
  }

  /**
   * One attempt at each relay hub, awaited (`requireRelay`): rejects with
   * `RelayUnavailableError` when one cannot be reached within `dialTimeout`.
   */
  async require (): Promise<void> {
    for (const hub of this.hubs.filter(h => h.kind === 'relay')) {
      try {
        await this.dialOnce(hub, this.shutdown.signal)
      } catch (err) {
        if (err instanceof RelayUnavailableError) throw err
        throw new RelayUnavailableError(`cannot reach the relay ${hub.configured}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
      }
    }
  }

  start (): void {
    if (this.started) return
    this.started = true
    this.shutdown = new AbortController()
    for (const hub of this.hubs) {
      this.keepLinked(hub, this.shutdown.signal).catch((err: unknown) => {
        if (!this.shutdown.signal.aborted) this.log.error('stopped keeping %s linked - %e', hub.configured, err)
      })
    }
  }

  stop (): void {
    if (!this.started) return
    this.started = false
    this.shutdown.abort()
  }

  /** Dial `hub` until linked, wait until the link drops, and again, until stopped. */
  private async keepLinked (hub: Hub, signal: AbortSignal): Promise<void> {
    const { minDelay, maxDelay } = this.init
    while (!signal.aborted) {
      const connection = await pRetry(async () => await this.dialOnce(hub, signal), {
        retries: Number.POSITIVE_INFINITY,
        factor: 2,
        minTimeout: minDelay,
        maxTimeout: maxDelay,
        signal,
        onFailedAttempt: async ({ error, attemptNumber }) => {
          hub.status.failedDials++
          hub.status.lastError = error.message
          this.log('hub %s unreachable (attempt %d) - %s', hub.configured, attemptNumber, error.message)
          // the first failure after start or after a drop is news: the app can say the hub is away and why
          if (hub.status.failedDials === 1) this.components.events.safeDispatchEvent('hub:disconnected', { detail: { ...hub.status } })
          // jitter, so that a crowd does not come back to a restarted hub in step
          await delay(Math.random() * Math.min(maxDelay, minDelay * 2 ** (attemptNumber - 1)) / 2, { signal })
        }
      })
      const peer = connection.remotePeer
      this.changed(hub, true, peer)
      await this.disconnected(peer, signal)
      if (signal.aborted) return
      this.changed(hub, false, peer)
    }
  }

  /** One dial of `hub` (its config resolved first when needed), bounded by `dialTimeout`. */
  private async dialOnce (hub: Hub, signal: AbortSignal): Promise<Connection> {
    return await withDeadline(this.init.dialTimeout, signal, `dialing ${hub.configured}`, async (bounded) => {
      if (hub.addrs == null || hub.addrs.length === 0) {
        if (hub.resolve == null) throw new RelayUnavailableError(`${hub.configured} has no address to dial`)
        hub.addrs = await hub.resolve(bounded)
      }
      const addrs = hub.addrs.map(parseMultiaddr)
      // several addresses of one peer are one dial; otherwise the first that answers
      if (addrs.length === 1) return await this.components.libp2p.dial(addrs[0]!, { signal: bounded })
      try {
        return await Promise.any(addrs.map(async a => await this.components.libp2p.dial(a, { signal: bounded })))
      } catch (err) {
        throw err instanceof AggregateError && err.errors[0] instanceof Error ? err.errors[0] : err
      }
    })
  }

  private async disconnected (peer: PeerId, signal: AbortSignal): Promise<void> {
    const { libp2p } = this.components
    const gone = nextEvent<PeerId>(libp2p as unknown as EventTarget, 'peer:disconnect', p => p.equals(peer), signal)
    if (libp2p.getConnections(peer).length === 0) {
      gone.catch(() => {})
      return
    }
    await gone.catch(() => {})
  }

  private changed (hub: Hub, connected: boolean, peer: PeerId): void {
    const { events, libp2p } = this.components
    hub.status = { ...hub.status, peerId: peer.toString(), connected, since: Date.now(), ...(connected ? { failedDials: 0, lastError: undefined } : {}) }
    this.log('hub %s %s (%p)', hub.configured, connected ? 'linked' : 'lost', peer)
    if (connected) {
      libp2p.peerStore?.merge(peer, { tags: { [HUB_TAG]: { value: 100 } } }).catch((err: unknown) => { this.log.error('could not tag hub %p - %e', peer, err) })
    }
    events.safeDispatchEvent(connected ? 'hub:connected' : 'hub:disconnected', { detail: { ...hub.status } })
  }
}
