/**
 * The tutorial's discovery protocol, made robust.
 *
 * Every node subscribes to the topic named after its own peer id. When a peer
 * connects, we send `{ "userDb": "<address of our user db>" }` to *its* topic
 * as soon as its subscription is known. When such a message reaches our
 * topic, it is checked (size, rate, JSON shape, address form), then handed to
 * `verify` through a bounded queue; everything that fails is dropped, counted
 * and logged under `npp:discovery`.
 *
 * Neither side gives up on the first failure that may pass (seen with 80
 * companions arriving together: 49 of one peer's announcements found the
 * remote's stream still opening after their ~2.9 s budget, and 12 incoming
 * ones met a full queue; none was tried again, so those pairs never became
 * companions while connected):
 *
 * - An announcement that fails (the peer not a recipient in time, a publish
 *   error, a timeout) is tried again with a growing, jittered back-off
 *   (`p-retry`) while a direct connection to the peer lasts; one chain per
 *   peer, ended by `peer:disconnect` or `stop()`. Waiting for the peer's
 *   subscription costs nothing (a listener) and has no time limit; the
 *   publishing itself runs for `announceConcurrency` peers at a time.
 * - A delivered announcement can still be dropped by the receiver (its
 *   queue full, its rate limit spent, the peer gone before its turn), and
 *   the sender would never learn (issue 10). A peer that takes an
 *   announcement in opens our catalog, and OrbitDB then subscribes to its
 *   topic: that subscription is the acknowledgement (`acknowledgement`).
 *   Without it within `acknowledgeTimeout`, the announcement is sent again
 *   (`announcementsUnacknowledged`), at most `maxUnacknowledged` times per
 *   connection: a peer that refuses us for good is not asked forever, and
 *   one that is still verifying treats the repeat as a no-op.
 * - An announcement that arrives while `maxPending` verifications are under
 *   way is kept (the latest per peer, `maxDeferred` at most, oldest dropped
 *   as `queue-full`) and verified when there is room, unless its peer
 *   disconnected meanwhile.
 * - A verification that fails for a passing reason (a timeout reading or
 *   opening the peer's user db) is tried again, with back-off, while the peer
 *   is connected; one that fails for good (`InvalidRemoteDataError`: wrong
 *   type, another node, a foreign catalog) is dropped as `invalid-user-db`
 *   (`duplicate-identity` for a profile whose OrbitDB identity is already a
 *   companion through another peer) and the same announcement refused for
 *   `DISCOVERY_FAILURE_TTL`.
 *
 * Every limit is keyed on what a sender cannot choose cheaply (issue 10,
 * finding 4: keyed on the signer, 3,000 announcements signed with 2,000 fresh
 * keys over one connection filled the queue and pushed out an honest peer's):
 *
 * - The rate limit is the neighbour's that delivered the message (gossipsub's
 *   propagation source), not the signer's. An announcement signed by another
 *   key than that neighbour's is dropped as `forwarded`: honest peers publish
 *   to our topic only over a direct connection (only we subscribe to it), and
 *   a companion must be a peer we are connected to, not one a neighbour names.
 *   So a connection brings at most one verification, its own peer's.
 * - Verifications under way for the peers behind one remote address (an IP
 *   address or host name) are bounded (`maxPendingPerAddress`), and each
 *   one queued for an address that already has some runs after the other
 *   addresses' first ones (p-queue priorities): one host with many
 *   connections spends its own slots and waits behind everyone else.
 * - When the deferred announcements are full, the one pushed out is the
 *   oldest of the address that holds the most of them, not the oldest of all.
 */
import PQueue from 'p-queue'
import pRetry from 'p-retry'
import { toString as uint8ArrayToString, fromString as uint8ArrayFromString } from 'uint8arrays'
import type { Connection, Logger, PeerId } from '@libp2p/interface'
import type { GossipsubMessage } from '@libp2p/gossipsub'
import type { Multiaddr } from '@multiformats/multiaddr'
import { deadline } from '../utils/abort.ts'
import { publishToPeer, waitForSubscription } from './publish.ts'
import { RateLimiter, ExpiringSet } from '../utils/rate-limit.ts'
import { isOrbitDBAddress, isPlainObject, isJsonValue } from '../utils/validate.ts'
import { AbortError, NewPiecePleaseError } from '../errors.ts'
import {
  MAX_MESSAGE_BYTES, MESSAGE_BURST, MESSAGE_RATE_PER_SECOND, MAX_TRACKED_PEERS, MAX_COMPANIONS,
  DISCOVERY_CONCURRENCY, MAX_PENDING_DISCOVERIES, MAX_DISCOVERIES_PER_ADDRESS, DISCOVERY_FAILURE_TTL, ANNOUNCE_ATTEMPTS
} from '../constants.ts'
import type { NppComponents, Startable } from '../components.ts'
import type { AnnouncementVerifier } from '../companions/companions.ts'
import type { DropReason, JsonValue, NppStats } from '../types.ts'

