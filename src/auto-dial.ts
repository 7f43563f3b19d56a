/**
 * With `pubsubDiscovery`, peers learn of each other through the discovery
 * topic (usually relayed by a hub); libp2p does not dial what it discovers,
 * so this does, once per peer at a time, bounded by `dialTimeout`.
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

export class AutoDial {
  private readonly dialing = new Set<string>()
  private readonly failed = new ExpiringSet(RETRY_AFTER_FAILURE, 1024)
  private readonly shutdown = new AbortController()
  private readonly libp2p: NppLibp2p
  private readonly dialTimeout: number

  constructor (libp2p: NppLibp2p, dialTimeout: number) {
    this.libp2p = libp2p
    this.dialTimeout = dialTimeout
  }

  start (): void {
    this.libp2p.addEventListener('peer:discovery', this.onDiscovery)
    this.libp2p.addEventListener('peer:update', this.onUpdate)
  }

  stop (): void {
    this.libp2p.removeEventListener('peer:discovery', this.onDiscovery)
    this.libp2p.removeEventListener('peer:update', this.onUpdate)
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

  private consider (peer: PeerId, addrs: Multiaddr[]): void {
    if (peer.equals(this.libp2p.peerId)) return
    // a direct WebRTC link when the peer offers one: a relayed connection is
    // limited, and OrbitDB does not sync over limited connections
    const webrtc = addrs.filter(m => m.toString().includes('/webrtc'))
    if (addrs.length === 0) return // announced before it had addresses: wait for the next announcement
    const open = this.libp2p.getConnections(peer)
    if (open.some(c => c.limits == null)) return
    // one dial per peer and kind at a time: a WebRTC address that arrives
    // while a plain dial is pending is still tried at once
    const key = `${peer.toString()} ${webrtc.length > 0 ? 'webrtc' : 'any'}`
    if (this.dialing.has(key) || this.failed.has(key) || this.dialing.size >= MAX_PARALLEL_DIALS) return
    if (webrtc.length === 0 && open.length > 0) return
    this.dialing.add(key)
    const bounded = timeoutSignal(this.dialTimeout, this.shutdown.signal, `dialing discovered peer ${key}`)
    this.libp2p.dial(webrtc.length > 0 ? webrtc : peer, { signal: bounded.signal })
      .then(() => { log('dialed discovered peer %s', key) }, (err: any) => {
        this.failed.add(key)
        log('could not dial discovered peer %s: %s', key, err?.message ?? err)
      })
      .finally(() => {
        bounded.clear()
        this.dialing.delete(key)
      })
  }
}
