/**
 * With `pubsubDiscovery`, peers learn of each other through the discovery
 * topic (usually relayed by a hub); libp2p does not dial what it discovers,
 * so this does, once per peer at a time, bounded by `dialTimeout`.
 */
import type { PeerId, PeerInfo } from '@libp2p/interface'
import { timeoutSignal } from './abort.ts'
import { logger } from './logger.ts'
import type { NppLibp2p } from './types.ts'

const log = logger('discovery')

/** Discovered peers dialed at once, at most; others wait for their next announcement. */
const MAX_PARALLEL_DIALS = 8

export class AutoDial {
  private readonly dialing = new Set<string>()
  private readonly shutdown = new AbortController()
  private readonly libp2p: NppLibp2p
  private readonly dialTimeout: number

  constructor (libp2p: NppLibp2p, dialTimeout: number) {
    this.libp2p = libp2p
    this.dialTimeout = dialTimeout
  }

  start (): void {
    this.libp2p.addEventListener('peer:discovery', this.onDiscovery)
  }

  stop (): void {
    this.libp2p.removeEventListener('peer:discovery', this.onDiscovery)
    this.shutdown.abort()
  }

  private readonly onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    const peer: PeerId = evt.detail.id
    const key = peer.toString()
    if (peer.equals(this.libp2p.peerId) || this.dialing.has(key) || this.dialing.size >= MAX_PARALLEL_DIALS) return
    if (this.libp2p.getConnections(peer).length > 0) return
    this.dialing.add(key)
    const bounded = timeoutSignal(this.dialTimeout, this.shutdown.signal, `dialing discovered peer ${key}`)
    this.libp2p.dial(peer, { signal: bounded.signal })
      .then(() => { log('dialed discovered peer %s', key) }, (err: any) => { log('could not dial discovered peer %s: %s', key, err?.message ?? err) })
      .finally(() => {
        bounded.clear()
        this.dialing.delete(key)
      })
  }
}
