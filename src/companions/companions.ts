/**
 * Companions: peers whose catalogs we replicate and query.
 *
 * Holds the `companions` register (key = the companion's user-db address),
 * the open replicas of their `pieces` databases, their online state, and the
 * reconnect loop that redials companions which are not connected, with
 * exponential back-off for the ones that keep failing.
 */
import { Documents, KeyValue } from '@orbitdb/core'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'
import { logger } from '../utils/logger.ts'
import { raceSignal, timeoutSignal } from '../utils/abort.ts'
import { readManifest } from './manifest.ts'
import { InvalidRemoteDataError } from '../errors.ts'
import { isOrbitDBAddress, isPeerIdString } from '../utils/validate.ts'
import { waitForKeys } from './wait-for-keys.ts'
import { MAX_COMPANION_MULTIADDRS, MAX_USERNAME_LENGTH } from '../constants.ts'
import type { Stack } from '../stack/stack.ts'
import type { OpenOptions, KeyValueDatabase, OrbitDBDatabase, CatalogLike, DatabaseFactory } from '../orbitdb/types.ts'
import { CATALOG_TYPE } from '../catalog/catalog.ts'
import type { Companion, CompanionRecord, NppHelia, NppLibp2p, NppStats, Piece } from '../types.ts'

const log = logger('companions')

/** Companions kept at most; announcements from further new peers are refused. */
export const MAX_COMPANIONS = 256

export interface CompanionsInit {
  helia: NppHelia
  libp2p: NppLibp2p
  register: KeyValueDatabase<CompanionRecord>
  open: Stack['open']
  /** The `npp-catalog` database factory (with this node's storage choice). */
  catalog(): DatabaseFactory<any>
  reconnectInterval: number
  maxBackoff: number
  dialTimeout: number
  stats: NppStats
  emit(type: 'db:discovered' | 'companion:online' | 'companion:offline', detail: Companion): void
  onCatalogUpdate(owner: string, address: string): void
}

/** An open replica of a companion's catalog. */
export interface Replica {
  address: string
  owner: string
  db: CatalogLike<Piece>
  /** True once heads were exchanged with the owner since the replica was opened. */
  synced: boolean
  /** Resolves when `synced` becomes true. */
  whenSynced: Promise<void>
}

interface Dialing { failures: number, nextAttempt: number }

type OnlineState = 'online' | 'offline' | 'unknown'

export class Companions {
  private readonly init: CompanionsInit
  private readonly records = new Map<string, CompanionRecord>()
  private readonly replicas = new Map<string, Replica>()
  private readonly state = new Map<string, OnlineState>()
  private readonly dialing = new Map<string, Dialing>()
  private readonly shutdown = new AbortController()
  private timer: ReturnType<typeof setTimeout> | undefined
  private started = false
  private redialing: Promise<void> | undefined

  constructor (init: CompanionsInit) {
    this.init = init
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    for (const { key, value } of await this.init.register.all()) {
      if (isCompanionRecord(value)) this.records.set(key, value)
      else log.error('ignoring malformed companion record %s', key)
    }
    // replicas are local: opening them needs no network, even when the owner is away
    await Promise.all([...this.records].map(async ([address, record]) => {
      try {
        await this.openReplica(address, record, this.shutdown.signal)
      } catch (err: any) {
        log.error('could not open the replica of %s: %s', record.nodeId, err?.message ?? err)
      }
    }))
    this.init.libp2p.addEventListener('peer:connect', this.onPeerConnect)
    this.init.libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
    for (const record of this.records.values()) {
      if (this.isConnected(record.nodeId)) this.setState(record.nodeId, 'online')
    }
    this.schedule(0)
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort()
    clearTimeout(this.timer)
    this.timer = undefined
    this.init.libp2p.removeEventListener('peer:connect', this.onPeerConnect)
    this.init.libp2p.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    await this.redialing
    await Promise.all([...this.replicas.values()].map(async r => { await r.db.close().catch(() => {}) }))
    this.replicas.clear()
  }

  list (): Companion[] {
    return [...this.records.keys()].map(address => this.get(address)!)
  }

  get (address: string): Companion | undefined {
    const record = this.records.get(address)
    return record == null ? undefined : { ...record, address, online: this.isConnected(record.nodeId) }
  }

  openReplicas (): Replica[] {
    return [...this.replicas.values()]
  }

  isCompanion (peerId: string): boolean {
    return this.addressOf(peerId) != null
  }

