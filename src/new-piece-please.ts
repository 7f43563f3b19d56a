/**
 * `NewPiecePlease`: the tutorial's catalog class, rebuilt on maintained
 * OrbitDB/Helia/libp2p. It composes small parts (stack, discovery,
 * companions, query, counters) and owns their lifecycle.
 */
import { TypedEventEmitter } from 'main-event'
import { KeyValue, IPFSAccessController, useDatabaseType } from '@orbitdb/core'
import { Catalog, CATALOG_TYPE, type CatalogDatabase } from './catalog/catalog.ts'
import { fromString as uint8ArrayFromString } from 'uint8arrays'
import { createStack, type Stack } from './stack/stack.ts'
import { Discovery } from './peering/discovery.ts'
import { AutoDial } from './peering/auto-dial.ts'
import { platform } from './platform/node.ts'
import { checkRelayOption, resolveRelay, type ResolvedRelay } from './peering/relay-client.ts'
import { trailingPeerId } from './utils/multiaddr.ts'
import { Companions } from './companions/companions.ts'
import { queryCatalogs, type QuerySourceInput } from './query/query.ts'
import { Counters, type CountersDatabase } from './counters/counters.ts'
import { publishToPeer } from './peering/publish.ts'
import { timeoutSignal } from './utils/abort.ts'
import { logger } from './utils/logger.ts'
import { NotStartedError, InvalidOptionError, InvalidProfileFieldError, PieceNotFoundError, InvalidPieceError, InvalidHashError, describe } from './errors.ts'
import {
  assertHash, assertInstrument, assertExtra, assertProfileKey, assertProfileValue,
  assertMessageObject, parseMultiaddr, parsePeerId, positiveInteger, stringList, iceServerList, READ_ONLY_PROFILE_KEYS
} from './utils/validate.ts'
import {
  DEFAULT_DIRECTORY, DEFAULT_RECONNECT_INTERVAL, DEFAULT_QUERY_TIMEOUT,
  DEFAULT_DISCOVERY_TIMEOUT, DEFAULT_DIAL_TIMEOUT, DEFAULT_SEND_TIMEOUT, DEFAULT_INSTRUMENT,
  DEFAULT_MAX_RECONNECT_BACKOFF, ANNOUNCE_ATTEMPTS, CATALOG_INDEX_FIELDS, PIECES_DB, USER_DB, COMPANIONS_DB, COUNTERS_DB
} from './constants.ts'
import type { OrbitDB, KeyValueDatabase } from './orbitdb/types.ts'
import type {
  AbortOptions, Companion, CompanionRecord, DropReason, JsonValue, NewPiecePleaseEvents,
  NewPiecePleaseInit, NppHelia, NppLibp2p, NppStats, Piece, PieceExtra, PieceFilter, QueryOptions, QueryResult
} from './types.ts'

const log = logger('catalog')

useDatabaseType(Counters)
useDatabaseType(Catalog)

type Status = 'stopped' | 'starting' | 'started' | 'stopping'

/** Tutorial-style callback properties, called after the matching event. */
const CALLBACKS: Partial<Record<keyof NewPiecePleaseEvents, string>> = {
  ready: 'onready',
  'peer:connect': 'onpeerconnect',
  message: 'onmessage',
  'db:discovered': 'ondbdiscovered',
  'companion:online': 'oncompaniononline',
  'companion:offline': 'oncompanionnotfound'
}

type Callback<K extends keyof NewPiecePleaseEvents> = ((detail: NewPiecePleaseEvents[K]['detail']) => void) | undefined

function emptyStats (): NppStats {
  return {
    messagesReceived: 0,
    messagesDropped: { oversized: 0, 'not-json': 0, 'wrong-shape': 0, 'rate-limited': 0, 'queue-full': 0, 'invalid-user-db': 0, 'recently-failed': 0 },
    discoveriesStarted: 0,
    discoveriesSucceeded: 0,
    discoveriesFailed: 0,
    announcementsSent: 0,
    redials: 0
  }
}

