/**
 * The keeper side (issue 11): an always-on peer keeps replicas of the
 * databases of the users it serves, so a companion can replicate a catalog
 * while its owner is offline, and introduces the catalogs it keeps to the
 * peers that ask.
 *
 * Deny by default: only peers on the allowlist are kept (`open` serves
 * anyone, within the users quota). A kept user is a companion of the keeper:
 * verified the same way (its profile's `nodeId` is the peer that asked, its
 * proof checks out), replicated and kept in sync by the same parts. A
 * keeper does not announce itself to the peers it meets, and an
 * announcement from a peer it does not serve is refused.
 */
import { KEEPER_PROTOCOL, encode, readRequest, type KeeperRefusal, type KeeperResponse } from './protocol.ts'
import { InvalidRemoteDataError, TimeoutError } from '../errors.ts'
import { deadline } from '../utils/abort.ts'
import { MAX_COMPANIONS } from '../constants.ts'
import { KeyValue, MemoryStorage } from '@orbitdb/core'
import { Counters } from '../counters/counters.ts'
import { isOrbitDBAddress } from '../utils/validate.ts'
import type { Connection, Logger, Stream } from '@libp2p/interface'
import type { OrbitDBDatabase, OrbitDBEntry, OrbitDBStorage } from '../orbitdb/types.ts'
import type { NppComponents, Startable } from '../components.ts'
import type { AnnouncementVerifier } from '../companions/companions.ts'
import type { Companion, ReplicaSync } from '../types.ts'
import type { Replica } from '../companions/replicas.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { DocumentIndex } from '../catalog/doc-index.ts'
import { positiveInteger } from '../utils/validate.ts'
import PQueue from 'p-queue'

/** Requests a keeper handles at once per connection (a peer needs two). */
const MAX_INBOUND_STREAMS = 4
export const DEFAULT_MAX_PIECES_PER_USER = 100_000
export const DEFAULT_MAX_BYTES_PER_USER = 64 * 1024 * 1024
export const DEFAULT_MAX_BYTES = 4 * 1024 * 1024 * 1024
/** Addresses of a kept user handed out with an introduction. */
const MAX_INTRODUCED_ADDRS = 8
/** How long a kept user's databases stay open with nobody using them (ms). */
export const DEFAULT_KEEPER_IDLE_TIMEOUT = 60_000
/**
 * Kept users one peer may have opened by subscribing to their topics (a
 * newcomer checks at most `maxIntroduced`, 64 by default, introductions;
 * its companions' replicas stay subscribed): a peer subscribing to every
 * kept user's topics would otherwise open them all.
 */
export const MAX_OPENED_PER_PEER = 128
/**
 * Kept users open at once because peers wanted them; past it the least
 * recently used one nobody uses is closed first, and none opens while all
 * are in use (a registering user always opens). About 0.8 MB each.
 */
export const MAX_OPEN_USERS = 512
/** Kept users whose usage is unknown (a keeper upgraded from before it was saved) measured at once after start. */
const MEASURE_CONCURRENCY = 4

/** What a keeper keeps of one user (`GET /catalogs`). */
export interface KeptUser {
  peerId: string
  /** Its user db (profile). */
  userDb: string
  /** Its catalog. */
  catalog: string
  username: string
  /** Introduced to the peers the keeper serves. */
  listed: boolean
  pieces: number
  /** Bytes of log entries kept (profile, catalog, counters). */
  bytes: number
  /** When its catalog last changed on the keeper (ms since the epoch), or when it was first kept. */
  lastUpdate: number
}

interface Usage {
  pieces: number
  bytes: number
  lastUpdate: number
  /** The user's practice-counters database, once read from its profile (so its topic is known while it is closed). */
  counters?: string
}

/** A kept user whose databases are open: since when nobody used them. */
interface Active {
  /** The catalog replica once it and the user's other databases are open. */
  ready: Promise<Replica | undefined>
  lastUsed: number
}

