/**
 * The tutorial's discovery protocol, made robust.
 *
 * Every node subscribes to the topic named after its own peer id. When a peer
 * connects, we send `{ "userDb": "<address of our user db>" }` to *its* topic
 * as soon as its subscription is known. When such a message reaches our
 * topic, it is checked (size, rate, JSON shape, address form), then handed to
 * `verify` through a bounded queue; everything that fails is dropped, counted
 * and logged under `npp:discovery`.
 */
import PQueue from 'p-queue'
import { toString as uint8ArrayToString, fromString as uint8ArrayFromString } from 'uint8arrays'
import type { Connection, Logger, PeerId } from '@libp2p/interface'
import type { Message } from '@libp2p/gossipsub'
import { deadline } from '../utils/abort.ts'
import { publishToPeer } from './publish.ts'
import { RateLimiter, ExpiringSet } from '../utils/rate-limit.ts'
import { isOrbitDBAddress, isPlainObject, isJsonValue } from '../utils/validate.ts'
import {
  MAX_MESSAGE_BYTES, MESSAGE_BURST, MESSAGE_RATE_PER_SECOND, MAX_TRACKED_PEERS,
  DISCOVERY_CONCURRENCY, MAX_PENDING_DISCOVERIES, DISCOVERY_FAILURE_TTL, ANNOUNCE_ATTEMPTS
} from '../constants.ts'
import type { NppComponents, Startable } from '../components.ts'
import type { AnnouncementVerifier } from '../companions/companions.ts'
import type { DropReason, JsonValue, NppStats } from '../types.ts'

export interface DiscoveryInit {
  /** Address of our own user database, announced to every peer. */
  userDb: string
  /** Bound for announcing to a peer and for verifying an announcement. */
  timeout: number
}

export interface DiscoveryComponents extends Pick<NppComponents, 'libp2p' | 'events' | 'logger'> {
  /** Opens, replicates and validates a peer's user db; throws when it is not acceptable. */
  verifier: AnnouncementVerifier
}

/** What discovery received, sent and dropped since start (all of `NppStats` but the redials). */
export type DiscoveryStats = Omit<NppStats, 'redials'>

export class Discovery implements Startable {
  private readonly components: DiscoveryComponents
  private readonly init: DiscoveryInit
  private readonly log: Logger
  private readonly topic: string
  private readonly limiter = new RateLimiter({ burst: MESSAGE_BURST, ratePerSecond: MESSAGE_RATE_PER_SECOND, maxKeys: MAX_TRACKED_PEERS })
  private readonly failed = new ExpiringSet(DISCOVERY_FAILURE_TTL, 1024)
  private readonly inFlight = new Set<string>()
  private readonly announcing = new Map<string, AbortController>()
  private readonly queue = new PQueue({ concurrency: DISCOVERY_CONCURRENCY })
  private readonly shutdown = new AbortController()
  private readonly payload: Uint8Array
  private started = false
  readonly stats: DiscoveryStats = {
    messagesReceived: 0,
    messagesDropped: { oversized: 0, 'not-json': 0, 'wrong-shape': 0, 'rate-limited': 0, 'queue-full': 0, 'invalid-user-db': 0, 'recently-failed': 0 },
    discoveriesStarted: 0,
    discoveriesSucceeded: 0,
    discoveriesFailed: 0,
    announcementsSent: 0
  }

  constructor (components: DiscoveryComponents, init: DiscoveryInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('npp:discovery')
    this.topic = components.libp2p.peerId.toString()
    this.payload = uint8ArrayFromString(JSON.stringify({ userDb: init.userDb }))
  }

  private get pubsub (): NppComponents['libp2p']['services']['pubsub'] {
    return this.components.libp2p.services.pubsub
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    const { libp2p } = this.components
    this.pubsub.addEventListener('message', this.onPubsubMessage)
    libp2p.addEventListener('peer:connect', this.onPeerConnect)
    libp2p.addEventListener('connection:open', this.onConnectionOpen)
    libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
    this.pubsub.subscribe(this.topic)
    for (const peer of libp2p.getPeers()) this.announce(peer)
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort()
    const { libp2p } = this.components
    this.pubsub.removeEventListener('message', this.onPubsubMessage)
    libp2p.removeEventListener('peer:connect', this.onPeerConnect)
    libp2p.removeEventListener('connection:open', this.onConnectionOpen)
    libp2p.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    for (const controller of this.announcing.values()) controller.abort()
    this.announcing.clear()
    this.queue.clear()
    await this.queue.onIdle()
    try {
      this.pubsub.unsubscribe(this.topic)
    } catch {}
  }

  /** Announcements waiting or running (for tests and diagnostics). */
  get pending (): number {
    return this.queue.size + this.queue.pending
  }

