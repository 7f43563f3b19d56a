/**
 * Companions: peers whose catalogs this peer replicates and queries. This
 * part composes the register (who), the replicas (their catalogs), the
 * profile verifier (whether an announced peer is who it says) and the links
 * (online state and redials), and is what discovery hands announcements to.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { raceSignal } from 'race-signal'
import PQueue from 'p-queue'
import { MAX_COMPANIONS, MAX_COMPANION_MULTIADDRS } from '../constants.ts'
import { tryMultiaddr } from '../utils/multiaddr.ts'
import { InvalidRemoteDataError } from '../errors.ts'
import { CompanionRegister } from './register.ts'
import { Replicas, type Replica } from './replicas.ts'
import { ProfileVerifier, identityOf } from './verify.ts'
import { CompanionLinks } from './links.ts'
import { Convergence, type ConvergenceInit } from './convergence.ts'
import type { Logger } from '@libp2p/interface'
import type { NppComponents, Startable } from '../components.ts'
import type { KeyValueDatabase } from '../orbitdb/types.ts'
import type { Companion, CompanionRecord, ReplicaSync } from '../types.ts'

export type { Replica } from './replicas.ts'

export interface CompanionsInit {
  reconnectInterval: number
  maxBackoff: number
  dialTimeout: number
  /** Keep catalog indexes in memory only (`storage: 'memory'`). */
  memory: boolean
  /** How replicas are kept converged with their owners (see `Convergence`). */
  convergence?: ConvergenceInit
  /**
   * Companions recorded at most (a keeper's are its kept users: `maxUsers`).
   *
   * @default MAX_COMPANIONS (256)
   */
  maxCompanions?: number
  /**
   * Open no replica at start: the owner of the companions (a keeper) opens
   * them when they are wanted (`openReplicaOf`) and closes them when idle
   * (`closeReplicaOf`). Default false.
   */
  lazy?: boolean
  /** Replicas are bare logs, without documents (see `ReplicasInit.bare`). Default false. */
  bare?: boolean
}

export interface CompanionsComponents extends NppComponents {
  /** The own `companions` register database. */
  register: KeyValueDatabase<CompanionRecord>
}

/** What discovery needs: check an announced user db and keep its owner as a companion. */
export interface AnnouncementVerifier {
  verify(userDb: string, from: string, signal: AbortSignal): Promise<void>
}

/**
 * A valid profile refused all the same: its OrbitDB identity is already a
 * companion through another peer id that is connected (issue 10, finding 3:
 * one identity announced from 137 fresh peer keys became 137 companions).
 * Internal: discovery drops the announcement as `duplicate-identity`.
 */
export class DuplicateIdentityError extends InvalidRemoteDataError {
  override name = 'DuplicateIdentityError'
}

/** Replicas opened at once at start. */
const START_CONCURRENCY = 16

export class Companions implements Startable, AnnouncementVerifier {
  private readonly components: CompanionsComponents
  private readonly init: CompanionsInit
  private readonly log: Logger
  private readonly register: CompanionRegister
  private readonly replicas: Replicas
  private readonly verifier: ProfileVerifier
  private readonly links: CompanionLinks
  private readonly convergence: Convergence
  /**
   * The OrbitDB identity of each companion whose replica is open (its
   * catalog's writers, which verification checked are its user db's), by
   * user-db address.
   */
  private readonly identities = new Map<string, string>()
  /** Companions whose replica would not open at start, by user-db address (until a later open succeeds). */
  private readonly failures = new Map<string, { owner: string, address: string, error: string }>()
  private readonly shutdown = new AbortController()
  private started = false

  constructor (components: CompanionsComponents, init: CompanionsInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('npp:companions')
    this.register = new CompanionRegister(components)
    this.replicas = new Replicas(components, { memory: init.memory, bare: init.bare })
    this.verifier = new ProfileVerifier({ ...components, replicas: this.replicas })
    this.links = new CompanionLinks({ ...components, register: this.register }, init)
    this.convergence = new Convergence({
      ...components,
      replicas: this.replicas,
      // a replica's address is its catalog's; the register is keyed by user db
      introducerOf: (replica) => this.register.entries().find(([, r]) => r.pieces === replica.address)?.[1].introducedBy
    }, init.convergence)
  }

