/**
 * Replicas converge whatever the timing. OrbitDB exchanges heads once, when
 * it sees a peer subscribe to a database's topic; if that exchange fails or
 * races (a subscription seen before the direct link is up, a dial that lands
 * on the limited relayed connection, a fetch that times out), nothing
 * retries, and a replica can stay behind for good while its owner is
 * connected and looks fine.
 *
 * This part makes sure, for each open replica: whenever a direct
 * (unlimited) connection to its owner comes up, and every `syncInterval`
 * while it lasts, it reads the owner's heads over OrbitDB's own heads
 * protocol (sending ours, as OrbitDB does), and hands any head the replica
 * lacks to OrbitDB's sync, which fetches everything behind it. It keeps a
 * sync state per replica (synced as of when, syncing with progress, never
 * synced, owner unreachable since) and reports changes as `catalog:sync`.
 *
 * An owner that answers no heads to an empty replica is asked again a few
 * times before it is believed (an owner's handler can race its reply), but
 * not while it is asking us, its keeper, to keep it: its empty catalog is
 * then believed at once (the 3 more tries added 3.5 to 7 s of back-off to
 * every new peer's registration).
 */
import { Entry } from '@orbitdb/core'
import pRetry, { AbortError } from 'p-retry'
import { repeatingTask, type RepeatingTask } from '@libp2p/utils'
import { deliverHeads } from '../orbitdb/patches.ts'
import { headsProtocolOf } from '../orbitdb/entry-guard.ts'
import { nextEvent, withDeadline } from '../utils/abort.ts'
import { readToEnd } from '../utils/stream.ts'
import { KEEPER_PROTOCOL } from '../keeper/protocol.ts'
import type { Connection, Logger, PeerId } from '@libp2p/interface'
import type { NppComponents, Startable } from '../components.ts'
import type { Replica } from './replicas.ts'
import type { ReplicaSync } from '../types.ts'

/** How often replicas whose owner is connected are checked again. */
export const DEFAULT_SYNC_INTERVAL = 60_000
/** Time limit for reading an owner's heads. */
export const HEADS_TIMEOUT = 10_000
/** Time limit for the entries behind missing heads to arrive. */
export const FETCH_TIMEOUT = 60_000
/** Further tries at reading an owner's heads after a failure, before the next round. */
const HEADS_RETRIES = 3
/** Replicas checked at once in a periodic round. */
const ROUND_CONCURRENCY = 4
/** A head is one log entry: bounded like a block (1 MiB), with room. */
const MAX_HEAD_BYTES = 2 * 1024 * 1024
/** Heads read from one owner at most (a log has a handful). */
const MAX_HEADS = 64

export interface ConvergenceInit {
  /**
   * Peers that keep replicas for their owners (keepers, by peer id), asked
   * when the owner is not linked directly. Read at each check: keepers
   * learned later (from a relay's `/config`) are added to it.
   *
   * @default an empty set
   */
  keepers?: ReadonlySet<string>
  /** @default DEFAULT_SYNC_INTERVAL */
  syncInterval?: number
  /** @default HEADS_TIMEOUT */
  headsTimeout?: number
  /** @default FETCH_TIMEOUT */
  fetchTimeout?: number
}

export type ConvergenceComponents = Pick<NppComponents, 'libp2p' | 'events' | 'logger'> & {
  replicas: { list(): Replica[] }
  /** The keeper that introduced a replica's owner, asked first among the keepers. */
  introducerOf?: (replica: Replica) => string | undefined
}

/** A head of the owner's log: its hash, its bytes as sent, its clock. */
interface RemoteHead { hash: string, bytes: Uint8Array, entry: { clock: { time: number } } }

interface Tracked {
  state: ReplicaSync
  /** The check running now, if any (one at a time per replica). */
  running?: Promise<void>
  waiters: Array<() => void>
}

export class Convergence implements Startable {
  private readonly components: ConvergenceComponents
  private readonly init: Required<ConvergenceInit>
  private readonly log: Logger
  private readonly tracked = new Map<string, Tracked>()
  private readonly round: RepeatingTask
  private shutdown = new AbortController()
  private started = false