export interface KeeperServiceInit {
  /**
   * Peer ids whose databases are kept.
   *
   * @default []
   */
  allow?: string[]
  /**
   * Peer ids never kept, even by an open keeper (`deny()` adds to it,
   * `allow()` takes out).
   *
   * @default []
   */
  deny?: string[]
  /**
   * Keep anyone's databases (within `maxUsers`), not only the allowlist's.
   *
   * @default false
   */
  open?: boolean
  /**
   * Users kept at most.
   *
   * @default MAX_COMPANIONS (256)
   */
  maxUsers?: number
  /**
   * Pieces kept at most per user; a user whose catalog grows beyond is no
   * longer kept (and refused as `over-quota` until it shrinks).
   *
   * @default DEFAULT_MAX_PIECES_PER_USER (100000)
   */
  maxPiecesPerUser?: number
  /**
   * Bytes of log entries kept at most per user (profile, catalog and
   * counters), as above.
   *
   * @default DEFAULT_MAX_BYTES_PER_USER (64 MiB)
   */
  maxBytesPerUser?: number
  /**
   * Bytes of log entries kept at most for all users together; a new user
   * that would go over is refused as `over-quota`.
   *
   * @default DEFAULT_MAX_BYTES (4 GiB)
   */
  maxBytes?: number
  /**
   * Peer ids kept but not introduced to others (their owners asked so).
   *
   * @default []
   */
  unlisted?: string[]
  /**
   * How long (ms) a kept user's databases stay open once nobody uses them:
   * no peer subscribed to one of their topics and the user not connected.
   * They open again when a peer subscribes, the user connects or registers.
   *
   * @default DEFAULT_KEEPER_IDLE_TIMEOUT (60000)
   */
  idleTimeout?: number
  /**
   * Where the usage of each kept user (pieces, bytes, last update) is kept
   * between starts, so `kept()` needs no database open.
   *
   * @default in memory
   */
  usageStorage?: OrbitDBStorage
  /** Time limit (ms) for verifying a profile before answering. */
  timeout: number
}

export interface KeeperServiceComponents extends Pick<NppComponents, 'libp2p' | 'logger' | 'open' | 'events'> {
  /** The keeper's companions: its kept users. */
  companions: AnnouncementVerifier & {
    list(): Companion[]
    remove(peerId: string): Promise<void>
    openReplicas(): Replica[]
    openReplicaOf(address: string, signal: AbortSignal): Promise<Replica | undefined>
    closeReplicaOf(address: string): Promise<void>
    syncNow(replica: Replica, signal: AbortSignal): Promise<ReplicaSync>
  }
}

/** The documents of a catalog kept as a bare log, counted through a throwaway index (`entries` newest first, as the log iterates). */
function countPieces (entries: OrbitDBEntry[]): number {
  const index = new DocumentIndex([])
  const changed = new Set<any>()
  // applied oldest first
  for (let n = entries.length - 1; n >= 0; n--) index.apply(entries[n]!, changed)
  return index.count()
}

/** A refusal as thrown inside the keeper, answered as `{ ok: false, error }`. */
export class KeeperRefusalError extends InvalidRemoteDataError {
  override name = 'KeeperRefusalError'
  readonly reason: KeeperRefusal
  constructor (reason: KeeperRefusal, message: string) {
    super(message)
    this.reason = reason
  }
}

export class KeeperService implements Startable, AnnouncementVerifier {
  private readonly components: KeeperServiceComponents
  private readonly init: KeeperServiceInit
  private readonly log: Logger
  private readonly allowed: Set<string>
  private readonly unlisted: Set<string>
  private readonly denied: Set<string>
  /** The user db and counters replicas held open for each kept user (the catalog's is the companions'), by peer id. */
  private readonly held = new Map<string, Promise<OrbitDBDatabase[]>>()
  /** Kept users whose databases are open now, by peer id (the others are on disk only). */
  private readonly active = new Map<string, Active>()
  /** Kept users whose databases are being closed, by peer id: an open waits for it. */
  private readonly closing = new Map<string, Promise<void>>()
  /** Topics (database addresses) of the kept users' databases, to their peer id. */
  private readonly topics = new Map<string, string>()
  /** The topics of each kept user's databases, by peer id. */
  private readonly topicsOf = new Map<string, string[]>()
  /** The kept users each peer has opened by subscribing (while open), by the subscriber's peer id. */
  private readonly openedBy = new Map<string, Set<string>>()
  /** Peers told (in the log) that they hit `MAX_OPENED_PER_PEER`. */
  private readonly capped = new Set<string>()
  /** Kept users being dropped: nothing opens them again. */
  private readonly dropping = new Set<string>()
  /** Measures kept users whose usage is unknown, a few at a time (cleared at stop). */
  private readonly measureQueue = new PQueue({ concurrency: MEASURE_CONCURRENCY })
  /** `init.idleTimeout`, checked. */
  private readonly idleTimeout: number
  /** Usage per kept user, by peer id (saved in `usageStorage`; recomputed after its databases change). */
  private readonly usage = new Map<string, Usage>()
  /** Usage recomputations under way, by peer id (one at a time each). */
  private readonly measuring = new Map<string, Promise<Usage>>()
  /** Users measured again once the current measurement ends. */
  private readonly remeasure = new Set<string>()
  private usageStorage?: OrbitDBStorage
  private sweeper?: ReturnType<typeof setInterval>
  private shutdown = new AbortController()
  private started = false
  /** Called when the allowlist or the unlisted set changes (see `onChange`). */
  private readonly changeListeners = new Set<() => void | Promise<void>>()