/**
 * Peers our user db is published to at once. Each publishes up to
 * `announceAttempts` times (~2.9 s); 80 peers arriving together would
 * otherwise publish ~1,600 times a second on a node that is busy with their
 * connections already.
 */
export const DEFAULT_ANNOUNCE_CONCURRENCY = 16
/** First pause before an announcement or a verification is tried again (randomised to 1-2 times this, doubling on each failure). */
export const DEFAULT_RETRY_MIN_DELAY = 500
/** Longest pause between two tries of an announcement or a verification. */
export const DEFAULT_RETRY_MAX_DELAY = 30_000

/** Announcements sent again to a peer that never acknowledged them, per connection. */
export const DEFAULT_MAX_UNACKNOWLEDGED = 5

export interface DiscoveryInit {
  /** Address of our own user database, announced to every peer. */
  userDb: string
  /**
   * A topic the peer subscribes to once it took our announcement in: our
   * catalog's address (a peer verifying or replicating our catalog opens it,
   * and OrbitDB subscribes to its topic). Without it, delivery is enough.
   */
  acknowledgement?: string
  /**
   * How long (ms) a delivered announcement waits for the acknowledgement
   * before it is sent again.
   *
   * @default twice `timeout`
   */
  acknowledgeTimeout?: number
  /**
   * Announcements sent again for want of an acknowledgement, per connection,
   * before the peer is left alone (it refuses us, or does not run this
   * protocol's replication).
   *
   * @default DEFAULT_MAX_UNACKNOWLEDGED (5)
   */
  maxUnacknowledged?: number
  /** Bound for each try of publishing an announcement and of verifying one. */
  timeout: number
  /**
   * Announce our user db to the peers we meet. A keeper does not: it keeps
   * the peers that ask, and is not anyone's companion.
   *
   * @default true
   */
  announce?: boolean
  /**
   * Publishes tried in one attempt while the peer is not (yet) a recipient.
   *
   * @default ANNOUNCE_ATTEMPTS (60, ~2.9 s)
   */
  announceAttempts?: number
  /**
   * Peers whose announcement is being published at once (waiting for a
   * peer's subscription does not count).
   *
   * @default DEFAULT_ANNOUNCE_CONCURRENCY (16)
   */
  announceConcurrency?: number
  /**
   * Verifications run at once.
   *
   * @default DISCOVERY_CONCURRENCY (4)
   */
  concurrency?: number
  /**
   * Verifications under way at most (running, queued, or waiting to be
   * tried again); further announcements are deferred.
   *
   * @default MAX_PENDING_DISCOVERIES (64)
   */
  maxPending?: number
  /**
   * Verifications under way at most for the peers behind one remote address
   * (an IP address or host name; a peer reached over WebRTC or a relay counts
   * as an address of its own); further announcements from there are deferred.
   *
   * @default MAX_DISCOVERIES_PER_ADDRESS (16)
   */
  maxPendingPerAddress?: number
  /**
   * Deferred announcements kept at most (the latest of each peer); beyond
   * this the oldest of the remote address holding the most is dropped as
   * `queue-full`.
   *
   * @default MAX_COMPANIONS (256)
   */
  maxDeferred?: number
  /**
   * First pause (ms) before a failed announcement or verification is tried
   * again; randomised to 1-2 times this and doubled on every failure.
   *
   * @default DEFAULT_RETRY_MIN_DELAY (500)
   */
  retryMinDelay?: number
  /**
   * Longest pause (ms) between two tries.
   *
   * @default DEFAULT_RETRY_MAX_DELAY (30000)
   */
  retryMaxDelay?: number
}