interface Options {
  directory: string
  storage: 'persistent' | 'memory'
  listen: string[]
  bootstrap: string[]
  reconnectInterval: number
  queryTimeout: number
  discoveryTimeout: number
  dialTimeout: number
  username?: string
  pubsubDiscovery: boolean
  relay?: string
  iceServers: RTCIceServer[]
}

function resolveOptions (init: NewPiecePleaseInit): Options {
  if (init == null || typeof init !== 'object') throw new InvalidOptionError(`expected an options object, got ${describe(init)}`)
  const storage = init.storage ?? 'persistent'
  if (storage !== 'persistent' && storage !== 'memory') throw new InvalidOptionError(`expected storage to be 'persistent' or 'memory', got ${describe(storage)}`)
  if (init.directory !== undefined && (typeof init.directory !== 'string' || init.directory.length === 0)) {
    throw new InvalidOptionError(`expected directory to be a non-empty string, got ${describe(init.directory)}`)
  }
  if (init.username !== undefined) assertProfileValue('username', init.username)
  return {
    directory: init.directory ?? DEFAULT_DIRECTORY,
    storage,
    listen: stringList('listen', init.listen, platform.defaultListen),
    bootstrap: stringList('bootstrap', init.bootstrap, []),
    reconnectInterval: positiveInteger('reconnectInterval', init.reconnectInterval, DEFAULT_RECONNECT_INTERVAL),
    queryTimeout: positiveInteger('queryTimeout', init.queryTimeout, DEFAULT_QUERY_TIMEOUT),
    discoveryTimeout: positiveInteger('discoveryTimeout', init.discoveryTimeout, DEFAULT_DISCOVERY_TIMEOUT),
    dialTimeout: positiveInteger('dialTimeout', init.dialTimeout, DEFAULT_DIAL_TIMEOUT),
    username: init.username,
    pubsubDiscovery: init.pubsubDiscovery ?? init.relay !== undefined,
    relay: checkRelayOption(init.relay),
    iceServers: iceServerList(init.iceServers)
  }
}

export class NewPiecePlease extends TypedEventEmitter<NewPiecePleaseEvents> {
  onready: Callback<'ready'>
  onpeerconnect: Callback<'peer:connect'>
  onmessage: Callback<'message'>
  ondbdiscovered: Callback<'db:discovered'>
  oncompaniononline: Callback<'companion:online'>
  oncompanionnotfound: Callback<'companion:offline'>

  /** What was received and dropped since start. */
  readonly stats: NppStats = emptyStats()

  private readonly init: NewPiecePleaseInit
  private readonly options: Options
  private status: Status = 'stopped'
  private lastPeerId: string | undefined
  private starting: Promise<void> | undefined
  private stopping: Promise<void> | undefined
  private stack: Stack | undefined
  private dbs: {
    pieces: CatalogDatabase<Piece>
    user: KeyValueDatabase<JsonValue>
    companions: KeyValueDatabase<CompanionRecord>
    counters: CountersDatabase
  } | undefined

  private discovery: Discovery | undefined
  private autoDial: AutoDial | undefined
  private companionsService: Companions | undefined

  /** Prefer `createNewPiecePlease(init)`, which also starts the instance. */
  constructor (init: NewPiecePleaseInit = {}) {
    super()
    this.init = init
    this.options = resolveOptions(init)
  }

  override dispatchEvent (event: Event): boolean {
    const result = super.dispatchEvent(event)
    const name = CALLBACKS[event.type as keyof NewPiecePleaseEvents]
    const callback = name == null ? undefined : (this as any)[name]
    if (typeof callback === 'function') {
      try {
        callback.call(this, (event as CustomEvent).detail)
      } catch (err: any) {
        log.error('%s callback threw: %s', name, err?.message ?? err)
      }
    }
    return result
  }