  constructor (components: KeeperServiceComponents, init: KeeperServiceInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('npp:keeper')
    this.allowed = new Set(init.allow ?? [])
    this.unlisted = new Set(init.unlisted ?? [])
    this.denied = new Set(init.deny ?? [])
    this.idleTimeout = positiveInteger('keeper.idleTimeout', init.idleTimeout, DEFAULT_KEEPER_IDLE_TIMEOUT)
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.shutdown = new AbortController()
    // what was kept before a restart is on disk: nothing opens until it is wanted
    this.usageStorage = this.init.usageStorage ?? await MemoryStorage()
    await this.loadUsage()
    this.indexTopics()
    const { libp2p } = this.components
    libp2p.services.pubsub.addEventListener('subscription-change', this.onSubscription)
    libp2p.addEventListener('peer:connect', this.onPeerConnect)
    this.sweeper = setInterval(() => { void this.sweep() }, Math.max(250, Math.min(this.idleTimeout / 4, 15_000)))
    this.sweeper.unref?.()
    await libp2p.handle(KEEPER_PROTOCOL, this.onStream, { maxInboundStreams: MAX_INBOUND_STREAMS })
    // kept before usage was saved (an upgraded keeper): measured in the
    // background, each opened and closed again; the total quota counts
    // them at the per-user maximum until then
    for (const c of this.components.companions.list()) {
      if (this.usage.has(c.nodeId)) continue
      this.measureQueue.add(async () => { await this.measureIdle(c.nodeId) }).catch((err: unknown) => {
        if (this.started) this.log.error('could not measure what is kept of %s: %e', c.nodeId, err)
      })
    }
  }

  /** Open `peerId`'s databases to measure them, and close them again unless someone uses them. */
  private async measureIdle (peerId: string): Promise<void> {
    if (!this.started || this.usage.has(peerId)) return
    const wasOpen = this.active.has(peerId)
    await this.activate(peerId, true)
    // outside the activation: dropping a user waits for its activation
    await this.enforce(peerId)
    if (!wasOpen && this.started && this.active.has(peerId) && !this.inUse(peerId)) await this.deactivate(peerId)
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort()
    this.measureQueue.clear()
    clearInterval(this.sweeper)
    const { libp2p } = this.components
    libp2p.services.pubsub.removeEventListener('subscription-change', this.onSubscription)
    libp2p.removeEventListener('peer:connect', this.onPeerConnect)
    await libp2p.unhandle(KEEPER_PROTOCOL)
    await Promise.allSettled([...this.active.values()].map(async a => await a.ready))
    await Promise.allSettled([...this.closing.values()])
    this.active.clear()
    this.openedBy.clear()
    this.capped.clear()
    // the catalog replicas close with the companions
    await Promise.all([...this.held.keys()].map(async peerId => { await this.release(peerId) }))
  }

  private async loadUsage (): Promise<void> {
    this.usage.clear()
    const kept = new Set(this.components.companions.list().map(c => c.nodeId))
    for await (const [peerId, value] of this.usageStorage!.iterator()) {
      try {
        const usage = JSON.parse(new TextDecoder().decode(value)) as Usage
        if (kept.has(peerId)) this.usage.set(peerId, usage)
        else await this.usageStorage!.del(peerId)
      } catch (err) {
        this.log.error('the saved usage of %s is unreadable; it is measured again when its databases open: %e', peerId, err)
      }
    }
  }