  /** Redials made since start. */
  get redials (): number {
    return this.links.redials
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.register.load()
    // known without opening anything (a keeper opens its replicas when wanted):
    // one companion per identity holds for those too
    for (const [address, record] of this.register.entries()) {
      if (typeof record.identity === 'string') this.identities.set(address, record.identity)
    }
    // replicas are local: opening them needs no network, even when the owner is away
    // a few at a time: each open takes several files, and a keeper may hold hundreds
    await new PQueue({ concurrency: START_CONCURRENCY }).addAll((this.init.lazy === true ? [] : this.register.entries()).map(([address, record]) => async () => {
      try {
        const replica = await this.replicas.open(address, record, this.shutdown.signal)
        this.identities.set(address, identityOf(replica.db.access.write))
      } catch (err) {
        this.log.error('could not open the replica of %s: %e', record.nodeId, err)
        this.failures.set(address, { owner: record.nodeId, address: record.pieces, error: err instanceof Error ? err.message : String(err) })
      }
    }))
    await this.forgetDuplicateIdentities()
    this.components.events.addEventListener('companion:online', this.onOnline)
    this.links.start()
    this.convergence.start()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort()
    this.components.events.removeEventListener('companion:online', this.onOnline)
    this.convergence.stop()
    await this.links.stop()
    await this.replicas.stop()
  }

  list (): Companion[] {
    return this.register.entries().map(([address, record]) => ({ ...record, address, online: this.links.isConnected(record.nodeId) }))
  }

  openReplicas (): Replica[] {
    return this.replicas.list()
  }

  /**
   * Open the replica of the recorded companion whose user db is `address`
   * (see `CompanionsInit.lazy`); undefined when it is not recorded. A failed
   * open is logged and thrown.
   */
  async openReplicaOf (address: string, signal: AbortSignal): Promise<Replica | undefined> {
    const record = this.register.get(address)
    if (record == null) return undefined
    const replica = await this.replicas.open(address, record, signal)
    this.identities.set(address, identityOf(replica.db.access.write))
    this.failures.delete(address)
    return replica
  }

  /** Close the replica of the companion whose user db is `address`; its record stays. Idempotent. */
  async closeReplicaOf (address: string): Promise<void> {
    await this.replicas.close(address)
  }

  /** Companions whose replica could not be opened (at start), with why: `queryCatalog` reports them as failed sources. */
  replicaFailures (): Array<{ owner: string, address: string, error: string }> {
    return [...this.failures].filter(([address]) => !this.replicas.has(address)).map(([, f]) => ({ ...f }))
  }

  syncState (replica: Replica): ReplicaSync {
    return this.convergence.state(replica)
  }

  /** Check `replica` against its owner (or a keeper) now; resolves to its sync state afterwards. */
  async syncNow (replica: Replica, signal: AbortSignal): Promise<ReplicaSync> {
    signal.throwIfAborted()
    await raceSignal(this.convergence.check(replica), signal)
    return this.convergence.state(replica)
  }

  async whenSynced (replica: Replica, signal: AbortSignal): Promise<void> {
    await this.convergence.whenSynced(replica, signal)
  }

  /**
   * Verify a peer's announcement (see `ProfileVerifier`), then record the
   * peer as a companion and keep its catalog replicated. Throws when
   * anything does not hold.
   */
  async verify (userDb: string, from: string, signal: AbortSignal): Promise<void> {
    await this.record(userDb, from, signal)
  }

  /**
   * Record a companion a keeper introduced (`../keeper/client.ts`): the
   * profile `userDb` must be `peerId`'s, by its `nodeId` and its proof,
   * whatever the keeper says. Its blocks come from whoever has them (the
   * keeper). Resolves to whether it is a companion (a known one is left as is).
   */
  async introduce (userDb: string, peerId: string, keeper: string, multiaddrs: string[], signal: AbortSignal): Promise<boolean> {
    if (peerId === this.components.libp2p.peerId.toString()) return false
    // where the keeper last saw it: a lie costs a failed dial (the peer id is
    // checked by the connection's encryption), so they are only hints
    const addrs = multiaddrs.slice(0, MAX_COMPANION_MULTIADDRS).flatMap(a => tryMultiaddr(a) ?? [])
    if (addrs.length > 0) await this.components.libp2p.peerStore.merge(peerIdFromString(peerId), { multiaddrs: addrs }).catch(() => {})
    if (this.register.get(userDb)?.nodeId === peerId && this.replicas.has(userDb)) {
      if (addrs.length > 0) this.links.nudge(peerId)
      return false
    }
    await this.record(userDb, peerId, signal, keeper)
    return true
  }

  /** Forget the companion `peerId` (its replica and record). Idempotent. */
  async remove (peerId: string): Promise<void> {
    for (const [address, record] of this.register.entries()) {
      if (record.nodeId === peerId) await this.forget(address, record)
    }
  }

