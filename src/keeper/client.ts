/**
 * The peer side of keepers (issue 11). Whenever a direct connection to one
 * of the configured keepers opens, this peer asks it to keep its databases
 * (`keeper:registered`, or `keeper:refused` with a `KeeperRefusedError`
 * saying why) and, at the same time, which catalogs it keeps: each is
 * recorded as a companion once its profile verifies as its own peer's (the
 * proof that only that peer could sign): a keeper is never trusted for who
 * owns what. A peer takes at most `maxIntroduced` catalogs from keepers in
 * all, the most recently updated first.
 *
 * The links themselves are the hub links' (keepers are dialed and redialed
 * like bootstrap peers; a relay's `/config` may list keepers too, which are
 * kept linked like its trusted peers); every request is bounded in time, so
 * a keeper that goes away mid-request costs a bounded time, never a hang.
 */
import PQueue from 'p-queue'
import { repeatingTask, type RepeatingTask } from '@libp2p/utils'
import { KEEPER_PROTOCOL, encode, readResponse, type IntroducedCatalog, type KeeperRequest, type KeeperResponse } from './protocol.ts'
import { KeeperRefusedError } from '../errors.ts'
import { withDeadline } from '../utils/abort.ts'
import { trailingPeerId } from '../utils/multiaddr.ts'
import type { Connection, Logger } from '@libp2p/interface'
import type { NppComponents, Startable } from '../components.ts'
import type { Companion, KeeperStatus } from '../types.ts'

/** Introduced profiles verified at once. */
const INTRODUCTION_CONCURRENCY = 4

export interface KeeperClientInit {
  /** The keepers' multiaddrs (each ending in `/p2p/<peer id>`). */
  keepers: string[]
  /** Our user db, which we ask keepers to keep. */
  userDb: string
  /** Whether keepers may introduce us to others. */
  listed: boolean
  /** Time limit (ms) of each request, and of verifying each introduced profile. */
  timeout: number
  /**
   * How often (ms) linked keepers are asked again: newly kept catalogs, and
   * where their owners now listen (so a companion back online is dialed).
   */
  refreshInterval: number
  /**
   * Companions taken from keepers' introductions at most, in all: those
   * recorded before (a restart included) count. When keepers list more, the
   * most recently updated are taken (`lastUpdate`; none is oldest) and the
   * rest skipped (`KeeperStatus.skipped`).
   */
  maxIntroduced: number
  /** The keepers' peer ids, kept up to date as keepers are added (shared with convergence). */
  peerIds?: Set<string>
}

export interface KeeperClientComponents extends Pick<NppComponents, 'libp2p' | 'events' | 'logger'> {
  companions: {
    introduce(userDb: string, peerId: string, keeper: string, multiaddrs: string[], signal: AbortSignal): Promise<boolean>
    /** The companions recorded (those a keeper introduced name it in `introducedBy`). */
    list(): Array<Pick<Companion, 'address' | 'nodeId' | 'introducedBy'>>
  }
}

export class KeeperClient implements Startable {
  private readonly components: KeeperClientComponents
  private readonly init: KeeperClientInit
  private readonly log: Logger
  private readonly status = new Map<string, KeeperStatus>()
  /** One registration round per keeper at a time. */
  private readonly rounds = new Map<string, Promise<void>>()
  private readonly introductions = new PQueue({ concurrency: INTRODUCTION_CONCURRENCY })
  /** Introduced user dbs being verified now (from any keeper): each holds one of `maxIntroduced`. */
  private readonly taking = new Set<string>()
  private readonly task: RepeatingTask
  private shutdown = new AbortController()
  private started = false

  constructor (components: KeeperClientComponents, init: KeeperClientInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('npp:keeper:client')
    this.task = repeatingTask(async () => {
      await Promise.all([...this.status.keys()].filter(p => this.linked(p)).map(async p => { await this.refresh(p) }))
    }, init.refreshInterval)
    for (const configured of init.keepers) this.add(configured)
  }