  /** True between the end of `start()` and the beginning of `stop()`. */
  get isStarted (): boolean {
    return this.status === 'started'
  }

  /** This node's peer id (still readable after `stop()`). */
  get peerId (): string {
    if (this.lastPeerId == null) this.started()
    return this.lastPeerId!
  }

  /** The Helia node (advanced use). */
  get node (): NppHelia {
    return this.started().helia
  }

  /** The libp2p node (advanced use). */
  get libp2p (): NppLibp2p {
    return this.started().libp2p
  }

  /** The OrbitDB instance (advanced use). */
  get orbitdb (): OrbitDB {
    return this.started().orbitdb
  }

  /** The open databases (advanced use). */
  get databases (): { pieces: CatalogDatabase<Piece>, user: KeyValueDatabase<JsonValue>, companions: KeyValueDatabase<CompanionRecord>, counters: CountersDatabase } {
    this.started()
    return this.dbs!
  }

  /** Start: build or adopt the stack, open the databases, start discovery and redials. Safe to call twice. */
  async start (): Promise<void> {
    if (this.status === 'started') return
    if (this.starting != null) return await this.starting
    if (this.stopping != null) await this.stopping
    this.status = 'starting'
    this.starting = this.doStart().then(() => {
      this.status = 'started'
      this.dispatchEvent(new CustomEvent('ready', { detail: { peerId: this.peerId } }))
    }, async (err) => {
      await this.teardown()
      this.status = 'stopped'
      throw err
    }).finally(() => { this.starting = undefined })
    await this.starting
  }

  /** Stop everything this instance started: databases, intervals, listeners and (if it built them) OrbitDB, Helia and libp2p. Safe to call twice. */
  async stop (): Promise<void> {
    if (this.status === 'stopped') return
    if (this.stopping != null) return await this.stopping
    if (this.starting != null) await this.starting.catch(() => {})
    if (this.status !== 'started') return
    this.status = 'stopping'
    this.stopping = this.teardown().finally(() => {
      this.status = 'stopped'
      this.stopping = undefined
    })
    await this.stopping
  }