  private async record (userDb: string, from: string, signal: AbortSignal, introducedBy?: string): Promise<void> {
    const known = this.register.get(userDb)
    if (known != null && known.nodeId === from && this.replicas.has(userDb)) {
      // a companion we already replicate reconnected: refresh, no re-validation
      await this.touch(userDb, from)
      return
    }
    const max = this.init.maxCompanions ?? MAX_COMPANIONS
    if (known == null && this.register.size >= max && this.register.addressOf(from) == null) {
      throw new InvalidRemoteDataError(`already ${max} companions`)
    }
    let identity = ''
    const admit = (id: string): void => {
      identity = id
      this.admit(id, from)
    }
    const verified = await this.verifier.verify(userDb, from, this.links.addressesOf(from), signal, admit)
    // a companion met through a keeper stays so when it later announces itself directly
    const introducer = introducedBy ?? (known?.nodeId === from ? known.introducedBy : undefined)
    const record: CompanionRecord = { ...verified, ...(introducer != null ? { introducedBy: introducer } : {}), identity }
    try {
      // again: another peer of this identity may have been recorded meanwhile
      admit(identity)
    } catch (err) {
      await this.replicas.close(userDb)
      throw err
    }
    // one companion per peer: a peer that reset its data replaces its old entry;
    // one per identity: an identity that moved to this peer id (its former
    // peer is not connected, see admit) replaces its old one
    const replaced = this.register.entries().filter(([address, old]) => address !== userDb && (old.nodeId === from || this.identities.get(address) === identity))
    // recorded (in memory) before anything is awaited: a verification of the
    // same identity finishing meanwhile is refused by its own admit
    this.identities.set(userDb, identity)
    await this.register.set(userDb, record)
    for (const [address, old] of replaced) await this.forget(address, old, old.nodeId === from)
    const companion: Companion = { ...record, address: userDb, online: this.links.isConnected(from) }
    this.components.events.safeDispatchEvent('db:discovered', { detail: companion })
    this.links.recorded(record)
  }

  /** Dial every companion that is not connected now (ignores back-off); resolves to the companions afterwards. */
  async connectAll (signal?: AbortSignal): Promise<Companion[]> {
    await this.links.redialAll(signal)
    return this.list()
  }

  /**
   * Refuse a profile of `identity` announced by `from` when that identity is
   * a companion already through another peer id that is connected: many
   * peer ids with one identity is the sybil pattern (this library derives
   * the identity from the peer id, so an honest peer has one of each). A
   * former peer id that is not connected is replaced (an identity brought to
   * a new peer id), so one identity is one companion at any time.
   */
  private admit (identity: string, from: string): void {
    for (const [address, id] of this.identities) {
      if (id !== identity) continue
      const owner = this.register.get(address)?.nodeId
      if (owner == null || owner === from) continue
      if (this.links.isConnected(owner)) {
        throw new DuplicateIdentityError(`the identity of ${from}'s profile is already the companion ${owner}`)
      }
    }
  }

  /** Remove a companion's entry: its replica, its record and (unless the peer stays a companion under another entry) its link. */
  private async forget (address: string, record: CompanionRecord, keepLink = false): Promise<void> {
    this.identities.delete(address)
    await this.replicas.close(address)
    await this.register.delete(address)
    if (!keepLink && this.register.addressOf(record.nodeId) == null) this.links.forgotten(record.nodeId)
  }

  /**
   * A register written before companions were limited to one per identity
   * may hold several (a sybil's peer ids, redialed for ever): keep the one
   * seen last of each identity.
   */
  private async forgetDuplicateIdentities (): Promise<void> {
    const latest = new Map<string, [string, CompanionRecord]>()
    for (const [address, record] of this.register.entries()) {
      const identity = this.identities.get(address)
      if (identity == null) continue
      const kept = latest.get(identity)
      if (kept == null) {
        latest.set(identity, [address, record])
        continue
      }
      const [drop, dropped] = kept[1].lastSeen >= record.lastSeen ? [address, record] : kept
      if (drop === kept[0]) latest.set(identity, [address, record])
      this.log('forgetting companion %s: its identity is also companion %s', dropped.nodeId, (latest.get(identity) ?? kept)[1].nodeId)
      await this.forget(drop, dropped)
    }
  }

  /** Update a companion's last-seen time and addresses after it connected. */
  private async touch (address: string, peerId: string): Promise<void> {
    const record = this.register.get(address)
    if (record == null || !this.started) return
    const live = this.links.addressesOf(peerId)
    const known = live.length > 0 ? live : await this.links.knownAddresses(peerId)
    const updated: CompanionRecord = { ...record, multiaddrs: known.length > 0 ? known : record.multiaddrs, lastSeen: Date.now() }
    try {
      await this.register.set(address, updated)
    } catch (err) {
      this.log.error('could not update companion %s: %e', peerId, err)
    }
  }

  private readonly onOnline = (evt: CustomEvent<Companion>): void => {
    void this.touch(evt.detail.address, evt.detail.nodeId)
  }
}