  /**
   * Verify a peer's announcement: its user db must be a key-value store
   * whose `nodeId` is the sender and whose `pieces` is an npp-catalog (or documents) store
   * written by the same identity. Then record the peer as a companion and
   * keep its catalog replicated. Throws when anything does not hold.
   */
  async verify (userDb: string, from: string, signal: AbortSignal): Promise<void> {
    const known = this.records.get(userDb)
    if (known != null && known.nodeId === from && this.replicas.has(userDb)) {
      // a companion we already replicate reconnected: refresh, no re-validation
      await this.touch(userDb, from)
      return
    }
    if (known == null && this.records.size >= MAX_COMPANIONS && this.addressOf(from) == null) {
      throw new InvalidRemoteDataError(`already ${MAX_COMPANIONS} companions`)
    }

    const t0 = Date.now()
    const mark = (step: string): void => { log.trace('verifying %s: %s after %d ms', from, step, Date.now() - t0) }
    const manifest = await readManifest(this.init.helia, userDb, signal)
    mark('user db manifest')
    if (manifest.type !== 'keyvalue') throw new InvalidRemoteDataError(`user db ${userDb} is a "${manifest.type}" database, expected "keyvalue"`)
    if (!manifest.accessController.startsWith('/ipfs/')) throw new InvalidRemoteDataError(`user db ${userDb} uses access controller ${manifest.accessController}, expected an IPFS (fixed writers) one`)

    const user = await this.openBounded<KeyValueDatabase>(userDb, { Database: KeyValue() }, signal)
    mark('user db open')
    let record: CompanionRecord
    try {
      const fields = await waitForKeys(user, ['nodeId', 'pieces'], signal)
      mark('user db replicated')
      const { nodeId, pieces } = fields
      if (nodeId !== from) throw new InvalidRemoteDataError(`user db ${userDb} names node ${String(nodeId)}, but ${from} sent it`)
      if (!isOrbitDBAddress(pieces)) throw new InvalidRemoteDataError(`user db ${userDb} has no valid pieces address`)
      const piecesManifest = await readManifest(this.init.helia, pieces, signal)
      mark('catalog manifest')
      if (piecesManifest.type !== CATALOG_TYPE && piecesManifest.type !== 'documents') throw new InvalidRemoteDataError(`pieces db ${pieces} is a "${piecesManifest.type}" database, expected "${CATALOG_TYPE}" or "documents"`)
      const username = await user.get('username')
      record = {
        nodeId: from,
        pieces,
        username: typeof username === 'string' ? username.slice(0, MAX_USERNAME_LENGTH) : '',
        multiaddrs: this.addressesOf(from),
        lastSeen: Date.now()
      }
      const replica = await this.openReplica(userDb, record, signal, piecesManifest.type)
      mark('catalog open')
      if (!sameWriters(replica.db.access.write, user.access.write)) {
        await this.closeReplica(userDb)
        throw new InvalidRemoteDataError(`pieces db ${pieces} is not written by the owner of ${userDb}`)
      }
    } finally {
      await user.close().catch(() => {})
    }

    // one companion per peer: a peer that reset its data replaces its old entry
    for (const [address, old] of this.records) {
      if (old.nodeId === from && address !== userDb) {
        await this.forget(address)
      }
    }
    this.records.set(userDb, record)
    await this.init.register.put(userDb, record)
    const companion = { ...record, address: userDb, online: this.isConnected(from) }
    this.init.emit('db:discovered', companion)
    this.setState(from, companion.online ? 'online' : 'offline')
  }

  /** Dial every companion that is not connected now (ignores back-off). */
  async connectAll (signal?: AbortSignal): Promise<Companion[]> {
    await this.redial(true, signal)
    return this.list()
  }

  private addressOf (peerId: string): string | undefined {
    for (const [address, record] of this.records) {
      if (record.nodeId === peerId) return address
    }
    return undefined
  }

  private isConnected (peerId: string): boolean {
    try {
      return this.init.libp2p.getConnections(peerIdFromString(peerId)).length > 0
    } catch {
      return false
    }
  }

  private addressesOf (peerId: string): string[] {
    const addrs = new Set<string>()
    try {
      const id = peerIdFromString(peerId)
      for (const conn of this.init.libp2p.getConnections(id)) {
        if (conn.limits == null) addrs.add(conn.remoteAddr.decapsulateCode(421).toString())
      }
    } catch {}
    return [...addrs].slice(0, MAX_COMPANION_MULTIADDRS)
  }

  private async addressesFromPeerStore (peerId: string): Promise<string[]> {
    try {
      const peer = await this.init.libp2p.peerStore.get(peerIdFromString(peerId))
      return peer.addresses.map(a => a.multiaddr.toString()).slice(0, MAX_COMPANION_MULTIADDRS)
    } catch {
      return []
    }
  }

  private async openBounded<D extends OrbitDBDatabase> (address: string, options: OpenOptions, signal: AbortSignal): Promise<D> {
    const opening = this.init.open<D>(address, { ...options, signal })
    try {
      return await raceSignal(opening, signal)
    } catch (err) {
      // the open may still finish later (OrbitDB does not pass the signal everywhere): close it then
      opening.then(async db => { await db.close() }, () => {})
      throw err
    }
  }

