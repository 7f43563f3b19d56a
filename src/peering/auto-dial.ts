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
import type { PeerId, PeerInfo } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { timeoutSignal } from '../utils/abort.ts'
import { logger } from '../utils/logger.ts'
import { ExpiringSet } from '../utils/rate-limit.ts'
import type { NppLibp2p } from '../types.ts'

const log = logger('discovery')

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

export interface AutoDialOptions {
  dialTimeout: number
  /** Whether this platform can dial a peer's announced address without a relay or WebRTC. */
  canDialDirectly(addr: string): boolean
  /** How often kept peers that are not linked are dialed again. @default 10000 */
  keepInterval?: number
  /** Overrides `WEBRTC_FIRST_ATTEMPT_TIMEOUT` (tests). */
  webrtcFirstAttemptTimeout?: number
  /** Overrides the pause after a failed dial, 5 s (tests). */
  retryAfterFailure?: number
}

type Dialable = Pick<NppLibp2p, 'peerId' | 'dial' | 'getConnections' | 'addEventListener' | 'removeEventListener'>

export class AutoDial {
  private readonly dialing = new Set<string>()
  private readonly failed: ExpiringSet
  /** The newest addresses heard for each peer being dialed: a fallback uses what arrived meanwhile. */
  private readonly latest = new Map<string, Multiaddr[]>()
  private readonly kept = new Map<string, { peer: PeerId, addrs: Multiaddr[] }>()
  private readonly shutdown = new AbortController()
  private readonly libp2p: Dialable
  private readonly options: AutoDialOptions
  private timer: ReturnType<typeof setInterval> | undefined
  /** Dials that needed more than one attempt and then succeeded (tests and diagnostics). */
  retriedDials = 0

  constructor (libp2p: Dialable, options: AutoDialOptions) {
    this.libp2p = libp2p
    this.options = options
    this.failed = new ExpiringSet(options.retryAfterFailure ?? RETRY_AFTER_FAILURE, 1024)
  }

  /** Dial what pubsub discovery reports. */
  start (): void {
    this.libp2p.addEventListener('peer:discovery', this.onDiscovery)
    this.libp2p.addEventListener('peer:update', this.onUpdate as any)
  }

  stop (): void {
    this.libp2p.removeEventListener('peer:discovery', this.onDiscovery)
    this.libp2p.removeEventListener('peer:update', this.onUpdate as any)
    if (this.timer != null) clearInterval(this.timer)
    this.timer = undefined
    this.shutdown.abort()
  }

  /** Keep `peer` linked: dial it now and again whenever it is not (the relay's trusted peers). */
  keep (peer: PeerId, addrs: Multiaddr[]): void {
    if (this.shutdown.signal.aborted) return
    this.kept.set(peer.toString(), { peer, addrs })
    this.timer ??= setInterval(() => {
      for (const { peer, addrs } of this.kept.values()) this.consider(peer, addrs)
    }, this.options.keepInterval ?? 10_000)
    this.consider(peer, addrs)
  }

  private readonly onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    this.consider(evt.detail.id, evt.detail.multiaddrs ?? [])
  }

  // libp2p reports a peer as discovered once; its later announcements (with
  // the relay and WebRTC addresses it gained since) arrive as updates
  private readonly onUpdate = (evt: CustomEvent<{ peer: { id: PeerId, addresses: Array<{ multiaddr: Multiaddr }> } }>): void => {
    const peer = evt.detail?.peer
    if (peer == null) return
    this.consider(peer.id, peer.addresses.map(a => a.multiaddr))
  }

  private split (addrs: Multiaddr[]): { direct: Multiaddr[], webrtc: Multiaddr[] } {
    return {
      direct: addrs.filter(m => this.options.canDialDirectly(m.toString())),
      webrtc: addrs.filter(m => m.toString().includes('/webrtc'))
    }
  }

  private linked (peer: PeerId): boolean {
    return this.libp2p.getConnections(peer).some(c => c.limits == null)
  }

  /** Dial a peer if it is not linked yet (exposed for tests). */
  consider (peer: PeerId, addrs: Multiaddr[]): void {
    if (peer.equals(this.libp2p.peerId) || this.shutdown.signal.aborted) return
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
      .then(how => { log('dialed peer %s (%s)', key, how) }, (err: any) => {
        this.failed.add(key)
        log('could not dial peer %s: %s', key, err?.message ?? err)
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
        await this.attempt(direct, this.options.dialTimeout, key)
        return 'direct'
      } catch (err) {
        if (this.shutdown.signal.aborted) throw err
        if (this.linked(peer)) return 'dialed us meanwhile'
        lastError = err
        log('direct dial to %s failed (%s); trying WebRTC', key, (err as any)?.message ?? err)
      }
    }
    let limit = Math.min(this.options.webrtcFirstAttemptTimeout ?? WEBRTC_FIRST_ATTEMPT_TIMEOUT, this.options.dialTimeout)
    for (let attempt = 1; attempt <= WEBRTC_ATTEMPTS; attempt++) {
      // addresses that arrived meanwhile (a reservation made later) count
      const { webrtc } = this.split(this.latest.get(key) ?? [])
      if (webrtc.length === 0) break
      try {
        await this.attempt(webrtc, limit, key)
        if (attempt > 1) this.retriedDials++
        return `WebRTC, attempt ${attempt}`
      } catch (err: any) {
        if (this.shutdown.signal.aborted) throw err
        if (this.linked(peer)) return 'dialed us meanwhile'
        lastError = err
        if (PERMANENT.has(err?.name)) break
        log('WebRTC dial to %s failed on attempt %d (%s)', key, attempt, err?.message ?? err)
        limit = Math.min(limit * 2, this.options.dialTimeout)
      }
    }
    throw lastError ?? new Error('no address to dial')
  }

  private async attempt (addrs: Multiaddr[], limit: number, key: string): Promise<void> {
    const bounded = timeoutSignal(limit, this.shutdown.signal, `dialing peer ${key}`)
    try {
      await this.libp2p.dial(addrs, { signal: bounded.signal })
    } finally {
      bounded.clear()
    }
  }
}
