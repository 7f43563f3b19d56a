/**
 * `NewPiecePlease`: the tutorial's catalog class as a thin facade, in the
 * manner of Helia's own class. `start()` builds the stack (or adopts the
 * caller's Helia/OrbitDB), makes one `components` object, builds the parts
 * from it, starts them in order and stops them in reverse; every method
 * delegates to one part. The instance is the shared event target the parts
 * dispatch their typed events on.
 */
import { TypedEventEmitter } from 'main-event'
import { useDatabaseType } from '@orbitdb/core'
import { fromString as uint8ArrayFromString } from 'uint8arrays'
import { Catalog } from './catalog/catalog.ts'
import { Counters } from './counters/counters.ts'
import { createStack, type Stack } from './stack/stack.ts'
import { KeeperService } from './keeper/keeper.ts'
import { trailingPeerId } from './utils/multiaddr.ts'
import { KeeperClient } from './keeper/client.ts'
import { openOwnDatabases, closeOwnDatabases, type OwnDatabases } from './library/databases.ts'
import { Pieces, type PieceInput } from './library/pieces.ts'
import { Profile } from './library/profile.ts'
import { Practice } from './library/practice.ts'
import { Companions } from './companions/companions.ts'
import { Discovery } from './peering/discovery.ts'
import { RelayClient } from './peering/relay-client.ts'
import { publishToPeer } from './peering/publish.ts'
import { CatalogQuery } from './query/catalog-query.ts'
import { platform } from './platform/node.ts'
import { resolveOptions, type ResolvedOptions } from './options.ts'
import { withDeadline } from './utils/abort.ts'
import { logger } from './utils/logger.ts'
import { assertMessageObject, parseMultiaddr, parsePeerId, positiveInteger } from './utils/validate.ts'
import { NotStartedError } from './errors.ts'
import { DEFAULT_SEND_TIMEOUT, DEFAULT_MAX_RECONNECT_BACKOFF, ANNOUNCE_ATTEMPTS } from './constants.ts'
import type { PeerId } from '@libp2p/interface'
import type { NppComponents } from './components.ts'
import type { OrbitDB } from './orbitdb/types.ts'
import type {
  AbortOptions, Companion, JsonValue, NewPiecePleaseEvents, NewPiecePleaseInit, NppHelia, NppLibp2p, NppStats,
  Piece, PieceExtra, PieceFilter, QueryOptions, QueryResult, HubStatus, EntryRejectedDetail, KeeperStatus
} from './types.ts'

const log = logger('node')

useDatabaseType(Counters)
useDatabaseType(Catalog)

type Status = 'stopped' | 'starting' | 'started' | 'stopping'

/** Tutorial-style callback properties, called after the matching event. */
const CALLBACKS = {
  ready: 'onready',
  'peer:connect': 'onpeerconnect',
  message: 'onmessage',
  'db:discovered': 'ondbdiscovered',
  'companion:online': 'oncompaniononline',
  'companion:offline': 'oncompanionnotfound'
} as const satisfies Partial<Record<keyof NewPiecePleaseEvents, string>>

type CallbackName = typeof CALLBACKS[keyof typeof CALLBACKS]
type Callback<K extends keyof NewPiecePleaseEvents> = ((detail: NewPiecePleaseEvents[K]['detail']) => void) | undefined

/** The parts of a started instance. */
interface Parts {
  stack: Stack
  components: NppComponents
  databases: OwnDatabases
  relayClient: RelayClient
  pieces: Pieces
  profile: Profile
  practice: Practice
  companions: Companions
  discovery: Discovery
  /** Present when running as a keeper (`init.keeper`). */
  keeper?: KeeperService
  /** Present unless this instance is a keeper itself. */
  keeperClient?: KeeperClient
  query: CatalogQuery
}

export class NewPiecePlease extends TypedEventEmitter<NewPiecePleaseEvents> {
  onready: Callback<'ready'>
  onpeerconnect: Callback<'peer:connect'>
  onmessage: Callback<'message'>
  ondbdiscovered: Callback<'db:discovered'>
  oncompaniononline: Callback<'companion:online'>
  oncompanionnotfound: Callback<'companion:offline'>

  private readonly init: NewPiecePleaseInit
  private readonly options: ResolvedOptions
  private status: Status = 'stopped'
  private lastPeerId: string | undefined
  private lastStats: NppStats = emptyStats()
  private starting: Promise<void> | undefined
  private stopping: Promise<void> | undefined
  private stack: Stack | undefined
  private parts: Parts | undefined