  constructor (components: ConvergenceComponents, init: ConvergenceInit = {}) {
    this.components = components
    this.init = { syncInterval: DEFAULT_SYNC_INTERVAL, headsTimeout: HEADS_TIMEOUT, fetchTimeout: FETCH_TIMEOUT, keepers: new Set<string>(), ...init }
    this.log = components.logger.forComponent('npp:companions:convergence')
    this.round = repeatingTask(async () => { await this.checkAll() }, this.init.syncInterval)
  }

  start (): void {
    if (this.started) return
    this.started = true
    this.shutdown = new AbortController()
    const { libp2p, events } = this.components
    libp2p.addEventListener('connection:open', this.onConnection)
    libp2p.addEventListener('peer:disconnect', this.onDisconnect)
    events.addEventListener('db:discovered', this.onCompanion)
    this.round.start()
    // replicas opened at start whose owners are already linked
    void this.checkAll()
  }

  stop (): void {
    if (!this.started) return
    this.started = false
    this.shutdown.abort()
    const { libp2p, events } = this.components
    libp2p.removeEventListener('connection:open', this.onConnection)
    libp2p.removeEventListener('peer:disconnect', this.onDisconnect)
    events.removeEventListener('db:discovered', this.onCompanion)
    this.round.stop()
    for (const t of this.tracked.values()) for (const wake of t.waiters.splice(0)) wake()
  }

  /** The sync state of `replica`. */
  state (replica: Replica): ReplicaSync {
    // only our own check counts: OrbitDB's 'join' also follows an exchange
    // that brought nothing (its dialer closes before the owner has sent)
    const t = this.tracked.get(replica.address)
    return t == null ? { state: 'never' } : { ...t.state }
  }

  /** Resolves when the replica is next known to be synced, or when `signal` fires. */
  async whenSynced (replica: Replica, signal: AbortSignal): Promise<void> {
    if (this.state(replica).state === 'synced') return
    const t = this.track(replica)
    await new Promise<void>((resolve) => {
      const done = (): void => { signal.removeEventListener('abort', done); resolve() }
      t.waiters.push(done)
      signal.addEventListener('abort', done, { once: true })
    })
  }

  /** Check `replica` against its owner now (if linked directly); one check per replica at a time. */
  async check (replica: Replica): Promise<void> {
    if (!this.started) return
    const t = this.track(replica)
    t.running ??= this.run(replica, t).finally(() => { t.running = undefined })
    await t.running
  }

  private track (replica: Replica): Tracked {
    let t = this.tracked.get(replica.address)
    if (t == null) {
      t = { state: { state: 'never' }, waiters: [] }
      this.tracked.set(replica.address, t)
    }
    return t
  }

  /**
   * Who to read a replica's heads from: its owner when linked directly, else
   * a keeper that is (the one that introduced the owner first): a keeper
   * holds what the owner wrote while both were online.
   */
  private source (replica: Replica): Connection | undefined {
    const introducer = this.components.introducerOf?.(replica)
    const candidates = [replica.owner, ...(introducer == null ? [] : [introducer]), ...this.init.keepers]
    for (const peer of candidates) {
      const connection = this.components.libp2p.getConnections().find(c => c.remotePeer.toString() === peer && c.limits == null && c.status === 'open')
      if (connection != null) return connection
    }
    return undefined
  }

