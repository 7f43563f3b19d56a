/**
 * With `pubsubDiscovery`, peers learn of each other through the discovery
 * topic (usually relayed by a hub); libp2p does not dial what it discovers,
 * so this does, once per peer at a time, bounded by `dialTimeout`.
 *
 * Which addresses: the peer's direct ones when this platform can dial them
 * (Node to Node over TCP), else its WebRTC addresses (browsers, and a browser
 * and a Node peer, meet through the relay and then link directly). A relayed
 * connection alone is not enough: it is limited, and OrbitDB does not sync
 * over limited connections.
 *
 * A WebRTC dial through a relay sometimes stalls on its first attempt (the
 * signalling stream opens but the data channel never does); it is retried at
 * once with a fresh attempt, up to `WEBRTC_ATTEMPTS` times, each attempt
 * bounded, rather than left to the next announcement.
 */
import type { PeerId, PeerInfo } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { timeoutSignal } from './abort.ts'
import { logger } from './logger.ts'
import { ExpiringSet } from './rate-limit.ts'
import type { NppLibp2p } from './types.ts'

const log = logger('discovery')

/** Discovered peers dialed at once, at most; others wait for their next announcement. */
const MAX_PARALLEL_DIALS = 8
/** After a failed dial the same peer and kind is not tried again for this long (a failure itself updates the peer store). */
const RETRY_AFTER_FAILURE = 5_000
/** Attempts of a WebRTC dial before giving up until the peer's next announcement. */
export const WEBRTC_ATTEMPTS = 3
/** Time limit of the first WebRTC attempt (a healthy one takes well under a second on a LAN); each retry doubles it, never above `dialTimeout`. */
export const WEBRTC_FIRST_ATTEMPT_TIMEOUT = 3_000

export interface AutoDialOptions {
  dialTimeout: number
  /** Whether this platform can dial a peer's announced address without a relay or WebRTC. */
  canDialDirectly(addr: string): boolean
  /** Overrides `WEBRTC_FIRST_ATTEMPT_TIMEOUT` (tests). */
  webrtcFirstAttemptTimeout?: number
}

type Dialable = Pick<NppLibp2p, 'peerId' | 'dial' | 'getConnections' | 'addEventListener' | 'removeEventListener'>

export class AutoDial {
  private readonly dialing = new Set<string>()
  private readonly failed = new ExpiringSet(RETRY_AFTER_FAILURE, 1024)
  private readonly shutdown = new AbortController()
  private readonly libp2p: Dialable
  private readonly options: AutoDialOptions
  /** Dials that needed more than one attempt and then succeeded (tests and diagnostics). */
  retriedDials = 0

  constructor (libp2p: Dialable, options: AutoDialOptions) {
    this.libp2p = libp2p
    this.options = options
  }

  start (): void {
    this.libp2p.addEventListener('peer:discovery', this.onDiscovery)
    this.libp2p.addEventListener('peer:update', this.onUpdate as any)
  }

  stop (): void {
    this.libp2p.removeEventListener('peer:discovery', this.onDiscovery)
    this.libp2p.removeEventListener('peer:update', this.onUpdate as any)
    this.shutdown.abort()
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

  /** Dial a discovered peer if it is not linked yet (exposed for tests). */
  consider (peer: PeerId, addrs: Multiaddr[]): void {
    if (peer.equals(this.libp2p.peerId) || this.shutdown.signal.aborted) return
    if (addrs.length === 0) return // announced before it had addresses: wait for the next announcement
    const open = this.libp2p.getConnections(peer)
    if (open.some(c => c.limits == null)) return
    const direct = addrs.filter(m => this.options.canDialDirectly(m.toString()))
    const webrtc = addrs.filter(m => m.toString().includes('/webrtc'))
    // nothing this platform can link to yet (a peer announces before its
    // relay reservation gives it a WebRTC address): wait for the next announcement
    if (direct.length === 0 && webrtc.length === 0) return
    const kind = direct.length > 0 ? 'direct' : 'webrtc'
    // one dial per peer and kind at a time: a WebRTC address that arrives
    // while a plain dial is pending is still tried at once
    const key = `${peer.toString()} ${kind}`
    if (this.dialing.has(key) || this.failed.has(key) || this.dialing.size >= MAX_PARALLEL_DIALS) return
    this.dialing.add(key)
    const target = kind === 'direct' ? direct : webrtc
    this.dial(peer, target, kind, key)
      .then(attempts => { log('dialed discovered peer %s (attempt %d)', key, attempts) }, (err: any) => {
        this.failed.add(key)
        log('could not dial discovered peer %s: %s', key, err?.message ?? err)
      })
      .finally(() => { this.dialing.delete(key) })
  }

  private async dial (peer: PeerId, target: Multiaddr[], kind: string, key: string): Promise<number> {
    const attempts = kind === 'webrtc' ? WEBRTC_ATTEMPTS : 1
    let limit = kind === 'webrtc' ? Math.min(this.options.webrtcFirstAttemptTimeout ?? WEBRTC_FIRST_ATTEMPT_TIMEOUT, this.options.dialTimeout) : this.options.dialTimeout
    for (let attempt = 1; ; attempt++) {
      const bounded = timeoutSignal(limit, this.shutdown.signal, `dialing discovered peer ${key}`)
      try {
        await this.libp2p.dial(target, { signal: bounded.signal })
        if (attempt > 1) this.retriedDials++
        return attempt
      } catch (err: any) {
        const linked = this.libp2p.getConnections(peer).some(c => c.limits == null)
        if (attempt >= attempts || this.shutdown.signal.aborted || linked) {
          if (linked) return attempt // the peer dialed us meanwhile
          throw err
        }
        log('WebRTC dial to %s failed on attempt %d (%s); trying again', key, attempt, err?.message ?? err)
        limit = Math.min(limit * 2, this.options.dialTimeout)
      } finally {
        bounded.clear()
      }
    }
  }
}