  /** Prefer `createNewPiecePlease(init)`, which also starts the instance. */
  constructor (init: NewPiecePleaseInit = {}) {
    super()
    this.init = init
    this.options = resolveOptions(init)
  }

  override dispatchEvent (event: Event): boolean {
    const result = super.dispatchEvent(event)
    const name: CallbackName | undefined = (CALLBACKS as Partial<Record<string, CallbackName>>)[event.type]
    const callback = name == null ? undefined : this[name] as ((detail: unknown) => void) | undefined
    if (typeof callback === 'function') {
      try {
        callback.call(this, (event as CustomEvent).detail)
      } catch (err) {
        log.error('%s callback threw: %e', name, err)
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
    return this.lastPeerId ?? ''
  }

  /** What was received, sent and dropped since start (the last run's figures after `stop()`). */
  get stats (): NppStats {
    const parts = this.parts
    if (parts == null) return this.lastStats
    const d = parts.discovery.stats
    return { ...d, messagesDropped: { ...d.messagesDropped }, redials: parts.companions.redials, entriesRejected: { ...parts.stack.guard.stats } }
  }

  /** The Helia node (advanced use). */
  get node (): NppHelia {
    return this.started().components.helia
  }

  /** The libp2p node (advanced use). */
  get libp2p (): NppLibp2p {
    return this.started().components.libp2p
  }

  /** The OrbitDB instance (advanced use). */
  get orbitdb (): OrbitDB {
    return this.started().components.orbitdb
  }

  /** The open databases (advanced use). */
  get databases (): OwnDatabases {
    return this.started().databases
  }

  /** Start: build or adopt the stack, open the databases, start discovery and redials. Safe to call twice. */
  async start (): Promise<void> {
    if (this.status === 'started') return
    if (this.starting != null) { await this.starting; return }
    if (this.stopping != null) await this.stopping
    this.status = 'starting'
    this.starting = this.build().then(() => {
      this.status = 'started'
      this.safeDispatchEvent('ready', { detail: { peerId: this.peerId } })
    }, async (err: unknown) => {
      await this.teardown()
      this.status = 'stopped'
      throw err
    }).finally(() => { this.starting = undefined })
    await this.starting
  }

  /** Stop everything this instance started: databases, intervals, listeners and (if it built them) OrbitDB, Helia and libp2p. Safe to call twice. */
  async stop (): Promise<void> {
    if (this.status === 'stopped') return
    if (this.stopping != null) { await this.stopping; return }
    if (this.starting != null) await this.starting.catch(() => {})
    if (this.status !== 'started') return
    this.status = 'stopping'
    this.stopping = this.teardown().finally(() => {
      this.status = 'stopped'
      this.stopping = undefined
    })
    await this.stopping
  }

  private async build (): Promise<void> {
    const t0 = Date.now()
    const o = this.options
    // the gater's list of configured addresses; the relay's are added once its /config is read
    const gaterAllowed = [...(o.relay == null || /^https?:\/\//.test(o.relay) ? [] : [o.relay]), ...o.bootstrap, ...o.keepers]
    const stack = this.stack = await createStack({
      storage: o.storage,
      directory: o.directory,
      // with a relay: a reservation on it and WebRTC through it, so browsers can link to us
      listen: o.relay == null ? o.listen : [...new Set([...o.listen, ...platform.relayListen])],
      announce: o.announce,
      pubsubDiscovery: o.pubsubDiscovery,
      relay: o.relay != null,
      iceServers: o.iceServers,
      // only what the user configured: the relay's trusted peers are reached
      // through the relay (allowed as its addresses' prefix) or on public addresses
      trusted: gaterAllowed,
      peersPerAddress: o.peersPerAddress,
      helia: this.init.helia,
      orbitdb: this.init.orbitdb
    })
    const { helia, libp2p, orbitdb } = stack
    this.lastPeerId = libp2p.peerId.toString()
    stack.guard.addEventListener('entry:rejected', this.onEntryRejected)
    const components: NppComponents = { helia, libp2p, orbitdb, open: stack.open, events: this, logger: libp2p.logger }

    // reach the relay and the bootstrap peers while the databases open (and
    // keep them linked): the relay reservation (and so our WebRTC address) is
    // the slow part of being found. Peers that connect meanwhile are
    // announced to when discovery starts. Nothing here waits for the network
    // unless the caller asked for requireRelay.
    // keepers: configured, or listed in the relay's /config (read while the
    // databases open, before the keeper client exists: held until then)
    const keeperIds = new Set(o.keepers.flatMap(k => trailingPeerId(k)?.toString() ?? []))
    const learnedKeepers: string[] = []
    const late: { keeperClient?: KeeperClient } = {}
    const keeperSink = {
      add: (addr: string): string | undefined => {
        if (this.init.keeper != null) return undefined // a keeper keeps; it does not register with others
        if (late.keeperClient != null) return late.keeperClient.add(addr)
        const id = trailingPeerId(addr)?.toString()
        if (id != null && !learnedKeepers.includes(addr)) learnedKeepers.push(addr)
        return id
      }
    }
    const relayClient = new RelayClient(components, {
      relay: o.relay,
      // keepers are linked (and relinked) like bootstrap peers
      bootstrap: [...new Set([...o.bootstrap, ...o.keepers])],
      dialTimeout: o.dialTimeout,
      websocketOnly: platform.name === 'browser',
      pubsubDiscovery: o.pubsubDiscovery,
      reconnectInterval: o.reconnectInterval,
      canDialDirectly: platform.canDialDirectly,
      gaterAllowed,
      keepers: keeperSink
    })
    if (o.requireRelay && o.relay != null) await relayClient.require()
    relayClient.start()
    let databases: OwnDatabases
    try {
      databases = await openOwnDatabases(components, { memory: o.storage === 'memory', username: o.username })
    } catch (err) {
      relayClient.stop()
      throw err
    }
    databases.pieces.events.on('update', this.onOwnCatalogUpdate)
    const companions = new Companions({ ...components, register: databases.companions }, {
      reconnectInterval: o.reconnectInterval,
      maxBackoff: Math.max(DEFAULT_MAX_RECONNECT_BACKOFF, o.reconnectInterval),
      dialTimeout: o.dialTimeout,
      memory: o.storage === 'memory',
      convergence: { keepers: keeperIds },
      // a keeper's companions are its kept users: opened when wanted, and
      // kept as logs alone (it never reads their documents)
      lazy: this.init.keeper != null,
      bare: this.init.keeper != null,
      ...(this.init.keeper?.maxUsers != null ? { maxCompanions: this.init.keeper.maxUsers } : {})
    })
    const keeper = this.init.keeper == null
      ? undefined
      : new KeeperService({ ...components, companions }, { ...this.init.keeper, usageStorage: await stack.localStorage('keeper-usage'), timeout: o.discoveryTimeout })
    const keeperClient = late.keeperClient = keeper != null
      ? undefined
      : new KeeperClient({ ...components, companions }, {
        keepers: [...o.keepers, ...learnedKeepers],
        userDb: databases.user.address,
        listed: o.listed,
        maxIntroduced: o.maxIntroduced,
        timeout: o.discoveryTimeout,
        refreshInterval: o.reconnectInterval,
        peerIds: keeperIds
      })
    // a keeper keeps only the peers it serves, and announces itself to no one
    const discovery = new Discovery({ ...components, verifier: keeper ?? companions }, {
      announce: keeper == null,
      userDb: databases.user.address,
      // a peer that takes our announcement in opens our catalog
      acknowledgement: databases.pieces.address,
      timeout: o.discoveryTimeout
    })
    this.parts = {
      stack,
      components,
      databases,
      relayClient,
      pieces: new Pieces(databases),
      profile: new Profile(databases),
      practice: new Practice(databases),
      companions,
      discovery,
      keeper,
      keeperClient,
      query: new CatalogQuery({ ...components, pieces: databases.pieces, companions }, { queryTimeout: o.queryTimeout })
    }
    libp2p.addEventListener('peer:connect', this.onPeerConnect)
    libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
    await discovery.start()
    await companions.start()
    await keeper?.start()
    keeperClient?.start()
    log('started %s in %d ms (%s)', this.lastPeerId, Date.now() - t0, o.storage)
  }

  private async teardown (): Promise<void> {
    const parts = this.parts
    if (parts != null) {
      this.lastStats = this.stats
      const { libp2p } = parts.components
      libp2p.removeEventListener('peer:connect', this.onPeerConnect)
      libp2p.removeEventListener('peer:disconnect', this.onPeerDisconnect)
      parts.relayClient.stop()
      await parts.keeperClient?.stop()
      await parts.keeper?.stop()
      await parts.discovery.stop()
      await parts.companions.stop()
      parts.databases.pieces.events.off('update', this.onOwnCatalogUpdate)
      await closeOwnDatabases(parts.databases)
      this.parts = undefined
    }
    this.stack?.guard.removeEventListener('entry:rejected', this.onEntryRejected)
    await this.stack?.close()
    this.stack = undefined
    log('stopped')
  }

  private readonly onOwnCatalogUpdate = (): void => {
    const pieces = this.parts?.databases.pieces
    if (pieces != null) this.safeDispatchEvent('catalog:update', { detail: { owner: this.peerId, address: pieces.address } })
  }

  private readonly onPeerConnect = (evt: CustomEvent<PeerId>): void => {
    this.safeDispatchEvent('peer:connect', { detail: { peerId: evt.detail.toString() } })
  }

  private readonly onEntryRejected = (evt: CustomEvent<EntryRejectedDetail>): void => {
    this.safeDispatchEvent('entry:rejected', { detail: evt.detail })
  }

  private readonly onPeerDisconnect = (evt: CustomEvent<PeerId>): void => {
    this.safeDispatchEvent('peer:disconnect', { detail: { peerId: evt.detail.toString() } })
  }

  private started (): Parts {
    if (this.status !== 'started' || this.parts == null) {
      throw new NotStartedError(`the instance is ${this.status}; call start() first (or create a new instance after stop())`)
    }
    return this.parts
  }

  // --- pieces (./library/pieces.ts) -----------------------------------------

  /**
   * Add a piece to the catalog (or update it when the hash exists).
   * Resolves to the stored piece. Adding the same piece twice writes once.
   */
  async addNewPiece (hash: string, instrument?: string, extra?: PieceExtra): Promise<Piece> {
    return await this.started().pieces.addNewPiece(hash, instrument, extra)
  }

  /**
   * Add or update many pieces at once: validated first (nothing is written if
   * one is invalid), unchanged ones skipped, the rest written in a few
   * batched log entries. Resolves to the stored pieces, in input order.
   */
  async addPieces (pieces: PieceInput[]): Promise<Piece[]> {
    return await this.started().pieces.addPieces(pieces)
  }

  /** Remove many pieces in a few batched entries; resolves to how many existed. */
  async deletePieces (hashes: string[]): Promise<number> {
    return await this.started().pieces.deletePieces(hashes)
  }

  /** Every piece in the own catalog. */
  async getAllPieces (): Promise<Piece[]> {
    return await this.started().pieces.getAllPieces()
  }

  /** The piece with `hash`, or `undefined`. */
  async getPieceByHash (hash: string): Promise<Piece | undefined> {
    return await this.started().pieces.getPieceByHash(hash)
  }

  /** Pieces for `instrument` (exact match). */
  async getByInstrument (instrument: string): Promise<Piece[]> {
    return await this.started().pieces.getByInstrument(instrument)
  }

  /** Change a piece's instrument, keeping its other fields. Throws `PieceNotFoundError` when absent. */
  async updatePieceByHash (hash: string, instrument?: string): Promise<Piece> {
    return await this.started().pieces.updatePieceByHash(hash, instrument)
  }

  /** Remove a piece. Resolves to `false` when there was none. */
  async deletePieceByHash (hash: string): Promise<boolean> {
    return await this.started().pieces.deletePieceByHash(hash)
  }

  // --- practice counters (./library/practice.ts) ----------------------------

  /** Practice sessions counted for `hash` (0 when none). */
  async getPracticeCount (hash: string): Promise<number> {
    return await this.started().practice.getPracticeCount(hash)
  }

  /** Count one practice session (or `by`) for `hash`; resolves to the new count. */
  async incrementPracticeCounter (hash: string, by = 1): Promise<number> {
    return await this.started().practice.incrementPracticeCounter(hash, by)
  }

  // --- profile (./library/profile.ts) ---------------------------------------

  async getAllProfileFields (): Promise<Record<string, JsonValue>> {
    return await this.started().profile.getAllProfileFields()
  }

  async getProfileField (key: string): Promise<JsonValue | undefined> {
    return await this.started().profile.getProfileField(key)
  }

  async updateProfileField (key: string, value: JsonValue): Promise<void> {
    await this.started().profile.updateProfileField(key, value)
  }

  /** Remove a profile field. Library-managed fields (`pieces`, `nodeId`, `counters`) and `username` cannot be removed. */
  async deleteProfileField (key: string): Promise<void> {
    await this.started().profile.deleteProfileField(key)
  }

  // --- peers ----------------------------------------------------------------

  /** Peer ids of the peers connected now. */
  getIpfsPeers (): string[] {
    return this.started().components.libp2p.getPeers().map(p => p.toString())
  }

  /**
   * The configured hubs (the relay, bootstrap peers) and this peer's link to
   * each: linked or not, since when, and why the last dial failed. Hubs that
   * are away are dialed again with back-off and jitter for as long as the
   * peer runs; `hub:connected`/`hub:disconnected` report the changes.
   */
  hubs (): HubStatus[] {
    return this.started().relayClient.hubs.status()
  }

  /**
   * The configured keepers and what each answered at the last connection:
   * whether it keeps this peer's databases, why it refused, how many
   * companions its introductions brought.
   */
  keepers (): KeeperStatus[] {
    return this.started().keeperClient?.list() ?? []
  }

  /** The keeper service, when this instance runs as a keeper (`init.keeper`): its allowlist and kept users. */
  get keeperService (): KeeperService | undefined {
    return this.started().keeper
  }

  /** Multiaddrs this node can be dialed on (each with `/p2p/<peer id>`). */
  getMultiaddrs (): string[] {
    return this.started().components.libp2p.getMultiaddrs().map(String)
  }

  /** Dial a multiaddr (or a known peer id); resolves to the remote peer id. */
  async connectToPeer (multiaddrOrPeerId: string, options: AbortOptions = {}): Promise<string> {
    const target = typeof multiaddrOrPeerId === 'string' && !multiaddrOrPeerId.startsWith('/')
      ? parsePeerId(multiaddrOrPeerId)
      : parseMultiaddr(multiaddrOrPeerId)
    const { libp2p } = this.started().components
    const connection = await withDeadline(this.options.dialTimeout, options.signal, `connecting to ${multiaddrOrPeerId}`,
      async (signal) => await libp2p.dial(target, { signal }))
    return connection.remotePeer.toString()
  }

  /** Send a JSON object to `peerId`'s topic once it subscribes (bounded by `timeout`, default 10 s). */
  async sendMessage (peerId: string, message: Record<string, JsonValue>, options: AbortOptions & { timeout?: number } = {}): Promise<void> {
    const peer = parsePeerId(peerId)
    assertMessageObject(message)
    const { libp2p } = this.started().components
    const timeout = positiveInteger('timeout', options.timeout, DEFAULT_SEND_TIMEOUT)
    await withDeadline(timeout, options.signal, `sending to ${peerId}`, async (signal) =>
      await publishToPeer(libp2p.services.pubsub, peerId, peer, uint8ArrayFromString(JSON.stringify(message)), { signal, attempts: ANNOUNCE_ATTEMPTS }))
  }

  // --- companions (./companions/) and search (./query/) ---------------------

  /** The companions register, with each companion's online state. */
  async getCompanions (): Promise<Companion[]> {
    return this.started().companions.list()
  }

  /** Dial every companion that is not connected now; resolves to the companions with their state afterwards. */
  async connectToCompanions (options: AbortOptions = {}): Promise<Companion[]> {
    return await this.started().companions.connectAll(options.signal)
  }

  /**
   * Query the own catalog and every companion's replica in parallel. Each
   * source is bounded by `timeout` (default `queryTimeout`); the result says
   * which sources answered.
   */
  async queryCatalog (filter?: PieceFilter, options: QueryOptions = {}): Promise<QueryResult> {
    return await this.started().query.query(filter, options)
  }
}

function emptyStats (): NppStats {
  return {
    messagesReceived: 0,
    messagesDropped: { oversized: 0, 'not-json': 0, 'wrong-shape': 0, 'rate-limited': 0, 'queue-full': 0, 'invalid-user-db': 0, 'recently-failed': 0, forwarded: 0, 'duplicate-identity': 0 },
    discoveriesStarted: 0,
    discoveriesSucceeded: 0,
    discoveriesFailed: 0,
    discoveriesRetried: 0,
    announcementsDeferred: 0,
    announcementsSent: 0,
    announcementsRetried: 0,
    announcementsUnacknowledged: 0,
    redials: 0,
    entriesRejected: { 'not-an-entry': 0, 'wrong-log': 0, 'unknown-identity': 0, 'not-a-writer': 0, 'bad-signature': 0, busy: 0 }
  }
}

/** Create and start a `NewPiecePlease`; resolves when it is ready. */
export async function createNewPiecePlease (init: NewPiecePleaseInit = {}): Promise<NewPiecePlease> {
  const npp = new NewPiecePlease(init)
  await npp.start()
  return npp
}