  private async doStart (): Promise<void> {
    const t0 = Date.now()
    const o = this.options
    const relay: ResolvedRelay = o.relay == null ? { addrs: [], trusted: [] } : await resolveRelay(o.relay, { timeout: o.dialTimeout, websocketOnly: platform.name === 'browser' })
    const stack = this.stack = await createStack({
      storage: o.storage,
      directory: o.directory,
      // with a relay: a reservation on it and WebRTC through it, so browsers can link to us
      listen: o.relay == null ? o.listen : [...new Set([...o.listen, ...platform.relayListen])],
      pubsubDiscovery: o.pubsubDiscovery,
      relay: o.relay != null,
      iceServers: o.iceServers,
      // only what the user configured: the relay's trusted peers are reached
      // through the relay (allowed as its addresses' prefix) or on public addresses
      trusted: [...relay.addrs, ...o.bootstrap],
      helia: this.init.helia,
      orbitdb: this.init.orbitdb
    })
    const { orbitdb, libp2p } = stack
    const peerId = this.lastPeerId = libp2p.peerId.toString()

    // reach the relay and the bootstrap peers while the databases open: the
    // relay reservation (and so our WebRTC address) is the slow part of being
    // found. Peers that connect meanwhile are announced to when discovery starts.
    this.reachOut(libp2p, relay)
    const ownOnly = (): any => IPFSAccessController({ write: [orbitdb.identity.id] })
    const catalog = (): any => Catalog({ indexBy: 'hash', indexFields: [...CATALOG_INDEX_FIELDS], memory: o.storage === 'memory' })

    const [pieces, user, companions, counters] = await Promise.all([
      stack.open<CatalogDatabase<Piece>>(PIECES_DB, { type: CATALOG_TYPE, Database: catalog(), AccessController: ownOnly() }),
      stack.open<KeyValueDatabase<JsonValue>>(USER_DB, { type: 'keyvalue', Database: KeyValue(), AccessController: ownOnly() }),
      stack.open<KeyValueDatabase<CompanionRecord>>(COMPANIONS_DB, { type: 'keyvalue', Database: KeyValue(), AccessController: ownOnly() }),
      stack.open<CountersDatabase>(COUNTERS_DB, { type: Counters.type, Database: Counters(), AccessController: ownOnly() })
    ])
    this.dbs = { pieces, user, companions, counters }
    pieces.events.on('update', () => { this.emit('catalog:update', { owner: peerId, address: pieces.address }) })

    // first start: the profile the tutorial expects; later starts keep it
    const profile = Object.fromEntries((await user.all()).map(({ key, value }) => [key, value]))
    if (profile.nodeId !== peerId) await user.put('nodeId', peerId)
    if (profile.pieces !== pieces.address) await user.put('pieces', pieces.address)
    if (profile.counters !== counters.address) await user.put('counters', counters.address)
    if (typeof profile.username !== 'string') await user.put('username', o.username ?? `musician-${peerId.slice(-6)}`)

    this.companionsService = new Companions({
      helia: stack.helia,
      libp2p,
      register: companions,
      open: stack.open,
      catalog,
      reconnectInterval: o.reconnectInterval,
      maxBackoff: Math.max(DEFAULT_MAX_RECONNECT_BACKOFF, o.reconnectInterval),
      dialTimeout: o.dialTimeout,
      stats: this.stats,
      emit: (type, detail) => { this.emit(type, detail) },
      onCatalogUpdate: (owner, address) => { this.emit('catalog:update', { owner, address }) }
    })
    this.discovery = new Discovery({
      libp2p,
      userDb: user.address,
      timeout: o.discoveryTimeout,
      stats: this.stats,
      onMessage: (detail) => { this.emit('message', detail) },
      onDropped: (from: string, reason: DropReason) => { this.emit('message:dropped', { from, reason }) },
      verify: async (userDb, from, signal) => { await this.companionsService!.verify(userDb, from, signal) }
    })
    libp2p.addEventListener('peer:connect', this.onPeerConnect)
    libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
    await this.discovery.start()
    await this.companionsService.start()

    log('started %s in %d ms (%s)', peerId, Date.now() - t0, o.storage)
  }

  /** Dial the relay and bootstrap peers, keep the relay's trusted peers linked, and (with pubsub discovery) dial the peers heard of. */
  private reachOut (libp2p: NppLibp2p, relay: ResolvedRelay): void {
    const o = this.options
    if (o.pubsubDiscovery || relay.trusted.length > 0) {
      this.autoDial = new AutoDial(libp2p, { dialTimeout: o.dialTimeout, canDialDirectly: platform.canDialDirectly, keepInterval: o.reconnectInterval })
      if (o.pubsubDiscovery) this.autoDial.start()
    }
    for (const addr of [...relay.addrs, ...o.bootstrap]) {
      const bounded = timeoutSignal(o.dialTimeout, undefined, `dialing ${addr}`)
      libp2p.dial(parseMultiaddr(addr), { signal: bounded.signal })
        .catch((err: any) => { log.error('bootstrap dial to %s failed: %s', addr, err?.message ?? err) })
        .finally(() => { bounded.clear() })
    }
    // the relay's trusted peers (resolveRelay kept only well-formed entries):
    // directly when this platform can, else over WebRTC signalled through the
    // relay (they hold a reservation on it); redialed every reconnectInterval
    for (const addr of relay.trusted) {
      const peer = trailingPeerId(addr)
      if (peer == null || peer.equals(libp2p.peerId)) continue
      try {
        const candidates = [addr, ...relay.addrs.map(r => `${r}/p2p-circuit/webrtc/p2p/${peer.toString()}`)]
        this.autoDial?.keep(peer, candidates.map(parseMultiaddr))
      } catch (err: any) {
        log.error('ignoring trusted peer %s from the relay: %s', addr, err?.message ?? err)
      }
    }
  }