  private async run (replica: Replica, t: Tracked): Promise<void> {
    const connection = this.source(replica)
    if (connection == null) {
      this.unreachable(replica, t)
      return
    }
    const signal = this.shutdown.signal
    try {
      // a stream reset or a busy owner passes: a few quick tries before the next round
      // an empty answer to an empty replica is asked again a few times before
      // it is believed: an owner whose handler raced its reply (seen with
      // OrbitDB's, under load) also answers nothing; unless the owner is
      // asking us to keep it (see ownerAsking)
      let emptyAnswers = 0
      const heads: RemoteHead[] = await pRetry(async () => {
        const link = this.directConnection(connection.remotePeer)
        if (link == null) throw new AbortError(`${connection.remotePeer.toString()} is no longer linked directly`)
        const answer = await withDeadline(this.init.headsTimeout, signal, `reading the heads of ${replica.address}`, async (bounded) => await this.readHeads(link, replica, bounded))
        if (answer.length === 0 && !this.ownerAsking(replica, link) && emptyAnswers++ < HEADS_RETRIES && (await replica.db.log.heads()).length === 0) throw new Error(`${replica.owner} sent no heads for ${replica.address}`)
        return answer
      }, { retries: HEADS_RETRIES, minTimeout: 500, factor: 2, randomize: true, signal })
      const missing: typeof heads = []
      for (const head of heads) if (!(await replica.db.log.has(head.hash))) missing.push(head)
      if (missing.length === 0) {
        this.set(replica, t, { state: 'synced', syncedAt: Date.now() })
        return
      }
      const have = Math.max(0, ...(await replica.db.log.heads()).map(e => e.clock.time))
      const want = Math.max(...missing.map(h => h.entry.clock.time))
      this.set(replica, t, { ...t.state, state: 'syncing', progress: { have, want } })
      this.log('%s is behind its owner %p (%d head(s) missing): fetching', replica.address, connection.remotePeer, missing.length)
      await withDeadline(this.init.fetchTimeout, signal, `fetching ${replica.address}`, async (bounded) => {
        // OrbitDB applies the heads (and fetches what is behind them) in its own queue
        const arrived = nextEvent(replica.db.events as unknown as EventTarget, 'update', () => true, bounded)
        arrived.catch(() => {})
        deliverHeads(this.components.libp2p.services.pubsub, replica.address, connection.remotePeer, missing.map(h => h.bytes))
        await this.untilIn(replica, missing.map(h => h.hash), bounded)
      })
      this.set(replica, t, { state: 'synced', syncedAt: Date.now() })
    } catch (err) {
      if (signal.aborted) return
      const message = err instanceof Error ? err.message : String(err)
      this.log('checking %s against %s failed - %s', replica.address, replica.owner, message)
      this.set(replica, t, { ...t.state, error: message })
    }
  }

  /** Resolves once every hash is in the replica's log (checked on each of its updates). */
  private async untilIn (replica: Replica, hashes: string[], signal: AbortSignal): Promise<void> {
    const events = replica.db.events
    const allIn = async (): Promise<boolean> => {
      for (const h of hashes) if (!(await replica.db.log.has(h))) return false
      return true
    }
    while (!(await allIn())) {
      await new Promise<void>((resolve, reject) => {
        const onUpdate = (): void => { cleanup(); resolve() }
        const onAbort = (): void => { cleanup(); reject(signal.reason) }
        const cleanup = (): void => { events.off('update', onUpdate); signal.removeEventListener('abort', onAbort) }
        events.on('update', onUpdate)
        signal.addEventListener('abort', onAbort, { once: true })
      })
    }
  }

  /** Our heads out, the owner's heads in, over OrbitDB's heads protocol for this database. */
  private async readHeads (connection: Connection, replica: Replica, signal: AbortSignal): Promise<RemoteHead[]> {
    const stream = await connection.newStream(headsProtocolOf(replica.address), { signal })
    // listen from the start (see readToEnd)
    const reading = readToEnd(stream, { signal, maxBytes: MAX_HEAD_BYTES * MAX_HEADS })
    reading.catch(() => {})
    // ours go out, but our writable end stays open until the owner has sent
    // its heads: OrbitDB's handler sends while it reads, and a send after the
    // other side closed its writable end fails, so closing first (as
    // OrbitDB 4.0's own dialer does, racing the handler) can get nothing back
    for (const head of await replica.db.log.heads()) {
      const bytes = await replica.db.log.storage.get(head.hash) as Uint8Array | undefined
      if (bytes != null) stream.send(bytes)
    }
    const chunks = await reading
    await stream.close({ signal })
    return await this.decodeHeads(chunks, replica)
  }

