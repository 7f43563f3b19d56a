/**
 * `@libp2p/pubsub-peer-discovery` announces at start and then every 10 s, so
 * a peer that reaches its hub later would wait up to 10 s to be heard. This
 * keeps the discovery instance and announces as soon as it is worth it: a
 * peer (the hub) subscribes to the discovery topic, joins our mesh for it,
 * or our own addresses change.
 */
import { pubsubPeerDiscovery, TOPIC as DISCOVERY_TOPIC } from '@libp2p/pubsub-peer-discovery'
import { logger } from '../utils/logger.ts'
import type { PeerDiscovery } from '@libp2p/interface'
import type { NppLibp2p } from '../types.ts'

const log = logger('discovery')

type DiscoveryFactory = ReturnType<typeof pubsubPeerDiscovery>
/** The instance's own broadcast (not part of its public interface; checked at run time). */
interface Broadcaster { _broadcast?: () => void }

interface SubscriptionChange { subscriptions?: Array<{ topic: string, subscribe: boolean }> }

export class HubAnnouncer {
  private instance?: PeerDiscovery & Broadcaster
  private libp2p?: NppLibp2p

  /** The `peerDiscovery` entry to give libp2p: pubsub peer discovery, kept for `announce`. */
  readonly discovery: DiscoveryFactory = (components) => {
    const instance = pubsubPeerDiscovery()(components) as PeerDiscovery & Broadcaster
    this.instance = instance
    return instance
  }

  /** Listen for the moments worth an announcement. Idempotent. */
  start (libp2p: NppLibp2p): void {
    if (this.libp2p != null) return
    this.libp2p = libp2p
    const pubsub = libp2p.services.pubsub
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    pubsub.addEventListener('gossipsub:graft', this.onGraft)
    // new addresses (a relay reservation, a WebRTC address) are worth telling
    // at once: a listener that starts listening (the relay reservation, which
    // also brings the WebRTC address) is heard here a second before libp2p's
    // debounced self:peer:update
    libp2p.addEventListener('transport:listening', this.onAddressChange)
    libp2p.addEventListener('self:peer:update', this.onAddressChange)
  }

  stop (): void {
    const libp2p = this.libp2p
    if (libp2p == null) return
    this.libp2p = undefined
    const pubsub = libp2p.services.pubsub
    pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    pubsub.removeEventListener('gossipsub:graft', this.onGraft)
    libp2p.removeEventListener('transport:listening', this.onAddressChange)
    libp2p.removeEventListener('self:peer:update', this.onAddressChange)
  }

  announce (why: string): void {
    const broadcast = this.instance?._broadcast
    if (typeof broadcast !== 'function') return
    log.trace('announcing on the discovery topic (%s)', why)
    try {
      broadcast.call(this.instance)
    } catch (err) {
      log('discovery announcement failed - %e', err)
    }
  }

  // the hub's subscription is known (our stream to it may still be opening)...
  private readonly onSubscriptionChange = (evt: CustomEvent<SubscriptionChange>): void => {
    if (evt.detail?.subscriptions?.some(s => s.topic === DISCOVERY_TOPIC && s.subscribe)) this.announce('hub subscribed')
  }

  // ...and once the hub is in our mesh for the topic, the stream surely is
  private readonly onGraft = (evt: CustomEvent<{ topic?: string }>): void => {
    if (evt.detail?.topic === DISCOVERY_TOPIC) this.announce('graft')
  }

  private readonly onAddressChange = (): void => { this.announce('addresses changed') }
}