  private readonly onPeerConnect = (evt: CustomEvent<PeerId>): void => {
    this.announce(evt.detail)
  }

  // A peer met through a relay connects first over the limited relayed
  // connection, where gossipsub does not run: an announcement started then
  // can time out while WebRTC is still being set up, and `peer:connect` does
  // not fire again. Every direct (unlimited) connection gets its own chance.
  private readonly onConnectionOpen = (evt: CustomEvent<Connection>): void => {
    if (evt.detail.limits == null) this.announce(evt.detail.remotePeer)
  }

  private readonly onPeerDisconnect = (evt: CustomEvent<PeerId>): void => {
    const key = evt.detail.toString()
    this.announcing.get(key)?.abort()
    this.announcing.delete(key)
  }

  /** Send our user db address to `peer`'s topic once it subscribes (bounded). */
  announce (peer: PeerId): void {
    const key = peer.toString()
    if (!this.started || this.announcing.has(key)) return
    const controller = new AbortController()
    this.announcing.set(key, controller)
    const bound = deadline(this.init.timeout, AbortSignal.any([controller.signal, this.shutdown.signal]), `announcing to ${key}`)
    const started = Date.now()
    publishToPeer(this.pubsub, key, peer, this.payload, { signal: bound.signal, attempts: ANNOUNCE_ATTEMPTS })
      .then(attempts => {
        this.stats.announcementsSent++
        this.log('announced user db to %p in %d ms (%d attempt(s))', peer, Date.now() - started, attempts)
      }, (err: unknown) => {
        // peers that do not run this protocol never subscribe: that is not an error
        this.log.trace('no announcement to %p: %e', peer, bound.signal.aborted ? bound.reason() : err)
      })
      .finally(() => {
        bound.clear()
        if (this.announcing.get(key) === controller) this.announcing.delete(key)
      })
  }

  private readonly onPubsubMessage = (evt: CustomEvent<Message>): void => {
    const msg = evt.detail
    if (msg?.topic !== this.topic) return
    if (msg.type !== 'signed' || msg.from == null) {
      this.drop('unknown', 'wrong-shape')
      return
    }
    const from: string = msg.from.toString()
    if (from === this.topic) return
    this.stats.messagesReceived++
    if (!this.limiter.take(from)) {
      this.drop(from, 'rate-limited')
      return
    }
    const data: unknown = msg.data
    if (!(data instanceof Uint8Array) || data.byteLength > MAX_MESSAGE_BYTES) {
      this.drop(from, 'oversized')
      return
    }
    let value: unknown
    try {
      value = JSON.parse(uint8ArrayToString(data))
    } catch {
      this.drop(from, 'not-json')
      return
    }
    if (!isPlainObject(value) || !isJsonValue(value)) {
      this.drop(from, 'wrong-shape')
      return
    }
    const object = value as Record<string, JsonValue>
    if ('userDb' in object) {
      const keys = Object.keys(object)
      if (keys.length !== 1 || !isOrbitDBAddress(object.userDb)) {
        this.drop(from, 'wrong-shape')
        return
      }
      this.components.events.safeDispatchEvent('message', { detail: { from, topic: this.topic, data: object } })
      this.enqueue(object.userDb, from)
      return
    }
    this.components.events.safeDispatchEvent('message', { detail: { from, topic: this.topic, data: object } })
  }

  private enqueue (userDb: string, from: string): void {
    // one verification per address at a time, whoever announces it
    if (this.inFlight.has(userDb)) return
    const key = `${from} ${userDb}`
    if (this.failed.has(key)) {
      this.drop(from, 'recently-failed')
      return
    }
    if (this.pending >= MAX_PENDING_DISCOVERIES) {
      this.drop(from, 'queue-full')
      return
    }
    this.inFlight.add(userDb)
    this.stats.discoveriesStarted++
    this.queue.add(async () => {
      const started = Date.now()
      const bound = deadline(this.init.timeout, this.shutdown.signal, `verifying ${userDb} from ${from}`)
      try {
        await this.components.verifier.verify(userDb, from, bound.signal)
        this.stats.discoveriesSucceeded++
        this.log('verified %s from %s in %d ms', userDb, from, Date.now() - started)
      } catch (err) {
        if (this.shutdown.signal.aborted) return
        this.stats.discoveriesFailed++
        this.failed.add(key)
        this.drop(from, 'invalid-user-db')
        this.log.error('rejected user db %s from %s: %e', userDb, from, bound.signal.aborted ? bound.reason() : err)
      } finally {
        bound.clear()
        this.inFlight.delete(userDb)
      }
    }).catch(() => {})
  }

  private drop (from: string, reason: DropReason): void {
    this.stats.messagesDropped[reason]++
    this.log('dropped a message from %s: %s', from, reason)
    this.components.events.safeDispatchEvent('message:dropped', { detail: { from, reason } })
  }
}