  private async teardown (): Promise<void> {
    const libp2p = this.stack?.libp2p
    libp2p?.removeEventListener('peer:connect', this.onPeerConnect)
    libp2p?.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    this.autoDial?.stop()
    this.autoDial = undefined
    await this.discovery?.stop()
    await this.companionsService?.stop()
    this.discovery = undefined
    this.companionsService = undefined
    if (this.dbs != null) {
      await Promise.all(Object.values(this.dbs).map(async db => { await db.close().catch(() => {}) }))
      this.dbs = undefined
    }
    await this.stack?.close()
    this.stack = undefined
    log('stopped')
  }

  private emit<K extends keyof NewPiecePleaseEvents> (type: K, detail: NewPiecePleaseEvents[K]['detail']): void {
    this.dispatchEvent(new CustomEvent(type, { detail }))
  }

  private readonly onPeerConnect = (evt: CustomEvent<any>): void => {
    this.emit('peer:connect', { peerId: evt.detail.toString() })
  }

  private readonly onPeerDisconnect = (evt: CustomEvent<any>): void => {
    this.emit('peer:disconnect', { peerId: evt.detail.toString() })
  }

  private started (): Stack {
    if (this.status !== 'started' || this.stack == null) {
      throw new NotStartedError(`the instance is ${this.status}; call start() first (or create a new instance after stop())`)
    }
    return this.stack
  }

  private get pieces (): CatalogDatabase<Piece> {
    this.started()
    return this.dbs!.pieces
  }

  // --- pieces -------------------------------------------------------------

  /**
   * Add a piece to the catalog (or update it when the hash exists).
   * Resolves to the stored piece. Adding the same piece twice writes once.
   */
  async addNewPiece (hash: string, instrument: string = DEFAULT_INSTRUMENT, extra?: PieceExtra): Promise<Piece> {
    assertHash(hash)
    assertInstrument(instrument)
    assertExtra(extra)
    const piece: Piece = { ...(extra ?? {}), hash, instrument }
    if (await this.needsWrite(piece)) await this.pieces.put(piece)
    return piece
  }

  /** False when the catalog already holds exactly this piece (adding it again writes nothing). */
  private async needsWrite (piece: Piece): Promise<boolean> {
    const existing = await this.pieces.get(piece.hash)
    return existing == null || JSON.stringify(existing.value) !== JSON.stringify(piece)
  }

  /**
   * Add or update many pieces at once: validated first (nothing is written if
   * one is invalid), unchanged ones skipped, the rest written in a few
   * batched log entries. Resolves to the stored pieces, in input order.
   */
  async addPieces (pieces: Array<{ hash: string, instrument?: string } & PieceExtra>): Promise<Piece[]> {
    if (!Array.isArray(pieces)) throw new InvalidPieceError(`expected an array of pieces, got ${describe(pieces)}`)
    const prepared = pieces.map((input, i) => {
      if (input == null || typeof input !== 'object' || Array.isArray(input)) throw new InvalidPieceError(`piece ${i}: expected an object, got ${describe(input)}`)
      const { hash, instrument = DEFAULT_INSTRUMENT, ...extra } = input
      try {
        assertHash(hash)
        assertInstrument(instrument)
        assertExtra(extra)
      } catch (err: any) {
        err.message = `piece ${i}: ${err.message}`
        throw err
      }
      return { ...extra, hash, instrument } as Piece
    })
    // the last occurrence of a hash wins, as if added one by one
    const latest = new Map(prepared.map(p => [p.hash, p]))
    const changed: Piece[] = []
    for (const piece of latest.values()) {
      if (await this.needsWrite(piece)) changed.push(piece)
    }
    if (changed.length > 0) await this.pieces.batch({ put: changed })
    return prepared.map(p => latest.get(p.hash)!)
  }