export interface DiscoveryComponents extends Pick<NppComponents, 'events' | 'logger'> {
  libp2p: Pick<NppComponents['libp2p'], 'peerId' | 'services' | 'getPeers' | 'getConnections' | 'addEventListener' | 'removeEventListener'>
  /** Opens, replicates and validates a peer's user db; throws when it is not acceptable. */
  verifier: AnnouncementVerifier
}

/** What discovery received, sent, deferred, retried and dropped since start (its part of `NppStats`). */
export type DiscoveryStats = Required<Pick<NppStats,
'messagesReceived' | 'messagesDropped' | 'discoveriesStarted' | 'discoveriesSucceeded' | 'discoveriesFailed' | 'discoveriesRetried' |
'announcementsDeferred' | 'announcementsSent' | 'announcementsRetried' | 'announcementsUnacknowledged'
>>

/** One peer's announcement being published (tries and back-off included). */
interface Announcement {
  controller: AbortController
  done: Promise<boolean>
}

/** One peer's announcement being verified (queued, running or waiting to be tried again). */
interface Verification {
  userDb: string
  peer: PeerId
  /** The remote address the peer is behind (see `remoteAddressOf`). */
  address: string
  controller: AbortController
  /** A try is running: a disconnect lets it finish (its blocks may have arrived) instead of cutting it. */
  running: boolean
  /** A try is in the queue (waiting or running). */
  queued: boolean
  /** Settles when the verification is over, whatever the outcome. */
  done?: Promise<void>
}

/** A deferred announcement. */
interface Deferred {
  peer: PeerId
  userDb: string
  address: string
}

/** Errors of the verifier that would repeat (the remote data itself is wrong or refused), with the reason they are dropped for. Anything else (timeouts, streams) may pass. */
const PERMANENT: Record<string, DropReason> = {
  InvalidRemoteDataError: 'invalid-user-db',
  DuplicateIdentityError: 'duplicate-identity'
}

/** A delivered announcement the peer did not take in (it never opened our catalog) within the time allowed. */
class UnacknowledgedError extends NewPiecePleaseError {
  override name = 'UnacknowledgedError'
}

function isPermanent (err: unknown): boolean {
  return Object.hasOwn(PERMANENT, (err as Error | undefined)?.name ?? '')
}

const HOST_PROTOCOLS = new Set(['ip4', 'ip6', 'dns', 'dns4', 'dns6', 'dnsaddr'])

/**
 * The host of a direct connection's remote address (`1.2.3.4`), or
 * undefined when it names none of its own: WebRTC's `/webrtc/p2p/<peer>`, or
 * a relayed address (whose IP is the relay's, shared by everyone behind it).
 */
export function remoteHost (addr: Multiaddr | undefined): string | undefined {
  const components = addr?.getComponents() ?? []
  if (components.some(c => c.name === 'p2p-circuit')) return undefined
  const host = components.find(c => HOST_PROTOCOLS.has(c.name))
  return host?.value
}

export class Discovery implements Startable {
  private readonly components: DiscoveryComponents
  private readonly init: DiscoveryInit
  private readonly log: Logger
  private readonly topic: string
  private readonly limiter = new RateLimiter({ burst: MESSAGE_BURST, ratePerSecond: MESSAGE_RATE_PER_SECOND, maxKeys: MAX_TRACKED_PEERS })
  private readonly failed = new ExpiringSet(DISCOVERY_FAILURE_TTL, 1024)
  /** User dbs being verified, whoever announced them (one verification per address at a time). */
  private readonly inFlight = new Set<string>()
  /** Verifications by announcing peer: one per peer, its latest address. */
  private readonly verifying = new Map<string, Verification>()
  /** Announcements waiting for room, by peer (the latest of each); Map order is age order. */
  private readonly waiting = new Map<string, Deferred>()
  private readonly announcements = new Map<string, Announcement>()
  private readonly queue: PQueue
  private readonly publishing: PQueue
  private shutdown = new AbortController()
  private readonly payload: Uint8Array
  private started = false
  readonly stats: DiscoveryStats = {
    messagesReceived: 0,
    messagesDropped: { oversized: 0, 'not-json': 0, 'wrong-shape': 0, 'rate-limited': 0, 'queue-full': 0, 'invalid-user-db': 0, 'recently-failed': 0, forwarded: 0, 'duplicate-identity': 0 },
    discoveriesStarted: 0,
    discoveriesSucceeded: 0,
    discoveriesFailed: 0,
    discoveriesRetried: 0,
    announcementsDeferred: 0,
    announcementsSent: 0,
    announcementsRetried: 0,
    announcementsUnacknowledged: 0
  }