  private async openReplica (address: string, record: CompanionRecord, signal: AbortSignal, type?: string): Promise<Replica> {
    const existing = this.replicas.get(address)
    if (existing != null && existing.address === record.pieces) return existing
    if (existing != null) await this.closeReplica(address)
    // the manifest is local once the catalog was replicated, so reading it at restart needs no network
    type ??= (await readManifest(this.init.helia, record.pieces, signal)).type
    const Database = type === CATALOG_TYPE ? this.init.catalog() : Documents({ indexBy: 'hash' })
    const db = await this.openBounded<CatalogLike<Piece>>(record.pieces, { Database }, signal)
    let markSynced = (): void => {}
    const replica: Replica = {
      address: record.pieces,
      owner: record.nodeId,
      db,
      synced: false,
      whenSynced: new Promise<void>(resolve => { markSynced = resolve })
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
    db.events.on('update', () => { this.init.onCatalogUpdate(record.nodeId, record.pieces) })
    this.replicas.set(address, replica)
    return replica
  }

  private async closeReplica (address: string): Promise<void> {
    const replica = this.replicas.get(address)
    this.replicas.delete(address)
    await replica?.db.close().catch(() => {})
  }

  private async forget (address: string): Promise<void> {
    await this.closeReplica(address)
    this.records.delete(address)
    await this.init.register.del(address).catch(() => {})
  }

  /** Update a companion's last-seen time and addresses after it connected. */
  private async touch (address: string, peerId: string): Promise<void> {
    const record = this.records.get(address)
    if (record == null || !this.started) return
    const live = this.addressesOf(peerId)
    const known = live.length > 0 ? live : await this.addressesFromPeerStore(peerId)
    const updated: CompanionRecord = { ...record, multiaddrs: known.length > 0 ? known : record.multiaddrs, lastSeen: Date.now() }
    this.records.set(address, updated)
    this.dialing.delete(peerId)
    try {
      await this.init.register.put(address, updated)
    } catch (err: any) {
      log.error('could not update companion %s: %s', peerId, err?.message ?? err)
    }
  }

  private setState (peerId: string, next: OnlineState): void {
    const previous = this.state.get(peerId) ?? 'unknown'
    if (previous === next) return
    this.state.set(peerId, next)
    const address = this.addressOf(peerId)
    const companion = address == null ? undefined : this.get(address)
    if (companion == null) return
    log('companion %s is %s', peerId, next)
    this.init.emit(next === 'online' ? 'companion:online' : 'companion:offline', companion)
  }

  private readonly onPeerConnect = (evt: CustomEvent<PeerId>): void => {
    const peerId = evt.detail.toString()
    const address = this.addressOf(peerId)
    if (address == null) return
    this.setState(peerId, 'online')
    void this.touch(address, peerId)
  }

  private readonly onPeerDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peerId = evt.detail.toString()
    if (this.addressOf(peerId) == null) return
    this.setState(peerId, 'offline')
  }

  private schedule (delay: number): void {
    if (!this.started) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.redialing = this.redial(false).finally(() => {
        this.redialing = undefined
        this.schedule(this.init.reconnectInterval)
      })
    }, delay)
  }

  private async redial (force: boolean, signal?: AbortSignal): Promise<void> {
    const now = Date.now()
    const due = [...this.records.values()].filter(r => {
      if (this.isConnected(r.nodeId)) return false
      const d = this.dialing.get(r.nodeId)
      return force || d == null || d.nextAttempt <= now
    })
    await Promise.all(due.map(async record => { await this.dialCompanion(record, signal) }))
  }

  private async dialCompanion (record: CompanionRecord, signal?: AbortSignal): Promise<void> {
    const { libp2p } = this.init
    const parent = signal == null ? this.shutdown.signal : AbortSignal.any([signal, this.shutdown.signal])
    const bounded = timeoutSignal(this.init.dialTimeout, parent, `dialing companion ${record.nodeId}`)
    this.init.stats.redials++
    try {
      const peerId = peerIdFromString(record.nodeId)
      const addrs = record.multiaddrs.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
      if (addrs.length > 0) await libp2p.peerStore.merge(peerId, { multiaddrs: addrs })
      await libp2p.dial(peerId, { signal: bounded.signal })
      log('redialed companion %s', record.nodeId)
    } catch (err: any) {
      if (this.shutdown.signal.aborted) return
      const d = this.dialing.get(record.nodeId) ?? { failures: 0, nextAttempt: 0 }
      d.failures++
      const backoff = Math.min(this.init.reconnectInterval * 2 ** (d.failures - 1), this.init.maxBackoff)
      d.nextAttempt = Date.now() + backoff
      this.dialing.set(record.nodeId, d)
      log('companion %s not reachable (%d failure(s), next try in %d ms): %s', record.nodeId, d.failures, backoff, err?.message ?? err)
      this.setState(record.nodeId, 'offline')
    } finally {
      bounded.clear()
    }
  }
}

function sameWriters (a: string[], b: string[]): boolean {
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length || a.includes('*')) return false
  const set = new Set(a)
  return b.every(w => set.has(w))
}

function isCompanionRecord (value: unknown): value is CompanionRecord {
  const r = value as CompanionRecord
  return r != null && isPeerIdString(r.nodeId) && isOrbitDBAddress(r.pieces) &&
    typeof r.username === 'string' && Array.isArray(r.multiaddrs) && r.multiaddrs.every(a => typeof a === 'string') &&
    typeof r.lastSeen === 'number'
}
