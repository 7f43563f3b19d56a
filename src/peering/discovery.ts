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
import type { PeerId } from '@libp2p/interface'
import { logger } from '../utils/logger.ts'
import { timeoutSignal } from '../utils/abort.ts'
import { publishToPeer } from './publish.ts'
import { RateLimiter, ExpiringSet } from '../utils/rate-limit.ts'
import { isOrbitDBAddress, isPlainObject, isJsonValue } from '../utils/validate.ts'
import {
  MAX_MESSAGE_BYTES, MESSAGE_BURST, MESSAGE_RATE_PER_SECOND, MAX_TRACKED_PEERS,
  DISCOVERY_CONCURRENCY, MAX_PENDING_DISCOVERIES, DISCOVERY_FAILURE_TTL, ANNOUNCE_ATTEMPTS
} from '../constants.ts'
import type { DropReason, JsonValue, MessageDetail, NppLibp2p, NppStats } from '../types.ts'

const log = logger('discovery')

export interface DiscoveryInit {
  libp2p: NppLibp2p
  /** Address of our own user database, announced to every peer. */
  userDb: string
  /** Bound for announcing to a peer and for verifying an announcement. */
  timeout: number
  stats: NppStats
  onMessage(detail: MessageDetail): void
  onDropped(from: string, reason: DropReason): void
  /** Open, replicate and validate a peer's user db; throw when it is not acceptable. */
  verify(userDb: string, from: string, signal: AbortSignal): Promise<void>
}

export class Discovery {
  private readonly init: DiscoveryInit
  private readonly topic: string
  private readonly limiter = new RateLimiter({ burst: MESSAGE_BURST, ratePerSecond: MESSAGE_RATE_PER_SECOND, maxKeys: MAX_TRACKED_PEERS })
  private readonly failed = new ExpiringSet(DISCOVERY_FAILURE_TTL, 1024)
  private readonly inFlight = new Set<string>()
  private readonly announcing = new Map<string, AbortController>()
  private readonly queue = new PQueue({ concurrency: DISCOVERY_CONCURRENCY })
  private readonly shutdown = new AbortController()
  private readonly payload: Uint8Array
  private started = false

  constructor (init: DiscoveryInit) {
    this.init = init
    this.topic = init.libp2p.peerId.toString()
    this.payload = uint8ArrayFromString(JSON.stringify({ userDb: init.userDb }))
  }

  private get pubsub (): any {
    return this.init.libp2p.services.pubsub
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.pubsub.addEventListener('message', this.onPubsubMessage)
    this.init.libp2p.addEventListener('peer:connect', this.onPeerConnect)
    this.init.libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
    this.pubsub.subscribe(this.topic)
    for (const peer of this.init.libp2p.getPeers()) this.announce(peer)
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort()
    this.pubsub.removeEventListener('message', this.onPubsubMessage)
    this.init.libp2p.removeEventListener('peer:connect', this.onPeerConnect)
    this.init.libp2p.removeEventListener('peer:disconnect', this.onPeerDisconnect)
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
    const bounded = timeoutSignal(this.init.timeout, AbortSignal.any([controller.signal, this.shutdown.signal]), `announcing to ${key}`)
    const started = Date.now()
    publishToPeer(this.pubsub, key, peer, this.payload, { signal: bounded.signal, attempts: ANNOUNCE_ATTEMPTS })
      .then(attempts => {
        this.init.stats.announcementsSent++
        log('announced user db to %s in %d ms (%d attempt(s))', key, Date.now() - started, attempts)
      }, (err: any) => {
        // peers that do not run this protocol never subscribe: that is not an error
        log.trace('no announcement to %s: %s', key, err?.message ?? err)
      })
      .finally(() => {
        bounded.clear()
        if (this.announcing.get(key) === controller) this.announcing.delete(key)
      })
  }

  private readonly onPubsubMessage = (evt: CustomEvent<any>): void => {
    const msg = evt.detail
    if (msg?.topic !== this.topic) return
    if (msg.type !== 'signed' || msg.from == null) {
      this.drop('unknown', 'wrong-shape')
      return
    }
    const from: string = msg.from.toString()
    if (from === this.topic) return
    this.init.stats.messagesReceived++
    if (!this.limiter.take(from)) {
      this.drop(from, 'rate-limited')
      return
    }
    const data: Uint8Array = msg.data
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
      this.init.onMessage({ from, topic: this.topic, data: object })
      this.enqueue(object.userDb, from)
      return
    }
    this.init.onMessage({ from, topic: this.topic, data: object })
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
    this.init.stats.discoveriesStarted++
    this.queue.add(async () => {
      const started = Date.now()
      const bounded = timeoutSignal(this.init.timeout, this.shutdown.signal, `verifying ${userDb} from ${from}`)
      try {
        await this.init.verify(userDb, from, bounded.signal)
        this.init.stats.discoveriesSucceeded++
        log('verified %s from %s in %d ms', userDb, from, Date.now() - started)
      } catch (err: any) {
        if (this.shutdown.signal.aborted) return
        this.init.stats.discoveriesFailed++
        this.failed.add(key)
        this.drop(from, 'invalid-user-db')
        log.error('rejected user db %s from %s: %s', userDb, from, err?.message ?? err)
      } finally {
        bounded.clear()
        this.inFlight.delete(userDb)
      }
    }).catch(() => {})
  }

  private drop (from: string, reason: DropReason): void {
    this.init.stats.messagesDropped[reason]++
    log('dropped a message from %s: %s', from, reason)
    this.init.onDropped(from, reason)
  }
}
