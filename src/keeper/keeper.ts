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
import { KeyValue } from '@orbitdb/core'
import { Counters } from '../counters/counters.ts'
import { isOrbitDBAddress } from '../utils/validate.ts'
import type { Connection, Logger, Stream } from '@libp2p/interface'
import type { OrbitDBDatabase } from '../orbitdb/types.ts'
import type { NppComponents, Startable } from '../components.ts'
import type { AnnouncementVerifier } from '../companions/companions.ts'
import type { Companion } from '../types.ts'

/** Requests a keeper handles at once per connection (a peer needs two). */
const MAX_INBOUND_STREAMS = 4

export interface KeeperServiceInit {
  /**
   * Peer ids whose databases are kept.
   *
   * @default []
   */
  allow?: string[]
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
   * Peer ids kept but not introduced to others (their owners asked so).
   *
   * @default []
   */
  unlisted?: string[]
  /** Time limit (ms) for verifying a profile before answering. */
  timeout: number
}

export interface KeeperServiceComponents extends Pick<NppComponents, 'libp2p' | 'logger' | 'open'> {
  /** The keeper's companions: its kept users. */
  companions: AnnouncementVerifier & { list(): Companion[], remove(peerId: string): Promise<void> }
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
  /** The user db and counters replicas held open for each kept user (the catalog's is the companions'), by peer id. */
  private readonly held = new Map<string, Promise<OrbitDBDatabase[]>>()
  private shutdown = new AbortController()
  private started = false

  constructor (components: KeeperServiceComponents, init: KeeperServiceInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('npp:keeper')
    this.allowed = new Set(init.allow ?? [])
    this.unlisted = new Set(init.unlisted ?? [])
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.shutdown = new AbortController()
    // what was kept before a restart is served again at once (replicas are local)
    for (const c of this.components.companions.list()) void this.hold(c.nodeId, c.address)
    await this.components.libp2p.handle(KEEPER_PROTOCOL, this.onStream, { maxInboundStreams: MAX_INBOUND_STREAMS })
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort()
    await this.components.libp2p.unhandle(KEEPER_PROTOCOL)
    await Promise.all([...this.held.keys()].map(async peerId => { await this.release(peerId) }))
  }

  /**
   * Keep `peerId`'s user db and practice counters open (so synced, and
   * served to whoever opens them: an introduced profile is read from here).
   */
  private async hold (peerId: string, userDb: string): Promise<void> {
    if (this.held.has(peerId)) return
    const opening = (async () => {
      const dbs: OrbitDBDatabase[] = []
      try {
        const user = await this.components.open<any>(userDb, { Database: KeyValue() })
        dbs.push(user)
        const counters: unknown = await user.get('counters')
        if (isOrbitDBAddress(counters)) dbs.push(await this.components.open<any>(counters, { Database: Counters() }))
      } catch (err) {
        this.log.error('could not hold the databases of %s: %e', peerId, err)
      }
      return dbs
    })()
    this.held.set(peerId, opening)
    await opening
  }

  private async release (peerId: string): Promise<void> {
    const dbs = await this.held.get(peerId)
    this.held.delete(peerId)
    await Promise.all((dbs ?? []).map(async db => { await db.close().catch(() => {}) }))
  }

  /** Serve `peerId` from now on. Idempotent. */
  allow (peerId: string): void {
    if (!this.allowed.has(peerId)) this.log('allowed %s', peerId)
    this.allowed.add(peerId)
  }

  /** Stop serving `peerId` and drop what is kept of it. Idempotent. */
  async deny (peerId: string): Promise<void> {
    if (this.allowed.delete(peerId)) this.log('denied %s', peerId)
    await this.release(peerId)
    await this.components.companions.remove(peerId)
  }

  /** The allowlist. */
  allowlist (): string[] {
    return [...this.allowed]
  }

  /** Whether `peerId` may be kept (allowlisted, or the keeper is open). */
  serves (peerId: string): boolean {
    return this.init.open === true || this.allowed.has(peerId)
  }

  /** The users kept, and whether each is introduced to others. */
  kept (): Array<Companion & { listed: boolean }> {
    return this.components.companions.list().map(c => ({ ...c, listed: !this.unlisted.has(c.nodeId) }))
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
    await this.hold(from, userDb)
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
        const catalogs = this.serves(from) ? this.kept().filter(c => c.listed && c.nodeId !== from).map(c => ({ peerId: c.nodeId, userDb: c.address })) : []
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
      if (listed) this.unlisted.delete(from)
      else this.unlisted.add(from)
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