  /** Each head normally arrives as one chunk; a large one may be split: chunks are joined until they decode. */
  private async decodeHeads (chunks: Uint8Array[], replica: Replica): Promise<RemoteHead[]> {
    const heads: RemoteHead[] = []
    let pending: Uint8Array[] = []
    let pendingBytes = 0
    for (const part of chunks) {
      pending.push(part)
      pendingBytes += part.byteLength
      if (pendingBytes > MAX_HEAD_BYTES) throw new Error(`a head of ${replica.address} from ${replica.owner} is over ${MAX_HEAD_BYTES} bytes`)
      const bytes = pending.length === 1 ? part : concat(pending, pendingBytes)
      let entry: { hash: string, clock: { time: number } } | undefined
      try {
        entry = await Entry.decode(bytes)
      } catch {
        continue
      }
      pending = []
      pendingBytes = 0
      if (entry?.hash == null || typeof entry.clock?.time !== 'number') continue
      heads.push({ hash: entry.hash, bytes, entry })
      if (heads.length > MAX_HEADS) throw new Error(`${replica.owner} sent more than ${MAX_HEADS} heads for ${replica.address}`)
    }
    return heads
  }

  /**
   * Whether `link` is to the replica's owner and the owner has a keeper
   * request open to us (it registers: it is online, linked directly, and
   * waits for us to have its catalog). Its empty answer is then taken as
   * its empty catalog at once: 3 more tries, with back-off from 500 ms
   * (3.5 to 7 s in all), made every new peer's registration that much longer.
   */
  private ownerAsking (replica: Replica, link: Connection): boolean {
    if (link.remotePeer.toString() !== replica.owner) return false
    return this.components.libp2p.getConnections(link.remotePeer).some(c =>
      c.limits == null && c.streams.some(s => s.direction === 'inbound' && s.protocol === KEEPER_PROTOCOL))
  }

  private directConnection (peer: PeerId): Connection | undefined {
    return this.components.libp2p.getConnections(peer).find(c => c.limits == null && c.status === 'open')
  }

  private unreachable (replica: Replica, t: Tracked): void {
    if (t.state.state === 'unreachable') return
    this.set(replica, t, { ...t.state, state: 'unreachable', unreachableSince: Date.now() })
  }

  private set (replica: Replica, t: Tracked, state: ReplicaSync): void {
    const before = t.state
    t.state = state.state === 'synced' ? { state: 'synced', syncedAt: state.syncedAt } : state
    if (state.state === 'synced') for (const wake of t.waiters.splice(0)) wake()
    if (before.state !== t.state.state || before.error !== t.state.error || before.progress?.want !== t.state.progress?.want) {
      this.components.events.safeDispatchEvent('catalog:sync', { detail: { owner: replica.owner, address: replica.address, ...t.state } })
    }
  }

  private async checkAll (): Promise<void> {
    const replicas = this.components.replicas.list()
    for (let i = 0; i < replicas.length && this.started; i += ROUND_CONCURRENCY) {
      await Promise.all(replicas.slice(i, i + ROUND_CONCURRENCY).map(async r => { await this.check(r) }))
    }
  }

  private readonly onConnection = (evt: CustomEvent<Connection>): void => {
    const connection = evt.detail
    if (connection.limits != null) return
    const peer = connection.remotePeer.toString()
    const keeper = this.init.keepers.has(peer)
    for (const replica of this.components.replicas.list()) {
      if (replica.owner === peer || keeper || this.components.introducerOf?.(replica) === peer) void this.check(replica)
    }
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    for (const replica of this.components.replicas.list()) {
      // unreachable unless a keeper still links us to its catalog
      if (replica.owner === peer && this.source(replica) == null) this.unreachable(replica, this.track(replica))
    }
  }

  private readonly onCompanion = (evt: CustomEvent<{ nodeId: string }>): void => {
    for (const replica of this.components.replicas.list()) {
      if (replica.owner === evt.detail.nodeId) void this.check(replica)
    }
  }
}

function concat (parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}