  private async saveUsage (peerId: string): Promise<void> {
    const usage = this.usage.get(peerId)
    if (usage == null) await this.usageStorage?.del(peerId)
    else await this.usageStorage?.put(peerId, new TextEncoder().encode(JSON.stringify(usage)))
  }

  /** Map the topics of every kept user's databases to the user. */
  private indexTopics (): void {
    this.topics.clear()
    this.topicsOf.clear()
    for (const c of this.components.companions.list()) {
      const counters = this.usage.get(c.nodeId)?.counters
      for (const topic of [c.address, c.pieces, ...(counters != null ? [counters] : [])]) this.addTopic(c.nodeId, topic)
    }
  }

  private addTopic (peerId: string, topic: string): void {
    this.topics.set(topic, peerId)
    const of = this.topicsOf.get(peerId) ?? []
    if (!of.includes(topic)) of.push(topic)
    this.topicsOf.set(peerId, of)
  }

  /** The kept user whose database has the topic `topic`, if any. */
  private ownerOf (topic: string): string | undefined {
    const owner = this.topics.get(topic)
    if (owner != null) return owner
    // a user kept since the index was built
    if (this.topicsOf.size < this.components.companions.list().length) this.indexTopics()
    return this.topics.get(topic)
  }

  private readonly onSubscription = (evt: CustomEvent<{ peerId: unknown, subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
    const from = String(evt.detail.peerId)
    for (const { topic, subscribe } of evt.detail.subscriptions) {
      if (!subscribe) continue
      const owner = this.ownerOf(topic)
      if (owner == null) continue
      // a peer wants a kept user's database: open them, OrbitDB's sync does
      // the rest. Only for a peer this keeper serves (or a kept user), and
      // a bounded number per peer: strangers open nothing
      if (!this.serves(from) && !this.isKept(from)) continue
      const opened = this.openedBy.get(from) ?? new Set<string>()
      if (!opened.has(owner) && !this.active.has(owner) && opened.size >= MAX_OPENED_PER_PEER) {
        if (!this.capped.has(from)) this.log('%s subscribed to more than %d kept users: not opening more for it', from, MAX_OPENED_PER_PEER)
        this.capped.add(from)
        continue
      }
      opened.add(owner)
      this.openedBy.set(from, opened)
      this.activate(owner).catch(() => {})
    }
  }

  private isKept (peerId: string): boolean {
    return this.topicsOf.has(peerId) || this.usage.has(peerId)
  }

  private readonly onPeerConnect = (evt: CustomEvent<unknown>): void => {
    const peerId = String(evt.detail)
    if (!this.isKept(peerId)) return
    // a kept user is back: bring its replica up to date with what it wrote meanwhile
    this.activate(peerId).then(async replica => {
      if (replica != null && this.started) await this.components.companions.syncNow(replica, this.shutdown.signal)
    }).catch((err: unknown) => { if (this.started) this.log('could not sync %s, back online: %e', peerId, err) })
  }

  /**
   * Open `peerId`'s catalog replica, user db and practice counters (once;
   * each call counts as a use). Resolves to the catalog replica (undefined
   * when `peerId` is not kept); rejects when they would not open (logged,
   * and tried again at the next use).
   */
  private async activate (peerId: string, required = false): Promise<Replica | undefined> {
    const known = this.active.get(peerId)
    if (known != null) {
      known.lastUsed = Date.now()
      await known.ready
      // the replica may have been replaced since (a new catalog address)
      return this.replicaOf(peerId)
    }
    const kept = this.components.companions.list().find(c => c.nodeId === peerId)
    if (kept == null || !this.started || this.dropping.has(peerId)) return undefined
    if (this.active.size >= MAX_OPEN_USERS && !this.makeRoom() && !required) {
      this.log('%d kept users open and all in use: not opening %s', this.active.size, peerId)
      return undefined
    }
    // a user kept since the topics were indexed
    this.addTopic(peerId, kept.address)
    this.addTopic(peerId, kept.pieces)
    const entry: Active = { lastUsed: Date.now(), ready: Promise.resolve(undefined) }
    entry.ready = (async () => {
      await this.closing.get(peerId)
      if (this.dropping.has(peerId) || !this.isKept(peerId)) throw new Error(`${peerId} is no longer kept`)
      const replica = await this.components.companions.openReplicaOf(kept.address, this.shutdown.signal)
      await this.hold(peerId, kept.address)
      this.log.trace('opened the databases of %s', peerId)
      this.components.events.safeDispatchEvent('keeper:activity', { detail: { peerId, open: true } })
      return replica
    })()
    this.active.set(peerId, entry)
    entry.ready.catch((err: unknown) => {
      if (this.active.get(peerId) === entry) this.active.delete(peerId)
      if (this.started) this.log.error('could not open the databases of %s: %e', peerId, err)
    })
    return await entry.ready
  }

  /**
   * Whether a kept user's databases are in use: the user connected, or a
   * peer this keeper serves (or a kept user) subscribed to one of their
   * topics (a stranger's subscription keeps nothing open).
   */
  private inUse (peerId: string): boolean {
    const { libp2p } = this.components
    if (this.measuring.has(peerId)) return true
    try {
      if (libp2p.getConnections(peerIdFromString(peerId)).length > 0) return true
    } catch {}
    for (const topic of this.topicsOf.get(peerId) ?? []) {
      if (libp2p.services.pubsub.getSubscribers(topic).some(p => this.serves(p.toString()) || this.isKept(p.toString()))) return true
    }
    return false
  }

  /** Close the least recently used open user nobody uses (at `MAX_OPEN_USERS`); false when all are in use. */
  private makeRoom (): boolean {
    let oldest: [string, Active] | undefined
    for (const entry of this.active) {
      if ((oldest == null || entry[1].lastUsed < oldest[1].lastUsed) && !this.inUse(entry[0])) oldest = entry
    }
    if (oldest == null) return false
    void this.deactivate(oldest[0])
    return true
  }

  /** Close the databases of kept users nobody used for `idleTimeout`. */
  private async sweep (): Promise<void> {
    const now = Date.now()
    for (const [peerId, entry] of this.active) {
      if (!this.started) return
      if (this.inUse(peerId)) entry.lastUsed = now
      else if (now - entry.lastUsed >= this.idleTimeout) await this.deactivate(peerId)
    }
  }

  /** Close `peerId`'s databases (they stay kept, on disk). */
  private async deactivate (peerId: string): Promise<void> {
    const entry = this.active.get(peerId)
    if (entry == null) return
    this.active.delete(peerId)
    const address = this.components.companions.list().find(c => c.nodeId === peerId)?.address
    const closing = (async () => {
      await entry.ready.catch(() => {})
      await this.measuring.get(peerId)?.catch(() => {})
      await this.release(peerId)
      if (address != null) await this.components.companions.closeReplicaOf(address)
      this.log.trace('closed the databases of %s', peerId)
      this.components.events.safeDispatchEvent('keeper:activity', { detail: { peerId, open: false } })
    })()
    this.closing.set(peerId, closing)
    for (const [from, opened] of this.openedBy) {
      opened.delete(peerId)
      if (opened.size === 0) this.openedBy.delete(from)
    }
    try {
      await closing
    } finally {
      if (this.closing.get(peerId) === closing) this.closing.delete(peerId)
    }
  }

  /**
   * Keep `peerId`'s user db and practice counters open (so synced, and
   * served to whoever opens them: an introduced profile is read from here).
   */
  private async hold (peerId: string, userDb: string): Promise<void> {
    if (this.held.has(peerId)) {
      await this.held.get(peerId)
      return
    }
    const opening = (async () => {
      const dbs: OrbitDBDatabase[] = []
      try {
        const user = await this.components.open<any>(userDb, { Database: KeyValue() })
        dbs.push(user)
        const counters: unknown = await user.get('counters')
        if (isOrbitDBAddress(counters)) {
          dbs.push(await this.components.open<any>(counters, { Database: Counters() }))
          this.addTopic(peerId, counters)
        }
      } catch (err) {
        this.log.error('could not hold the databases of %s: %e', peerId, err)
      }
      const catalog = this.replicaOf(peerId)?.db
      const changed = (): void => { this.remeasureLater(peerId) }
      for (const db of [...dbs, ...(catalog == null ? [] : [catalog])]) db.events.on('update', changed)
      return dbs
    })()
    this.held.set(peerId, opening)
    await opening
    // measured when first kept; later, when its databases change
    if (!this.usage.has(peerId)) await this.measure(peerId)
  }

  private replicaOf (peerId: string): Replica | undefined {
    return this.components.companions.openReplicas().find(r => r.owner === peerId)
  }

  /** Count what is kept of `peerId`: its pieces, and the bytes of every entry of its three logs. */
  private async measure (peerId: string): Promise<Usage> {
    const running = this.measuring.get(peerId)
    if (running != null) {
      this.remeasure.add(peerId)
      return await running
    }
    const work = (async (): Promise<Usage> => {
      const replica = this.replicaOf(peerId)
      const dbs: OrbitDBDatabase[] = [...(await this.held.get(peerId) ?? []), ...(replica == null ? [] : [replica.db])]
      let bytes = 0
      // a bare catalog's pieces are counted from the entries read here, in the same pass
      const catalogEntries: OrbitDBEntry[] = []
      for (const db of dbs) {
        const bare = replica?.bare === true && db === replica.db
        for await (const entry of db.log.iterator()) {
          const block = await db.log.storage.get(entry.hash) as Uint8Array | undefined
          bytes += block?.byteLength ?? 0
          if (bare) catalogEntries.push(entry)
        }
      }
      const catalog = replica?.db as unknown as { count?: () => Promise<number>, all?: () => Promise<unknown[]> } | undefined
      const pieces = replica == null
        ? 0
        : replica.bare
          ? countPieces(catalogEntries)
          : typeof catalog?.count === 'function' ? await catalog.count() : (await catalog?.all?.() ?? []).length
      const before = this.usage.get(peerId)
      const same = before != null && before.bytes === bytes && before.pieces === pieces
      // held: the user db, then the counters when the profile names them
      const counters = (await this.held.get(peerId))?.[1]?.address ?? before?.counters
      const usage: Usage = { pieces, bytes, lastUpdate: same ? before.lastUpdate : Date.now(), ...(counters != null ? { counters } : {}) }
      // dropped meanwhile: nothing to record
      if (this.dropping.has(peerId) || !this.components.companions.list().some(c => c.nodeId === peerId)) return usage
      this.usage.set(peerId, usage)
      if (!same || before?.counters !== usage.counters) await this.saveUsage(peerId)
      const kept = same ? undefined : this.kept().find(k => k.peerId === peerId)
      if (kept != null) this.components.events.safeDispatchEvent('keeper:kept', { detail: kept })
      return usage
    })().finally(() => {
      this.measuring.delete(peerId)
      if (this.remeasure.delete(peerId)) this.remeasureLater(peerId)
    })
    this.measuring.set(peerId, work)
    return await work
  }

  /** Measure `peerId` again (its databases changed) and enforce its quota; failures (a close under way) are logged. */
  private remeasureLater (peerId: string): void {
    if (!this.started || !this.held.has(peerId)) return
    this.measure(peerId).then(async () => { await this.enforce(peerId) }).catch((err: unknown) => {
      if (this.started) this.log('measuring what is kept of %s failed: %e', peerId, err)
    })
  }

  /** Stop keeping a user over its quota (it is refused as `over-quota` when it asks again). */
  private async enforce (peerId: string): Promise<void> {
    const usage = this.usage.get(peerId)
    const over = usage == null ? undefined : this.overQuota(usage)
    if (over == null || !this.started || this.dropping.has(peerId)) return
    this.log.error('no longer keeping %s: %s', peerId, over)
    await this.drop(peerId)
    this.components.events.safeDispatchEvent('keeper:dropped', { detail: { peerId, reason: 'over-quota', message: over } })
  }

  /** Why `usage` is over a per-user quota, if it is. */
  private overQuota (usage: Usage): string | undefined {
    const maxPieces = this.init.maxPiecesPerUser ?? DEFAULT_MAX_PIECES_PER_USER
    const maxBytes = this.init.maxBytesPerUser ?? DEFAULT_MAX_BYTES_PER_USER
    if (usage.pieces > maxPieces) return `${usage.pieces} pieces, over this keeper's ${maxPieces} per user`
    if (usage.bytes > maxBytes) return `${usage.bytes} bytes, over this keeper's ${maxBytes} per user`
    return undefined
  }

  /** Bytes kept for every user but `except`; a user not measured yet counts at the per-user maximum. */
  private bytesKept (except?: string): number {
    let total = 0
    for (const c of this.components.companions.list()) {
      if (c.nodeId === except) continue
      total += this.usage.get(c.nodeId)?.bytes ?? (this.init.maxBytesPerUser ?? DEFAULT_MAX_BYTES_PER_USER)
    }
    return total
  }

  private async drop (peerId: string): Promise<void> {
    this.dropping.add(peerId)
    try {
      await this.deactivate(peerId)
      await this.release(peerId)
      this.usage.delete(peerId)
      await this.saveUsage(peerId)
      for (const topic of this.topicsOf.get(peerId) ?? []) this.topics.delete(topic)
      this.topicsOf.delete(peerId)
      await this.components.companions.remove(peerId)
    } finally {
      this.dropping.delete(peerId)
    }
  }

  private async release (peerId: string): Promise<void> {
    const dbs = await this.held.get(peerId)
    this.held.delete(peerId)
    await Promise.all((dbs ?? []).map(async db => { await db.close().catch(() => {}) }))
  }

  /** Serve `peerId` from now on. Idempotent. */
  allow (peerId: string): void {
    const undenied = this.denied.delete(peerId)
    if (this.allowed.has(peerId) && !undenied) return
    this.log('allowed %s', peerId)
    this.allowed.add(peerId)
    void this.changed()
  }

  /**
   * Stop serving `peerId`, even if this keeper is open, and drop what is
   * kept of it (until `allow(peerId)`). Idempotent.
   */
  async deny (peerId: string): Promise<void> {
    const unallowed = this.allowed.delete(peerId)
    const newly = !this.denied.has(peerId)
    this.denied.add(peerId)
    if (unallowed || newly) {
      this.log('denied %s', peerId)
      await this.changed()
    }
    const kept = this.usage.has(peerId)
    await this.drop(peerId)
    if (kept) this.components.events.safeDispatchEvent('keeper:dropped', { detail: { peerId, reason: 'not-allowed', message: `${peerId} was denied` } })
  }

  /** The allowlist. */
  allowlist (): string[] {
    return [...this.allowed]
  }

  /** Peer ids kept but not introduced to others (they registered with `listed: false`). */
  unlistedPeers (): string[] {
    return [...this.unlisted]
  }

  /** Peer ids denied: never served, even by an open keeper. */
  deniedPeers (): string[] {
    return [...this.denied]
  }

  /**
   * Call `listener` after each change of the allowlist or of the unlisted
   * set, so they can be saved (the keeper command writes them to its
   * directory). A peer that registers unlisted is answered once the
   * listeners' promises have settled, so what it was told is saved. Returns
   * the function that removes it.
   */
  onChange (listener: () => void | Promise<void>): () => void {
    this.changeListeners.add(listener)
    return () => { this.changeListeners.delete(listener) }
  }

  private async changed (): Promise<void> {
    await Promise.all([...this.changeListeners].map(async listener => {
      try {
        await listener()
      } catch (err) {
        this.log.error('a change listener failed: %e', err)
      }
    }))
  }

  /** Whether `peerId` may be kept (not denied, and allowlisted or the keeper is open). */
  serves (peerId: string): boolean {
    return !this.denied.has(peerId) && (this.init.open === true || this.allowed.has(peerId))
  }

  /** The users kept: who, whether each is introduced to others, pieces, bytes, last update. */
  kept (): KeptUser[] {
    return this.components.companions.list().map(c => {
      const u = this.usage.get(c.nodeId)
      return {
        peerId: c.nodeId,
        userDb: c.address,
        catalog: c.pieces,
        username: c.username,
        listed: !this.unlisted.has(c.nodeId),
        pieces: u?.pieces ?? 0,
        bytes: u?.bytes ?? 0,
        lastUpdate: u?.lastUpdate ?? c.lastSeen
      }
    })
  }

  /**
   * Replicas kept on disk (user, catalog and counters databases), the users
   * whose databases are open now (`active`; the others open when wanted),
   * the bytes of their entries, and the users not measured yet
   * (`unmeasured`: kept before usage was saved, measured after start) (`/health`).
   */
  storage (): { users: number, replicas: number, active: number, bytes: number, unmeasured: number } {
    let replicas = 0
    let bytes = 0
    let unmeasured = 0
    const users = this.components.companions.list()
    for (const c of users) {
      const usage = this.usage.get(c.nodeId)
      replicas += usage?.counters != null ? 3 : 2
      if (usage == null) unmeasured++
      else bytes += usage.bytes
    }
    return { users: users.length, replicas, active: this.active.size, bytes, unmeasured }
  }

  /** Where a kept user was last seen listening (its identify-reported addresses). */
  private async addressesOf (peerId: string): Promise<string[]> {
    try {
      const peer = await this.components.libp2p.peerStore.get(peerIdFromString(peerId))
      return peer.addresses.map(a => a.multiaddr.toString()).slice(0, MAX_INTRODUCED_ADDRS)
    } catch {
      return []
    }
  }

  /**
   * Keep `from`'s databases: refused unless it is served and within the
   * quota; then verified and kept as a companion is.
   */
  async verify (userDb: string, from: string, signal: AbortSignal): Promise<void> {
    if (!this.serves(from)) throw new KeeperRefusalError('not-allowed', `${from} is not on this keeper's allowlist`)
    const kept = this.components.companions.list()
    const max = this.init.maxUsers ?? MAX_COMPANIONS
    if (kept.length >= max && !kept.some(c => c.nodeId === from)) throw new KeeperRefusalError('over-quota', `this keeper keeps ${max} users already`)
    await this.components.companions.verify(userDb, from, signal)
    // open (and so counted in use) while it registers: verification opened its catalog
    const replica = await this.activate(from)
    // what the peer has now: its quota is checked on its latest catalog, and
    // a `registered` peer may go offline knowing the keeper has it all
    if (replica != null) {
      const sync = await this.components.companions.syncNow(replica, signal)
      if (sync.state !== 'synced') throw new KeeperRefusalError('unavailable', `could not sync ${from}'s catalog: ${sync.error ?? sync.state}`)
    }
    const usage = await this.measure(from)
    const over = this.overQuota(usage)
    const maxBytes = this.init.maxBytes ?? DEFAULT_MAX_BYTES
    const total = over == null && this.bytesKept(from) + usage.bytes > maxBytes ? `this keeper's ${maxBytes} bytes would be exceeded` : undefined
    if (over != null || total != null) {
      await this.drop(from)
      throw new KeeperRefusalError('over-quota', over ?? total ?? '')
    }
  }

  private readonly onStream = (stream: Stream, connection: Connection): void => {
    void this.serve(stream, connection)
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString()
    const bound = deadline(this.init.timeout, this.shutdown.signal, `serving ${from}`)
    try {
      const request = await readRequest(stream, bound.signal)
      let response: KeeperResponse
      if (request == null) {
        response = { ok: false, error: 'bad-request', message: 'expected {"op":"keep","userDb":…} or {"op":"list"}' }
      } else if (request.op === 'list') {
        const listed = this.serves(from) ? this.kept().filter(c => c.listed && c.peerId !== from) : []
        const catalogs = await Promise.all(listed.map(async c => ({ peerId: c.peerId, userDb: c.userDb, multiaddrs: await this.addressesOf(c.peerId), lastUpdate: c.lastUpdate })))
        response = { ok: true, catalogs }
      } else {
        response = await this.keep(request.userDb, from, request.listed, bound.signal)
      }
      stream.send(encode(response))
      await stream.close({ signal: bound.signal })
    } catch (err) {
      this.log('a request from %s failed: %e', from, err)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      bound.clear()
    }
  }

  private async keep (userDb: string, from: string, listed: boolean, signal: AbortSignal): Promise<KeeperResponse> {
    try {
      await this.verify(userDb, from, signal)
      const wasListed = !this.unlisted.has(from)
      if (listed) this.unlisted.delete(from)
      else this.unlisted.add(from)
      if (wasListed !== listed) await this.changed()
      this.log('keeping %s (%s)', from, listed ? 'listed' : 'unlisted')
      return { ok: true, listed }
    } catch (err) {
      if (err instanceof KeeperRefusalError) {
        this.log('refused to keep %s: %s', from, err.message)
        return { ok: false, error: err.reason, message: err.message }
      }
      const message = err instanceof Error ? err.message : String(err)
      if (err instanceof InvalidRemoteDataError) return { ok: false, error: 'invalid-profile', message }
      if (signal.aborted || err instanceof TimeoutError) return { ok: false, error: 'unavailable', message: `could not verify the profile in time: ${message}` }
      return { ok: false, error: 'unavailable', message }
    }
  }
}