  constructor (components: DiscoveryComponents, init: DiscoveryInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('npp:discovery')
    this.topic = components.libp2p.peerId.toString()
    this.payload = uint8ArrayFromString(JSON.stringify({ userDb: init.userDb }))
    this.queue = new PQueue({ concurrency: init.concurrency ?? DISCOVERY_CONCURRENCY })
    this.publishing = new PQueue({ concurrency: init.announceConcurrency ?? DEFAULT_ANNOUNCE_CONCURRENCY })
  }

  private get pubsub (): NppComponents['libp2p']['services']['pubsub'] {
    return this.components.libp2p.services.pubsub
  }

  private get retry (): { retries: number, factor: number, minTimeout: number, maxTimeout: number, randomize: boolean } {
    const minTimeout = this.init.retryMinDelay ?? DEFAULT_RETRY_MIN_DELAY
    return { retries: Infinity, factor: 2, minTimeout, maxTimeout: Math.max(minTimeout, this.init.retryMaxDelay ?? DEFAULT_RETRY_MAX_DELAY), randomize: true }
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.shutdown = new AbortController()
    const { libp2p } = this.components
    this.pubsub.addEventListener('gossipsub:message', this.onPubsubMessage)
    libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
    this.pubsub.subscribe(this.topic)
    if (this.init.announce === false) return
    libp2p.addEventListener('peer:connect', this.onPeerConnect)
    libp2p.addEventListener('connection:open', this.onConnectionOpen)
    for (const peer of libp2p.getPeers()) void this.announce(peer)
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    // ends every back-off, removes what is queued and aborts what runs
    this.shutdown.abort(new AbortError('discovery stopped'))
    const { libp2p } = this.components
    this.pubsub.removeEventListener('gossipsub:message', this.onPubsubMessage)
    libp2p.removeEventListener('peer:connect', this.onPeerConnect)
    libp2p.removeEventListener('connection:open', this.onConnectionOpen)
    libp2p.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    this.waiting.clear()
    await Promise.all([
      ...[...this.announcements.values()].map(async a => await a.done),
      ...[...this.verifying.values()].map(async v => await v.done)
    ])
    await Promise.all([this.queue.onIdle(), this.publishing.onIdle()])
    try {
      this.pubsub.unsubscribe(this.topic)
    } catch {}
  }

  /** Verifications under way: running, queued or waiting to be tried again (for tests and diagnostics). */
  get pending (): number {
    return this.verifying.size
  }

  /** Announcements received while `maxPending` verifications were under way, waiting for room. */
  get deferred (): number {
    return this.waiting.size
  }

  /** Peers our announcement is being sent to (waiting for their subscription, publishing or waiting to try again). */
  get announcing (): number {
    return this.announcements.size
  }

  private readonly onPeerConnect = (evt: CustomEvent<PeerId>): void => {
    void this.announce(evt.detail)
  }

  // A peer met through a relay connects first over the limited relayed
  // connection, where gossipsub does not run. Its subscription arrives once a
  // direct (unlimited) connection opens; an announcement that gave up meanwhile
  // (only the relayed connection left) starts again on the direct one.
  private readonly onConnectionOpen = (evt: CustomEvent<Connection>): void => {
    if (evt.detail.limits == null) void this.announce(evt.detail.remotePeer)
  }

  private readonly onPeerDisconnect = (evt: CustomEvent<PeerId>): void => {
    const key = evt.detail.toString()
    const gone = new AbortError(`${key} disconnected`)
    this.announcements.get(key)?.controller.abort(gone)
    if (this.waiting.delete(key)) this.log('forgot the deferred announcement of %p: it disconnected', evt.detail)
    const verification = this.verifying.get(key)
    // a try that runs finishes (and is not tried again: the peer is gone)
    if (verification != null && !verification.running) verification.controller.abort(gone)
  }

  private directlyConnected (peer: PeerId): boolean {
    return this.components.libp2p.getConnections(peer).some(c => c.limits == null)
  }

