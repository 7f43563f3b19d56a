/**
 * With `pubsubDiscovery`, peers learn of each other through the discovery
 * topic (usually relayed by a hub); libp2p does not dial what it discovers,
 * so this does, once per peer at a time, bounded by `dialTimeout`. It also
 * keeps the relay's trusted peers linked (`keep`).
 *
 * Which addresses: the peer's direct ones first when this platform can dial
 * them (Node to Node over TCP), then its WebRTC addresses through the relay
 * (browsers, and a browser and a Node peer, meet through the relay and then
 * link directly; and a Node peer's announced TCP address may be its own
 * loopback, useless from another host). A relayed connection alone is not
 * enough: it is limited, and OrbitDB does not sync over limited connections.
 *
 * A WebRTC dial through a relay sometimes stalls on its first attempt (the
 * signalling stream opens but the data channel never does); a stalled or
 * transiently failed attempt is retried at once, up to `WEBRTC_ATTEMPTS`
 * times, each bounded, rather than left to the next announcement. Refusals
 * that would fail the same way again (gater, wrong peer, no usable address)
 * are not retried.
 */
import pRetry from 'p-retry'
import { KEEP_ALIVE } from '@libp2p/interface'
import { repeatingTask, type RepeatingTask } from '@libp2p/utils'
import type { Logger, PeerId, PeerInfo, PeerUpdate } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { deadline } from '../utils/abort.ts'
import { isWebRTC } from '../utils/multiaddr.ts'
import { ExpiringSet } from '../utils/rate-limit.ts'
import type { NppComponents, Startable } from '../components.ts'

/** Discovered peers dialed at once, at most; others wait for their next announcement (or, for kept peers, the next round). */
const MAX_PARALLEL_DIALS = 8
/** After a failed dial the same peer is not tried again for this long (a failure itself updates the peer store). */
const RETRY_AFTER_FAILURE = 5_000
/** Attempts of a WebRTC dial before giving up until the peer's next announcement. */
export const WEBRTC_ATTEMPTS = 3
/** Time limit of the first WebRTC attempt (a healthy one takes well under a second on a LAN); each retry doubles it, never above `dialTimeout`. */
export const WEBRTC_FIRST_ATTEMPT_TIMEOUT = 3_000
/** Errors that the same dial would meet again: not retried. */
const PERMANENT = new Set(['DialDeniedError', 'NoValidAddressesError', 'UnexpectedPeerError', 'InvalidPeerIdError', 'InvalidMultiaddrError', 'InvalidParametersError'])
/** The peer-store tag that keeps the relay's trusted peers linked (libp2p treats every tag starting with `KEEP_ALIVE` so). */
export const TRUSTED_TAG = `${KEEP_ALIVE}-npp-trusted`

export interface AutoDialInit {
  dialTimeout: number
  /** Whether this platform can dial a peer's announced address without a relay or WebRTC. */
  canDialDirectly(addr: Multiaddr): boolean
  /** Dial what pubsub discovery reports (otherwise only kept peers are dialed). @default true */
  dialDiscovered?: boolean
  /** How often kept peers that are not linked are dialed again. @default 10000 */
  keepInterval?: number
  /** Overrides `WEBRTC_FIRST_ATTEMPT_TIMEOUT` (tests). */
  webrtcFirstAttemptTimeout?: number
  /** Overrides the pause after a failed dial, 5 s (tests). */
  retryAfterFailure?: number
}

export type AutoDialComponents = Pick<NppComponents, 'logger'> & {
  libp2p: Pick<NppComponents['libp2p'], 'peerId' | 'dial' | 'getConnections' | 'addEventListener' | 'removeEventListener'> & {
    peerStore?: Pick<NppComponents['libp2p']['peerStore'], 'merge'>
  }
}

export class AutoDial implements Startable {
  private readonly components: AutoDialComponents
  private readonly init: AutoDialInit
  private readonly log: Logger
  private readonly dialing = new Set<string>()
  private readonly failed: ExpiringSet
  /** The newest addresses heard for each peer being dialed: a fallback uses what arrived meanwhile. */
  private readonly latest = new Map<string, Multiaddr[]>()
  private readonly kept = new Map<string, { peer: PeerId, addrs: Multiaddr[] }>()
  private readonly keepTask: RepeatingTask
  private shutdown = new AbortController()
  private started = false
  /** Dials that needed more than one attempt and then succeeded (tests and diagnostics). */
  retriedDials = 0

  constructor (components: AutoDialComponents, init: AutoDialInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('npp:auto-dial')
    this.failed = new ExpiringSet(init.retryAfterFailure ?? RETRY_AFTER_FAILURE, 1024)
    this.keepTask = repeatingTask(() => {
      for (const { peer, addrs } of this.kept.values()) this.consider(peer, addrs)
    }, init.keepInterval ?? 10_000)
  }

  start (): void {
    if (this.started) return
    this.started = true
    this.shutdown = new AbortController()
    if (this.init.dialDiscovered !== false) {
      this.components.libp2p.addEventListener('peer:discovery', this.onDiscovery)
      this.components.libp2p.addEventListener('peer:update', this.onUpdate)
    }
    this.keepTask.start()
  }