  start (): void {
    if (this.started) return
    this.started = true
    this.shutdown = new AbortController()
    this.components.libp2p.addEventListener('connection:open', this.onConnection)
    for (const connection of this.components.libp2p.getConnections()) this.onConnection(new CustomEvent('connection:open', { detail: connection }))
    this.task.start()
  }

  private linked (peerId: string): boolean {
    return this.components.libp2p.getConnections().some(c => c.remotePeer.toString() === peerId && c.limits == null && c.status === 'open')
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort()
    this.task.stop()
    this.components.libp2p.removeEventListener('connection:open', this.onConnection)
    this.introductions.clear()
    await Promise.allSettled([...this.rounds.values()])
    await this.introductions.onIdle()
  }

  /**
   * A keeper learned after start (listed in the relay's `/config`); it is
   * asked at its next direct connection. Returns its peer id, or undefined
   * for an address that names none.
   */
  add (configured: string): string | undefined {
    const peerId = trailingPeerId(configured)?.toString()
    if (peerId == null || peerId === this.components.libp2p.peerId.toString()) return undefined
    if (!this.status.has(peerId)) this.status.set(peerId, { configured, peerId, registered: false, introduced: 0, skipped: 0 })
    this.init.peerIds?.add(peerId)
    if (this.started && this.linked(peerId)) void this.refresh(peerId)
    return peerId
  }

  /** Each configured keeper and what it said. */
  list (): KeeperStatus[] {
    return [...this.status.values()].map(s => ({ ...s }))
  }

  /** Register with `peerId` and take its introductions now (joins a round under way). */
  async refresh (peerId: string): Promise<void> {
    const running = this.rounds.get(peerId)
    if (running != null) { await running; return }
    const round = this.round(peerId).finally(() => { this.rounds.delete(peerId) })
    this.rounds.set(peerId, round)
    await round
  }

  private readonly onConnection = (evt: CustomEvent<Connection>): void => {
    const connection = evt.detail
    if (connection.limits != null) return
    const peerId = connection.remotePeer.toString()
    if (this.status.has(peerId)) void this.refresh(peerId)
  }

  private async round (peerId: string): Promise<void> {
    const status = this.status.get(peerId)
    if (status == null || !this.started) return
    // both at once, each taken as it comes: keeping waits for the keeper to
    // verify us and sync our catalog (a new peer's first introduction came
    // 5-6 s after its start while introductions waited for it)
    await Promise.all([this.keep(peerId, status), this.takeIntroductions(peerId, status)])
  }

  /** Ask `peerId` to keep our databases. */
  private async keep (peerId: string, status: KeeperStatus): Promise<void> {
    let kept: KeeperResponse
    try {
      kept = await this.request(peerId, { op: 'keep', userDb: this.init.userDb, listed: this.init.listed })
    } catch (err) {
      this.failed(peerId, status, 'keep', err)
      return
    }
    if (kept.ok) {
      status.registered = true
      status.refused = undefined
      this.log('%s keeps our databases', peerId)
      this.components.events.safeDispatchEvent('keeper:registered', { detail: { ...status } })
    } else {
      status.registered = false
      status.refused = kept.error
      const error = new KeeperRefusedError(kept.error, `keeper ${peerId} refused to keep our databases (${kept.error}): ${kept.message}`)
      this.log('%s refused to keep us: %e', peerId, error)
      this.components.events.safeDispatchEvent('keeper:refused', { detail: { ...status, error } })
    }
  }