  private connected (peer: PeerId): boolean {
    return this.components.libp2p.getConnections(peer).length > 0
  }

  /** What the limits per address count `peer` under: the host of a direct connection, else the peer itself. */
  private remoteAddressOf (peer: PeerId): string {
    for (const connection of this.components.libp2p.getConnections(peer)) {
      if (connection.limits != null) continue
      const host = remoteHost(connection.remoteAddr)
      if (host != null) return host
    }
    return `/p2p/${peer.toString()}`
  }

  /** Verifications under way for peers behind `address`. */
  private pendingAt (address: string): number {
    let n = 0
    for (const v of this.verifying.values()) if (v.address === address) n++
    return n
  }

  /**
   * Send our user db address to `peer`'s topic once it subscribes, trying
   * again while a direct connection to it lasts, and again when the peer
   * does not acknowledge it (see `acknowledgement`). Resolves to whether it
   * was delivered (and acknowledged, when asked); a call while an
   * announcement to `peer` is under way joins it.
   */
  async announce (peer: PeerId): Promise<boolean> {
    const key = peer.toString()
    const current = this.announcements.get(key)
    if (current != null) return await current.done
    if (!this.started) return false
    const controller = new AbortController()
    const signal = AbortSignal.any([controller.signal, this.shutdown.signal])
    const started = Date.now()
    const maxUnacknowledged = this.init.maxUnacknowledged ?? DEFAULT_MAX_UNACKNOWLEDGED
    let attempts = 0
    let unacknowledged = 0
    let noDirect = false
    // as soon as it is over: a connection opening next starts a new one
    const finish = (): void => {
      if (this.announcements.get(key)?.controller === controller) this.announcements.delete(key)
    }
    const done = pRetry(async () => {
      attempts++
      // free while it waits (a listener), so not bounded: a peer that does not
      // run this protocol never subscribes, and is waited for until it leaves
      await waitForSubscription(this.pubsub, key, peer, signal)
      const publishes = await this.publishing.add(async () => await this.publishOnce(peer, key, signal), { signal })
      this.stats.announcementsSent++
      await this.acknowledged(peer, signal)
      return publishes
    }, {
      ...this.retry,
      signal,
      shouldRetry: ({ error, attemptNumber, retryDelay }) => {
        if (signal.aborted) return false
        if (!this.directlyConnected(peer)) {
          noDirect = true
          return false
        }
        if (error instanceof UnacknowledgedError) {
          if (++unacknowledged > maxUnacknowledged) return false
          this.stats.announcementsUnacknowledged++
          this.log('%p did not take our announcement in (%d of %d), sending it again in %d ms', peer, unacknowledged, maxUnacknowledged, retryDelay)
          return true
        }
        this.stats.announcementsRetried++
        this.log('announcing to %p failed (attempt %d), again in %d ms: %e', peer, attemptNumber, retryDelay, error)
        return true
      }
    }).then(publishes => {
      finish()
      this.log('announced user db to %p in %d ms (attempt %d, %d publish(es))', peer, Date.now() - started, attempts, publishes)
      return true
    }, (err: unknown) => {
      finish()
      const why = signal.aborted ? signal.reason : err
      if (noDirect) this.log('gave up announcing to %p after %d attempt(s): no direct connection left (%e)', peer, attempts, why)
      else if (err instanceof UnacknowledgedError) this.log('gave up announcing to %p: %d announcement(s) delivered, none taken in (it refuses us, or does not replicate)', peer, attempts)
      else this.log('gave up announcing to %p after %d attempt(s): %e', peer, attempts, why)
      return false
    })
    this.announcements.set(key, { controller, done })
    return await done
  }

  /**
   * After a delivery: wait until `peer` subscribes to the acknowledgement
   * topic (at once if it already is), or throw `UnacknowledgedError`.
   */
  private async acknowledged (peer: PeerId, signal: AbortSignal): Promise<void> {
    const topic = this.init.acknowledgement
    if (topic == null) return
    const ms = this.init.acknowledgeTimeout ?? 2 * this.init.timeout
    const bound = deadline(ms, signal, `${peer.toString()} taking our announcement in`)
    try {
      await waitForSubscription(this.pubsub, topic, peer, bound.signal)
    } catch (err) {
      if (signal.aborted) throw signal.reason
      if (bound.signal.aborted) throw new UnacknowledgedError(`${peer.toString()} did not open our catalog within ${ms} ms of our announcement`)
      throw err
    } finally {
      bound.clear()
    }
  }