  /** Remove many pieces in a few batched entries; resolves to how many existed. */
  async deletePieces (hashes: string[]): Promise<number> {
    if (!Array.isArray(hashes)) throw new InvalidHashError(`expected an array of hashes, got ${describe(hashes)}`)
    hashes.forEach(h => { assertHash(h) })
    const db = this.pieces
    const present: string[] = []
    for (const hash of new Set(hashes)) {
      if ((await db.get(hash)) != null) present.push(hash)
    }
    if (present.length > 0) await db.batch({ del: present })
    return present.length
  }

  /** Every piece in the own catalog. */
  async getAllPieces (): Promise<Piece[]> {
    return (await this.pieces.all()).map(d => d.value)
  }

  /** The piece with `hash`, or `undefined`. */
  async getPieceByHash (hash: string): Promise<Piece | undefined> {
    assertHash(hash)
    return (await this.pieces.get(hash))?.value
  }

  /** Pieces for `instrument` (exact match). */
  async getByInstrument (instrument: string): Promise<Piece[]> {
    assertInstrument(instrument)
    return await this.pieces.getBy('instrument', instrument)
  }

  /** Change a piece's instrument, keeping its other fields. Throws `PieceNotFoundError` when absent. */
  async updatePieceByHash (hash: string, instrument: string = DEFAULT_INSTRUMENT): Promise<Piece> {
    assertHash(hash)
    assertInstrument(instrument)
    const pieces = this.pieces
    const existing = await pieces.get(hash)
    if (existing == null) {
      throw new PieceNotFoundError(`no piece with hash "${hash}" in the catalog`)
    }
    if (existing.value.instrument === instrument) return existing.value
    const piece = { ...existing.value, instrument }
    await pieces.put(piece)
    return piece
  }

  /** Remove a piece. Resolves to `false` when there was none. */
  async deletePieceByHash (hash: string): Promise<boolean> {
    assertHash(hash)
    const pieces = this.pieces
    if ((await pieces.get(hash)) == null) return false
    await pieces.del(hash)
    return true
  }

  // --- practice counters ----------------------------------------------------

  /** Practice sessions counted for `hash` (0 when none). */
  async getPracticeCount (hash: string): Promise<number> {
    assertHash(hash)
    this.started()
    return await this.dbs!.counters.value(hash)
  }

  /** Count one practice session (or `by`) for `hash`; resolves to the new count. */
  async incrementPracticeCounter (hash: string, by = 1): Promise<number> {
    assertHash(hash)
    if (!Number.isSafeInteger(by) || by <= 0 || by > 1_000_000) {
      throw new InvalidOptionError(`expected a positive integer increment, got ${describe(by)}`)
    }
    this.started()
    return await this.dbs!.counters.increment(hash, by)
  }

  // --- profile --------------------------------------------------------------

  async getAllProfileFields (): Promise<Record<string, JsonValue>> {
    this.started()
    return Object.fromEntries((await this.dbs!.user.all()).map(({ key, value }) => [key, value]))
  }

  async getProfileField (key: string): Promise<JsonValue | undefined> {
    assertProfileKey(key)
    this.started()
    return await this.dbs!.user.get(key)
  }

  async updateProfileField (key: string, value: JsonValue): Promise<void> {
    assertProfileKey(key)
    assertProfileValue(key, value)
    this.started()
    await this.dbs!.user.put(key, value)
  }

  /** Remove a profile field. Library-managed fields (`pieces`, `nodeId`, `counters`) and `username` cannot be removed. */
  async deleteProfileField (key: string): Promise<void> {
    assertProfileKey(key)
    if (READ_ONLY_PROFILE_KEYS.has(key) || key === 'username') {
      throw new InvalidProfileFieldError(`profile field "${key}" cannot be deleted`)
    }
    this.started()
    await this.dbs!.user.del(key)
  }

  // --- peers ----------------------------------------------------------------