  stop (): void {
    if (!this.started) return
    this.started = false
    this.components.libp2p.removeEventListener('peer:discovery', this.onDiscovery)
    this.components.libp2p.removeEventListener('peer:update', this.onUpdate)
    this.keepTask.stop()
    this.shutdown.abort()
  }

  /** Keep `peer` linked: tag it `KEEP_ALIVE` (libp2p redials it when it drops), dial it now and again whenever it is not (the relay's trusted peers). */
  keep (peer: PeerId, addrs: Multiaddr[]): void {
    if (!this.started) return
    this.kept.set(peer.toString(), { peer, addrs })
    this.components.libp2p.peerStore?.merge(peer, { multiaddrs: addrs, tags: { [TRUSTED_TAG]: { value: 100 } } })
      .catch((err: unknown) => { this.log('could not tag trusted peer %p: %e', peer, err) })
    this.consider(peer, addrs)
  }

  private readonly onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    this.consider(evt.detail.id, evt.detail.multiaddrs ?? [])
  }

  // libp2p reports a peer as discovered once; its later announcements (with
  // the relay and WebRTC addresses it gained since) arrive as updates
  private readonly onUpdate = (evt: CustomEvent<PeerUpdate>): void => {
    const peer = evt.detail?.peer
    if (peer == null) return
    this.consider(peer.id, peer.addresses.map(a => a.multiaddr))
  }

  private split (addrs: Multiaddr[]): { direct: Multiaddr[], webrtc: Multiaddr[] } {
    return {
      direct: addrs.filter(m => this.init.canDialDirectly(m)),
      webrtc: addrs.filter(isWebRTC)
    }
  }

  private linked (peer: PeerId): boolean {
    return this.components.libp2p.getConnections(peer).some(c => c.limits == null)
  }

  /** Dial a peer if it is not linked yet (exposed for tests). */
  consider (peer: PeerId, addrs: Multiaddr[]): void {
    if (peer.equals(this.components.libp2p.peerId) || !this.started) return
    const key = peer.toString()
    const { direct, webrtc } = this.split(addrs)
    // nothing this platform can link to (yet): a peer announces before its
    // relay reservation gives it a WebRTC address; wait for the next one
    if (direct.length === 0 && webrtc.length === 0) return
    if (this.dialing.has(key)) {
      this.latest.set(key, addrs) // a pending dial falls back to these
      return
    }
    if (this.linked(peer) || this.failed.has(key) || this.dialing.size >= MAX_PARALLEL_DIALS) return
    this.dialing.add(key)
    this.latest.set(key, addrs)
    this.dial(peer, key)
      .then(how => { this.log('dialed peer %p (%s)', peer, how) }, (err: unknown) => {
        this.failed.add(key)
        this.log('could not dial peer %p: %e', peer, err)
      })
      .finally(() => {
        this.dialing.delete(key)
        this.latest.delete(key)
      })
  }

  /** Direct addresses first (one attempt), then WebRTC (retried); resolves to what worked. */
  private async dial (peer: PeerId, key: string): Promise<string> {
    let lastError: unknown
    const { direct } = this.split(this.latest.get(key) ?? [])
    if (direct.length > 0) {
      try {
        await this.attempt(direct, this.init.dialTimeout, key)
        return 'direct'
      } catch (err) {
        if (this.shutdown.signal.aborted) throw err
        if (this.linked(peer)) return 'dialed us meanwhile'
        lastError = err
        this.log('direct dial to %p failed (%e); trying WebRTC', peer, err)
      }
    }
    const first = Math.min(this.init.webrtcFirstAttemptTimeout ?? WEBRTC_FIRST_ATTEMPT_TIMEOUT, this.init.dialTimeout)
    // a stalled attempt is retried at once (no delay between attempts), each
    // with twice the previous limit; refusals that would repeat are not
    // retried, nor is a peer that dialed us meanwhile
    try {
      return await pRetry(async (attempt) => {
        // addresses that arrived meanwhile (a reservation made later) count
        const { webrtc } = this.split(this.latest.get(key) ?? [])
        if (webrtc.length === 0) throw lastError ?? new Error('no address to dial')
        await this.attempt(webrtc, Math.min(first * 2 ** (attempt - 1), this.init.dialTimeout), key)
        if (attempt > 1) this.retriedDials++
        return `WebRTC, attempt ${attempt}`
      }, {
        retries: WEBRTC_ATTEMPTS - 1,
        minTimeout: 0,
        maxTimeout: 0,
        signal: this.shutdown.signal,
        shouldRetry: ({ error, attemptNumber }) => {
          lastError = error
          if (this.shutdown.signal.aborted || PERMANENT.has(error.name) || this.linked(peer)) return false
          this.log('WebRTC dial to %p failed on attempt %d (%e)', peer, attemptNumber, error)
          return true
        }
      })
    } catch (err) {
      if (!this.shutdown.signal.aborted && this.linked(peer)) return 'dialed us meanwhile'
      throw err
    }
  }

  private async attempt (addrs: Multiaddr[], limit: number, key: string): Promise<void> {
    const bound = deadline(limit, this.shutdown.signal, `dialing peer ${key}`)
    try {
      await this.components.libp2p.dial(addrs, { signal: bound.signal })
    } catch (err) {
      throw bound.signal.aborted ? bound.reason() : err
    } finally {
      bound.clear()
    }
  }
}
