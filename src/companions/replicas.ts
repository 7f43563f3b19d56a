/**
 * Open replicas of companions' catalogs. A replica is local: it opens
 * without the network, answers queries while its owner is away, and follows
 * the owner's catalog through OrbitDB's sync while they are connected.
 */
import { Documents, Database as LogDatabase } from '@orbitdb/core'
import { readManifest } from './manifest.ts'
import { raceSignal } from 'race-signal'
import { CATALOG_TYPE } from '../catalog/catalog.ts'
import { catalogFactory } from '../library/databases.ts'
import type { Logger } from '@libp2p/interface'
import type { NppComponents } from '../components.ts'
import type { CatalogLike, DatabaseInit, OpenOptions, OrbitDBDatabase } from '../orbitdb/types.ts'
import type { CompanionRecord, Piece } from '../types.ts'

/** An open replica of a companion's catalog. */
export interface Replica {
  address: string
  owner: string
  db: CatalogLike<Piece>
  /** True once heads were exchanged with the owner since the replica was opened. */
  synced: boolean
  /** Resolves when `synced` becomes true. */
  whenSynced: Promise<void>
  /** Opened as a bare log (`ReplicasInit.bare`): `db` has no documents to read. */
  bare: boolean
}

export interface ReplicasInit {
  /** Keep catalog indexes in memory only (`storage: 'memory'`). */
  memory: boolean
  /**
   * Open replicas as bare logs: replicated, synced and served, with no
   * document index in memory or on disk (a keeper never reads its
   * replicas' documents). Default false.
   */
  bare?: boolean
}

/** A catalog as its log alone: OrbitDB's `Database` (log, access controller, sync), typed as a catalog. */
const bareLog = (type: string) => async (init: DatabaseInit): Promise<OrbitDBDatabase> => ({ ...(await LogDatabase(init)), type })

export type ReplicasComponents = Pick<NppComponents, 'helia' | 'open' | 'events' | 'logger'>

export class Replicas {
  private readonly components: ReplicasComponents
  private readonly init: ReplicasInit
  /** By the companion's user-db address. */
  private readonly replicas = new Map<string, Replica>()
  /** Replicas being opened, by the same key. */
  private readonly opening = new Map<string, Promise<Replica>>()
  private readonly log: Logger

  constructor (components: ReplicasComponents, init: ReplicasInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('npp:companions:replicas')
  }

  get (address: string): Replica | undefined {
    return this.replicas.get(address)
  }

  has (address: string): boolean {
    return this.replicas.has(address)
  }

  list (): Replica[] {
    return [...this.replicas.values()]
  }

  /** Open `address` bounded by `signal`; an open that finishes after the signal fired is closed then. */
  async openBounded<D extends OrbitDBDatabase> (address: string, options: OpenOptions, signal: AbortSignal): Promise<D> {
    const opening = this.components.open<D>(address, { ...options, signal })
    try {
      return await raceSignal(opening, signal)
    } catch (err) {
      // OrbitDB does not pass the signal everywhere: close it when it arrives
      opening.then(async db => { await db.close() }, () => {})
      throw err
    }
  }

  /**
   * Open (or return the open) replica of `record`'s catalog, registered under
   * the companion's user-db `address`. One open per companion at a time: at a
   * restart the loader of saved companions and discovery (verifying the same
   * companion's announcement) ask at once, and the second waits for the
   * first's replica rather than opening (and registering) a second one.
   */
  async open (address: string, record: CompanionRecord, signal: AbortSignal, type?: string): Promise<Replica> {
    for (let pending = this.opening.get(address); pending != null; pending = this.opening.get(address)) {
      // when the other open fails (its caller's deadline), try with this caller's own
      await raceSignal(pending, signal).catch((err: unknown) => { if (signal.aborted) throw err })
    }
    const opening: Promise<Replica> = this.openReplica(address, record, signal, type).finally(() => {
      if (this.opening.get(address) === opening) this.opening.delete(address)
    })
    this.opening.set(address, opening)
    return await opening
  }

  private async openReplica (address: string, record: CompanionRecord, signal: AbortSignal, type?: string): Promise<Replica> {
    const existing = this.replicas.get(address)
    if (existing != null && existing.address === record.pieces) return existing
    if (existing != null) await this.close(address)
    // the manifest is local once the catalog was replicated, so reading it at restart needs no network
    type ??= (await readManifest(this.components.helia, record.pieces, signal)).type
    const bare = this.init.bare === true
    const Database = bare ? bareLog(type) : type === CATALOG_TYPE ? catalogFactory(this.init.memory) : Documents({ indexBy: 'hash' })
    const db = await this.openBounded<CatalogLike<Piece>>(record.pieces, { Database }, signal)
    let markSynced = (): void => {}
    const replica: Replica = {
      address: record.pieces,
      owner: record.nodeId,
      db,
      synced: false,
      whenSynced: new Promise<void>(resolve => { markSynced = resolve }),
      bare
    }
    // 'join' is emitted once heads were exchanged with a peer and merged;
    // only the owner's count (another replicator may be behind)
    const onJoin = (peerId: unknown): void => {
      if (String(peerId) !== record.nodeId) return
      replica.synced = true
      markSynced()
      db.events.off('join', onJoin)
    }
    db.events.on('join', onJoin)
    db.events.on('update', () => {
      this.components.events.safeDispatchEvent('catalog:update', { detail: { owner: record.nodeId, address: record.pieces } })
    })
    this.replicas.set(address, replica)
    this.log.trace('opened the replica of %s (%s)', record.nodeId, type)
    return replica
  }

  async close (address: string): Promise<void> {
    const replica = this.replicas.get(address)
    this.replicas.delete(address)
    await replica?.db.close().catch(() => {})
  }

  async stop (): Promise<void> {
    const all = [...this.replicas.values()]
    this.replicas.clear()
    await Promise.all(all.map(async r => { await r.db.close().catch(() => {}) }))
  }
}
