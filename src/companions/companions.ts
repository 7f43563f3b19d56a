/**
 * Companions: peers whose catalogs this peer replicates and queries. This
 * part composes the register (who), the replicas (their catalogs), the
 * profile verifier (whether an announced peer is who it says) and the links
 * (online state and redials), and is what discovery hands announcements to.
 */
import { MAX_COMPANIONS } from '../constants.ts'
import { InvalidRemoteDataError } from '../errors.ts'
import { CompanionRegister } from './register.ts'
import { Replicas, type Replica } from './replicas.ts'
import { ProfileVerifier } from './verify.ts'
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
}

export interface CompanionsComponents extends NppComponents {
  /** The own `companions` register database. */
  register: KeyValueDatabase<CompanionRecord>
}

/** What discovery needs: check an announced user db and keep its owner as a companion. */
export interface AnnouncementVerifier {
  verify(userDb: string, from: string, signal: AbortSignal): Promise<void>
}

export class Companions implements Startable, AnnouncementVerifier {
  private readonly components: CompanionsComponents
  private readonly log: Logger
  private readonly register: CompanionRegister
  private readonly replicas: Replicas
  private readonly verifier: ProfileVerifier
  private readonly links: CompanionLinks
  private readonly convergence: Convergence
  /** Companions whose replica would not open at start, by user-db address (until a later open succeeds). */
  private readonly failures = new Map<string, { owner: string, address: string, error: string }>()
  private readonly shutdown = new AbortController()
  private started = false

  constructor (components: CompanionsComponents, init: CompanionsInit) {
    this.components = components
    this.log = components.logger.forComponent('npp:companions')
    this.register = new CompanionRegister(components)
    this.replicas = new Replicas(components, { memory: init.memory })
    this.verifier = new ProfileVerifier({ ...components, replicas: this.replicas })
    this.links = new CompanionLinks({ ...components, register: this.register }, init)
    this.convergence = new Convergence({ ...components, replicas: this.replicas }, init.convergence)
  }

  /** Redials made since start. */
  get redials (): number {
    return this.links.redials
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.register.load()
    // replicas are local: opening them needs no network, even when the owner is away
    await Promise.all(this.register.entries().map(async ([address, record]) => {
      try {
        await this.replicas.open(address, record, this.shutdown.signal)
      } catch (err) {
        this.log.error('could not open the replica of %s: %e', record.nodeId, err)
        this.failures.set(address, { owner: record.nodeId, address: record.pieces, error: err instanceof Error ? err.message : String(err) })
      }
    }))
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

  /** Companions whose replica could not be opened (at start), with why: `queryCatalog` reports them as failed sources. */
  replicaFailures (): Array<{ owner: string, address: string, error: string }> {
    return [...this.failures].filter(([address]) => !this.replicas.has(address)).map(([, f]) => ({ ...f }))
  }

  syncState (replica: Replica): ReplicaSync {
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
    const known = this.register.get(userDb)
    if (known != null && known.nodeId === from && this.replicas.has(userDb)) {
      // a companion we already replicate reconnected: refresh, no re-validation
      await this.touch(userDb, from)
      return
    }
    if (known == null && this.register.size >= MAX_COMPANIONS && this.register.addressOf(from) == null) {
      throw new InvalidRemoteDataError(`already ${MAX_COMPANIONS} companions`)
    }
    const record = await this.verifier.verify(userDb, from, this.links.addressesOf(from), signal)
    // one companion per peer: a peer that reset its data replaces its old entry
    for (const [address, old] of this.register.entries()) {
      if (old.nodeId === from && address !== userDb) {
        await this.replicas.close(address)
        await this.register.delete(address)
      }
    }
    await this.register.set(userDb, record)
    const companion: Companion = { ...record, address: userDb, online: this.links.isConnected(from) }
    this.components.events.safeDispatchEvent('db:discovered', { detail: companion })
    this.links.recorded(record)
  }

  /** Dial every companion that is not connected now (ignores back-off); resolves to the companions afterwards. */
  async connectAll (signal?: AbortSignal): Promise<Companion[]> {
    await this.links.redialAll(signal)
    return this.list()
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