  /** Ask `peerId` which catalogs it keeps and take them (within `maxIntroduced`). */
  private async takeIntroductions (peerId: string, status: KeeperStatus): Promise<void> {
    let listed: KeeperResponse
    try {
      listed = await this.request(peerId, { op: 'list' })
    } catch (err) {
      this.failed(peerId, status, 'list', err)
      return
    }
    if (!listed.ok) return
    const { again, taken, skipped } = this.choose(listed.catalogs ?? [])
    if (skipped.length > 0 && skipped.length !== status.skipped) {
      this.log('%s introduced %d catalogs we do not take (%d taken from keepers, maxIntroduced %d)', peerId, skipped.length, this.fromKeepers(), this.init.maxIntroduced)
    }
    status.skipped = skipped.length
    await Promise.all([
      ...again.map(async catalog => { await this.introduce(peerId, status, catalog) }),
      ...taken.map(async catalog => {
        try {
          await this.introduce(peerId, status, catalog)
        } finally {
          this.taking.delete(catalog.userDb)
        }
      })
    ])
    if (this.started) this.components.events.safeDispatchEvent('keeper:introduced', { detail: { ...status } })
  }

  /**
   * Split a keeper's list: companions we have already (asked again: where
   * they listen may have changed), new ones taken (now held in `taking`),
   * and new ones skipped, over `maxIntroduced`: the most recently updated
   * are taken first.
   */
  private choose (catalogs: IntroducedCatalog[]): { again: IntroducedCatalog[], taken: IntroducedCatalog[], skipped: IntroducedCatalog[] } {
    const self = this.components.libp2p.peerId.toString()
    const known = new Set(this.components.companions.list().map(c => `${c.nodeId} ${c.address}`))
    const again: IntroducedCatalog[] = []
    const fresh: IntroducedCatalog[] = []
    for (const catalog of catalogs) {
      if (catalog.peerId === self || this.taking.has(catalog.userDb)) continue
      if (known.has(`${catalog.peerId} ${catalog.userDb}`)) again.push(catalog)
      else fresh.push(catalog)
    }
    fresh.sort((x, y) => (y.lastUpdate ?? -1) - (x.lastUpdate ?? -1))
    const room = Math.max(0, this.init.maxIntroduced - this.fromKeepers() - this.taking.size)
    const taken = fresh.slice(0, room)
    for (const catalog of taken) this.taking.add(catalog.userDb)
    return { again, taken, skipped: fresh.slice(room) }
  }

  /** Companions recorded from keepers' introductions (before a restart too). */
  private fromKeepers (): number {
    return this.components.companions.list().filter(c => c.introducedBy != null).length
  }

  private async introduce (keeper: string, status: KeeperStatus, { peerId: owner, userDb, multiaddrs }: IntroducedCatalog): Promise<void> {
    await this.introductions.add(async () => {
      try {
        const added = await withDeadline(this.init.timeout, this.shutdown.signal, `verifying ${owner}'s profile from keeper ${keeper}`, async (signal) =>
          await this.components.companions.introduce(userDb, owner, keeper, multiaddrs ?? [], signal))
        if (added) status.introduced++
      } catch (err) {
        this.log('an introduction by %s (%s as %s) was not taken: %e', keeper, userDb, owner, err)
      }
    }, { signal: this.shutdown.signal }).catch(() => {})
  }

  private failed (peerId: string, status: KeeperStatus, op: KeeperRequest['op'], err: unknown): void {
    if (this.shutdown.signal.aborted) return
    status.lastError = err instanceof Error ? err.message : String(err)
    this.log('asking keeper %s (%s) failed: %e', peerId, op, err)
  }

  private async request (peerId: string, request: KeeperRequest): Promise<KeeperResponse> {
    return await withDeadline(this.init.timeout, this.shutdown.signal, `asking keeper ${peerId} (${request.op})`, async (signal) => {
      const connection = this.components.libp2p.getConnections().find(c => c.remotePeer.toString() === peerId && c.limits == null && c.status === 'open')
      if (connection == null) throw new Error(`keeper ${peerId} is not linked directly`)
      const stream = await connection.newStream(KEEPER_PROTOCOL, { signal })
      // listen from the start (see readToEnd)
      const reading = readResponse(stream, signal)
      reading.catch(() => {})
      try {
        stream.send(encode(request))
        await stream.close({ signal })
        return await reading
      } catch (err) {
        stream.abort(err instanceof Error ? err : new Error(String(err)))
        throw err
      }
    })
  }
}