  /** One bounded attempt: publish until `peer` is a recipient; resolves to the publishes used. */
  private async publishOnce (peer: PeerId, key: string, signal: AbortSignal): Promise<number> {
    const bound = deadline(this.init.timeout, signal, `announcing to ${key}`)
    try {
      return await publishToPeer(this.pubsub, key, peer, this.payload, { signal: bound.signal, attempts: this.init.announceAttempts ?? ANNOUNCE_ATTEMPTS })
    } catch (err) {
      throw bound.signal.aborted ? bound.reason() : err
    } finally {
      bound.clear()
    }
  }

  private readonly onPubsubMessage = (evt: CustomEvent<GossipsubMessage>): void => {
    const { msg, propagationSource } = evt.detail ?? {}
    if (msg?.topic !== this.topic || propagationSource == null) return
    // the neighbour that delivered it: what every limit is charged to
    const from: string = propagationSource.toString()
    if (from === this.topic) return
    this.stats.messagesReceived++
    if (!this.limiter.take(from)) {
      this.drop(from, 'rate-limited')
      return
    }
    if (msg.type !== 'signed' || msg.from == null) {
      this.drop(from, 'wrong-shape')
      return
    }
    // signed by another key than the neighbour's: honest peers publish to our
    // topic directly, and fresh keys cost an attacker nothing
    if (!msg.from.equals(propagationSource)) {
      this.drop(from, 'forwarded')
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
      this.enqueue(object.userDb, propagationSource)
      return
    }
    this.components.events.safeDispatchEvent('message', { detail: { from, topic: this.topic, data: object } })
  }

  private enqueue (userDb: string, peer: PeerId): void {
    if (!this.started) return
    const from = peer.toString()
    const current = this.verifying.get(from)
    if (current?.userDb === userDb) return // under way (or waiting to be tried again)
    if (this.failed.has(`${from} ${userDb}`)) {
      this.drop(from, 'recently-failed')
      return
    }
    if (current != null) {
      // the peer now announces another user db (it reset its data): the latest wins
      current.controller.abort(new AbortError(`${from} announced another user db`))
      this.verifying.delete(from)
    }
    const address = this.remoteAddressOf(peer)
    if (this.inFlight.has(userDb) || this.full(address)) {
      this.defer({ userDb, peer, address })
      return
    }
    this.waiting.delete(from)
    this.verify(userDb, peer, address)
  }

  /** No room for another verification, overall or for the peers behind `address`. */
  private full (address: string): boolean {
    return this.verifying.size >= (this.init.maxPending ?? MAX_PENDING_DISCOVERIES) ||
      this.pendingAt(address) >= (this.init.maxPendingPerAddress ?? MAX_DISCOVERIES_PER_ADDRESS)
  }

  /**
   * Keep the latest announcement of a peer until there is room. Bounded: the
   * one dropped is the oldest of the address holding the most, so a host that
   * floods pushes out its own announcements, not other hosts'.
   */
  private defer (entry: Deferred): void {
    const from = entry.peer.toString()
    // the same again (a peer announces on each direct connection) keeps its place
    if (this.waiting.get(from)?.userDb === entry.userDb) return
    this.waiting.delete(from) // another user db: re-inserted, the newest
    const max = this.init.maxDeferred ?? MAX_COMPANIONS
    while (this.waiting.size >= max) {
      const oldest = this.oldestOfBusiestAddress()
      if (oldest == null) break
      this.waiting.delete(oldest)
      this.drop(oldest, 'queue-full')
    }
    this.waiting.set(from, entry)
    this.stats.announcementsDeferred++
    this.log('deferred the announcement of %s by %p: %d verification(s) under way (%d for %s)', entry.userDb, entry.peer, this.verifying.size, this.pendingAt(entry.address), entry.address)
  }