  /** Peer ids of the peers connected now. */
  getIpfsPeers (): string[] {
    return this.started().libp2p.getPeers().map(p => p.toString())
  }

  /** Multiaddrs this node can be dialed on (each with `/p2p/<peer id>`). */
  getMultiaddrs (): string[] {
    return this.started().libp2p.getMultiaddrs().map(String)
  }

  /** Dial a multiaddr (or a known peer id); resolves to the remote peer id. */
  async connectToPeer (multiaddrOrPeerId: string, options: AbortOptions = {}): Promise<string> {
    const target = typeof multiaddrOrPeerId === 'string' && !multiaddrOrPeerId.startsWith('/')
      ? parsePeerId(multiaddrOrPeerId)
      : parseMultiaddr(multiaddrOrPeerId)
    const { libp2p } = this.started()
    const bounded = timeoutSignal(this.options.dialTimeout, options.signal, `connecting to ${multiaddrOrPeerId}`)
    try {
      const connection = await libp2p.dial(target as any, { signal: bounded.signal })
      return connection.remotePeer.toString()
    } catch (err: any) {
      throw bounded.signal.aborted ? bounded.signal.reason : err
    } finally {
      bounded.clear()
    }
  }

  /** Send a JSON object to `peerId`'s topic once it subscribes (bounded by `timeout`, default 10 s). */
  async sendMessage (peerId: string, message: Record<string, JsonValue>, options: AbortOptions & { timeout?: number } = {}): Promise<void> {
    const peer = parsePeerId(peerId)
    assertMessageObject(message)
    const { libp2p } = this.started()
    const timeout = positiveInteger('timeout', options.timeout, DEFAULT_SEND_TIMEOUT)
    const bounded = timeoutSignal(timeout, options.signal, `sending to ${peerId}`)
    try {
      await publishToPeer(libp2p.services.pubsub, peerId, peer, uint8ArrayFromString(JSON.stringify(message)), { signal: bounded.signal, attempts: ANNOUNCE_ATTEMPTS })
    } catch (err: any) {
      throw bounded.signal.aborted ? bounded.signal.reason : err
    } finally {
      bounded.clear()
    }
  }

  /** The companions register, with each companion's online state. */
  async getCompanions (): Promise<Companion[]> {
    this.started()
    return this.companionsService!.list()
  }

  /** Dial every companion that is not connected now; resolves to the companions with their state afterwards. */
  async connectToCompanions (options: AbortOptions = {}): Promise<Companion[]> {
    this.started()
    return await this.companionsService!.connectAll(options.signal)
  }

  /**
   * Query the own catalog and every companion's replica in parallel. Each
   * source is bounded by `timeout` (default `queryTimeout`); the result says
   * which sources answered.
   */
  async queryCatalog (filter?: PieceFilter, options: QueryOptions = {}): Promise<QueryResult> {
    this.started()
    const timeout = positiveInteger('timeout', options.timeout, this.options.queryTimeout)
    const own: QuerySourceInput = { owner: this.peerId, address: this.dbs!.pieces.address, online: true, db: this.dbs!.pieces }
    const seen = new Set([own.address])
    const sources = [own]
    const connected = new Set(this.getIpfsPeers())
    for (const replica of this.companionsService!.openReplicas()) {
      if (seen.has(replica.address)) continue
      seen.add(replica.address)
      const online = connected.has(replica.owner)
      sources.push({
        owner: replica.owner,
        address: replica.address,
        online,
        db: replica.db,
        ...(online && !replica.synced ? { whenSynced: replica.whenSynced } : {})
      })
    }
    return await queryCatalogs(sources, filter, timeout, { signal: options.signal, onProgress: options.onProgress })
  }
}

/** Create and start a `NewPiecePlease`; resolves when it is ready. */
export async function createNewPiecePlease (init: NewPiecePleaseInit = {}): Promise<NewPiecePlease> {
  const npp = new NewPiecePlease(init)
  await npp.start()
  return npp
}