  /** The peer whose deferred announcement is the oldest of the address with the most deferred ones. */
  private oldestOfBusiestAddress (): string | undefined {
    const counts = new Map<string, number>()
    const oldest = new Map<string, string>()
    for (const [from, { address }] of this.waiting) {
      counts.set(address, (counts.get(address) ?? 0) + 1)
      if (!oldest.has(address)) oldest.set(address, from)
    }
    let busiest: string | undefined
    for (const [address, n] of counts) {
      if (busiest == null || n > (counts.get(busiest) ?? 0)) busiest = address
    }
    return busiest == null ? undefined : oldest.get(busiest)
  }

  /** Verify deferred announcements while there is room, oldest first. */
  private drain (): void {
    for (const [from, { peer, userDb, address }] of [...this.waiting]) {
      if (!this.started || this.verifying.size >= (this.init.maxPending ?? MAX_PENDING_DISCOVERIES)) return
      if (this.inFlight.has(userDb) || this.full(address)) continue
      this.waiting.delete(from)
      if (!this.connected(peer)) {
        this.log('forgot the deferred announcement of %p: it is not connected', peer)
        continue
      }
      this.enqueue(userDb, peer)
    }
  }

  /** Verify `userDb` as announced by `peer`, trying again after a passing failure while the peer is connected. */
  private verify (userDb: string, peer: PeerId, address: string): void {
    const from = peer.toString()
    const controller = new AbortController()
    const verification: Verification = { userDb, peer, address, controller, running: false, queued: false }
    this.verifying.set(from, verification)
    this.inFlight.add(userDb)
    this.stats.discoveriesStarted++
    const signal = AbortSignal.any([controller.signal, this.shutdown.signal])
    const started = Date.now()
    let attempts = 0
    // before any event is dispatched: a listener may announce again at once
    const finish = (): void => {
      if (this.verifying.get(from) === verification) this.verifying.delete(from)
      this.inFlight.delete(userDb)
    }
    verification.done = pRetry(async () => {
      attempts++
      // after the first try of every other address: a host with many
      // verifications queued waits behind the others' first ones
      let ahead = 0
      for (const v of this.verifying.values()) if (v.queued && v.address === address) ahead++
      verification.queued = true
      await this.queue.add(async () => {
        verification.running = true
        const bound = deadline(this.init.timeout, signal, `verifying ${userDb} from ${from}`)
        try {
          await this.components.verifier.verify(userDb, from, bound.signal)
        } catch (err) {
          throw bound.signal.aborted ? bound.reason() : err
        } finally {
          bound.clear()
          verification.running = false
        }
      }, { signal, priority: -ahead }).finally(() => { verification.queued = false })
    }, {
      ...this.retry,
      signal,
      shouldRetry: ({ error, attemptNumber, retryDelay }) => {
        if (signal.aborted || isPermanent(error) || !this.connected(peer)) return false
        this.stats.discoveriesRetried++
        this.log('verifying %s from %p failed (attempt %d), again in %d ms: %e', userDb, peer, attemptNumber, retryDelay, error)
        return true
      }
    }).then(() => {
      finish()
      this.stats.discoveriesSucceeded++
      this.log('verified %s from %p in %d ms (attempt %d)', userDb, peer, Date.now() - started, attempts)
    }, (err: unknown) => {
      const replaced = this.verifying.get(from) !== verification
      finish()
      if (this.shutdown.signal.aborted) return
      if (controller.signal.aborted) {
        // replaced by a newer announcement, or the peer left before a try ran
        if (!replaced) this.stats.discoveriesFailed++
        this.log('stopped verifying %s from %p after %d attempt(s): %e', userDb, peer, attempts, controller.signal.reason)
        return
      }
      this.stats.discoveriesFailed++
      if (isPermanent(err)) {
        this.failed.add(`${from} ${userDb}`)
        this.drop(from, PERMANENT[(err as Error).name] ?? 'invalid-user-db')
        this.log.error('rejected user db %s from %s: %e', userDb, from, err)
      } else if (!this.connected(peer)) {
        this.log('gave up verifying %s from %p after %d attempt(s): it disconnected (last error: %e)', userDb, peer, attempts, err)
      } else {
        this.log.error('verifying %s from %s failed: %e', userDb, from, err)
      }
    }).finally(() => {
      this.drain()
    })
  }

  private drop (from: string, reason: DropReason): void {
    this.stats.messagesDropped[reason]++
    this.log('dropped a message from %s: %s', from, reason)
    this.components.events.safeDispatchEvent('message:dropped', { detail: { from, reason } })
  }
}
