/**
 * Builds the Helia + libp2p + OrbitDB stack for a `NewPiecePlease`, or adopts
 * the parts the caller brought. Only what it built is stopped by `close()`.
 */
import { createLightHelia, withLibp2pLight } from './helia.ts'
import { withBitswap } from '@helia/bitswap'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { LevelBlockstore } from 'blockstore-level'
import { LevelDatastore } from 'datastore-level'
import * as dagCbor from '@ipld/dag-cbor'
import { toString as uint8ArrayToString } from 'uint8arrays'
import { createOrbitDB, KeyStore, Identities, MemoryStorage, LevelStorage, ComposedStorage, LRUStorage, IPFSBlockStorage } from '@orbitdb/core'
import { platform } from '../platform/node.ts'
import { joinPath } from '../utils/path.ts'
import { closeQuietly } from '../orbitdb/quiet-close.ts'
import { openOnce } from './open-once.ts'
import { openSharedStorage, memorySharedStorage, type SharedStorage } from './shared-storage.ts'
import { EntryGuard, headsProtocolOf } from '../orbitdb/entry-guard.ts'
import { DEFAULT_ICE_SERVERS, DEFAULT_PEERS_PER_ADDRESS, MAX_IDENTIFY_MESSAGE_BYTES } from '../constants.ts'
import { logger } from '../utils/logger.ts'
import { HubAnnouncer } from '../peering/hub-announce.ts'
import { crowdConnectionLimits, crowdScoreParams } from '../peering/crowd.ts'
import { inboundGate } from '../peering/inbound-gate.ts'
import type { OrbitDB, OpenOptions, OrbitDBDatabase, OrbitDBStorage, DatabaseFactory, DatabaseInit } from '../orbitdb/types.ts'
import type { IceServer, NppHelia, NppLibp2p } from '../types.ts'

const log = logger('stack')
const dbLog = logger('sync')

/**
 * OrbitDB fetches a database's blocks one round trip at a time (manifest,
 * access controller, identity, then entries along their links), so bitswap's
 * batching delays add up: send wants and blocks at once, and answer a
 * want-have for any block up to 1 MiB with the block itself.
 *
 * The rest stays at @helia/bitswap's defaults (4.0.19), on purpose:
 * - `maxWantListSize` (1024; spelled so, the documented `maxWantlistSize` is
 *   not read) evicts wants a peer sent us, and Helia never sends a want
 *   twice: an evicted want of an honest peer is lost until it reconnects. In
 *   a mesh of 10 companions, up to 163 live wants from one peer were open at
 *   once, and with the limit at 128, 10 to 197 of them were evicted while the
 *   mesh replicated; against a flood it only helps while the flood sends more
 *   wants per message than the limit. Floods are paced by `limitPeerWants`.
 * - `maxIncomingMessageSize` (4 MiB): unsolicited blocks are hashed and
 *   dropped, never stored, and a lower limit would reset the stream of an
 *   honest Helia that packs several blocks into one message (its default is
 *   4 MiB too), losing them; `maxOutgoingMessageSize` follows it when unset,
 *   and a block larger than that makes 4.0.19's message splitter send empty
 *   messages until the send times out.
 * - `maxInboundStreams` (1024 per connection): Helia opens a stream per
 *   message, up to 50 at once towards one peer.
 */
export const BITSWAP_OPTIONS = {
  sendWantlistDebounce: 0,
  sendBlocksDebounce: 0,
  maxSizeReplaceHasWithBlock: 1024 * 1024
}

/**
 * Wants one peer may add to our copy of its wantlist, each second. An honest
 * peer sent at most 459 a second (replicating a 3,000- and a 10,000-entry
 * catalog) and 215 a second in a mesh of 10 companions; a flood sent 100,000.
 */
export const BITSWAP_WANTS_PER_SECOND = 2000
/** Wants one peer may send at once before being paced (an honest peer's largest message held 146). */
export const BITSWAP_WANTS_BURST = 4096
/** What one message costs at least, in wants: each makes bitswap walk the peer's whole wantlist (honest peers sent at most 31 messages a second). */
export const BITSWAP_MESSAGE_COST = 8
/** Wants of one peer waiting for their turn; more are dropped. */
export const BITSWAP_WANTS_BACKLOG = 8192
/** Wants of all peers waiting for their turn; more are dropped. */
export const BITSWAP_WANTS_BACKLOG_TOTAL = 65_536

/** The pace `limitPeerWants` keeps, in wants (the constants above by default). */
export interface BitswapWantLimits {
  /** @default BITSWAP_WANTS_PER_SECOND */
  wantsPerSecond: number
  /** @default BITSWAP_WANTS_BURST */
  burst: number
  /** @default BITSWAP_MESSAGE_COST */
  messageCost: number
  /** @default BITSWAP_WANTS_BACKLOG */
  backlog: number
  /** @default BITSWAP_WANTS_BACKLOG_TOTAL */
  backlogTotal: number
}

export const BITSWAP_WANT_LIMITS: BitswapWantLimits = {
  wantsPerSecond: BITSWAP_WANTS_PER_SECOND,
  burst: BITSWAP_WANTS_BURST,
  messageCost: BITSWAP_MESSAGE_COST,
  backlog: BITSWAP_WANTS_BACKLOG,
  backlogTotal: BITSWAP_WANTS_BACKLOG_TOTAL
}

export interface StackInit {
  storage: 'persistent' | 'memory'
  directory: string
  listen: string[]
  /** Addresses announced instead of the listen addresses. Default none. */
  announce?: string[]
  pubsubDiscovery: boolean
  /** A relay is configured: add the platform's relay transports (circuit relay v2, WebRTC). Default false. */
  relay?: boolean
  /** WebRTC ICE servers. Default none (`DEFAULT_ICE_SERVERS`). */
  iceServers?: IceServer[]
  /**
   * Addresses the user configured (relay, bootstrap): dialable even where
   * the platform's gater would refuse them. Read on every dial, so addresses
   * added later count.
   */
  trusted?: string[]
  /** Peers expected behind one IP address (see `NewPiecePleaseInit.peersPerAddress`). @default DEFAULT_PEERS_PER_ADDRESS */
  peersPerAddress?: number
  helia?: NppHelia
  orbitdb?: OrbitDB
}

export interface Stack {
  helia: NppHelia
  libp2p: NppLibp2p
  orbitdb: OrbitDB
  /**
   * `orbitdb.open` with this stack's storage (memory mode keeps heads and
   * indexes in memory) and an `error` listener on the database's events:
   * OrbitDB emits sync failures there, and an unheard `error` event would
   * crash the process. One open per database (`open-once.ts`): concurrent
   * callers share the open in flight, each gets its own handle, and the
   * database is closed when the last handle is.
   */
  open<D extends OrbitDBDatabase>(address: string, options?: OpenOptions): Promise<D>
  /**
   * Checks every log entry the network sends to a database opened through
   * `open`, before OrbitDB applies it (`../orbitdb/entry-guard.ts`): its
   * `stats` and `entry:rejected` events say what it refused.
   */
  guard: EntryGuard
  /**
   * What the stack's bitswap did with wants of peers over their budget
   * (`limitPeerWants`); undefined when the caller brought the Helia node.
   */
  bitswapWants?: BitswapWantStats
  /**
   * A storage of this node's own named `name` (not a database's): a
   * sublevel of the shared store, or in memory (memory mode, or an OrbitDB
   * the caller brought).
   */
  localStorage(name: string): Promise<OrbitDBStorage>
  /**
   * `options` for another OrbitDB instance on this stack's Helia (the keeper
   * bench's fixture writes users' databases so) that store heads and indexes
   * where this stack's `open` does.
   */
  withStorage(options: OpenOptions): OpenOptions
  close(): Promise<void>
}

export async function createStack (init: StackInit): Promise<Stack> {
  const closers: Array<() => Promise<void>> = []
  let helia: NppHelia
  let orbitdb: OrbitDB
  let wants: BitswapWantLimiter | undefined
  let shared: SharedStorage | undefined

  try {
    if (init.orbitdb != null) {
      orbitdb = init.orbitdb
      helia = orbitdb.ipfs as NppHelia
    } else {
      if (init.helia != null) {
        helia = init.helia
        if ((helia as any).status !== 'started') await helia.start()
      } else {
        helia = await createHelia(init, closers)
        // stopped before the node (closers run last first)
        wants = limitPeerWants(helia)
        if (wants != null) closers.push(async () => { wants?.stop() })
      }
      orbitdb = await createOrbit(helia, init, closers)
      if (init.storage === 'memory') {
        // kept for the life of the node: a database closed and opened again keeps what it held
        const store = shared = memorySharedStorage()
        closers.splice(closers.length - 1, 0, async () => { await store.close() })
      } else {
        const store = shared = await openSharedStorage(joinPath(init.directory, 'orbitdb', 'shared'))
        // closed after orbitdb.stop() has closed every database (closers run last first)
        closers.splice(closers.length - 1, 0, async () => { await store.close() })
      }
    }
  } catch (err) {
    await runClosers(closers)
    throw err
  }

  const guarded = new WeakSet<OrbitDBDatabase>()
  const libp2p = helia.libp2p as NppLibp2p
  if (libp2p.services.pubsub == null) {
    await runClosers(closers)
    throw new TypeError('the libp2p node needs a gossipsub service named "pubsub" (OrbitDB syncs through it)')
  }
  // runs first at close (closers run last first): cancels every lookup, so
  // no database's close waits on one
  const guard = new EntryGuard({ ipfs: helia as any, identities: orbitdb.identities, libp2p, identity: orbitdb.identity as any })
  guard.start()
  closers.push(async () => { await guard.stop() })

  return {
    helia,
    libp2p,
    orbitdb,
    // one open per database, shared by reference count (see open-once.ts)
    open: openOnce(async <D extends OrbitDBDatabase>(address: string, options: OpenOptions): Promise<D> => {
      // OrbitDB fetches missing entries with a 30 s timeout and close() waits
      // for them; this storage lets close() cancel those network reads first
      // (local writes are never cancelled)
      const closing = new AbortController()
      const inner = await ComposedStorage(await LRUStorage({ size: 1000 }), await IPFSBlockStorage({ ipfs: helia as any, pin: true }))
      const entryStorage: OrbitDBStorage = {
        ...inner,
        get: async (hash: string, signal?: AbortSignal) => await inner.get(hash, signal == null ? closing.signal : AbortSignal.any([signal, closing.signal]))
      }
      // sync starts once the entry guard is in place: nothing from the network reaches it unchecked
      const db = await orbitdb.open<D>(address, { entryStorage, ...inSharedStorage(options, shared), sync: false })
      const fresh = !guarded.has(db)
      if (fresh) {
        guarded.add(db)
        guard.guard(db, closing.signal)
        db.events.on('error', (err: any) => { dbLog('%s: %s', db.address, err?.message ?? err) })
        const close = db.close
        db.close = async () => {
          closing.abort()
          await closeQuietly(close)
        }
      } else {
        await entryStorage.close()
      }
      if (options.sync !== false) {
        await db.sync.start()
        if (fresh) exchangeWithSubscribers(libp2p, db, closing.signal)
      }
      return db
    }),
    guard,
    bitswapWants: wants?.stats,
    localStorage: async (name) => shared?.local(name) ?? await MemoryStorage(),
    withStorage: (options) => inSharedStorage(options, shared),
    async close () {
      await runClosers(closers)
    }
  }
}

/** Time allowed for a heads exchange `exchangeWithSubscribers` starts (ms). */
const SUBSCRIBER_EXCHANGE_TIMEOUT = 10_000

/**
 * Exchange heads with every peer already subscribed to `db`'s topic when its
 * sync started. OrbitDB exchanges heads when it sees a peer subscribe, and
 * it subscribes before it registers its heads protocol: a peer that sees our
 * subscription and dials at once can find no protocol yet
 * (`UnsupportedProtocolError`), and OrbitDB skips it for good; a peer
 * subscribed before us never subscribes again. A keeper opening a kept
 * user's databases because a peer subscribed to them met exactly that: the
 * peer never got the profile (test/integration/keeper.test.ts, "close once
 * nobody uses them"). Our dial goes through the entry guard like OrbitDB's
 * own (the heads that pass are handed to OrbitDB as updates); ours are sent
 * as OrbitDB sends them. Only peers with a direct (unlimited) connection
 * open are asked: nothing is dialed for it. Failures are logged.
 */
function exchangeWithSubscribers (libp2p: NppLibp2p, db: OrbitDBDatabase, closing: AbortSignal): void {
  for (const peer of libp2p.services.pubsub.getSubscribers(db.address)) {
    // over a link that is there and not limited (OrbitDB does not sync over a
    // relayed one): a dial from here would race the links' own dials
    if (!libp2p.getConnections(peer).some(c => c.limits == null)) continue
    void (async () => {
      const signal = AbortSignal.any([closing, AbortSignal.timeout(SUBSCRIBER_EXCHANGE_TIMEOUT)])
      const stream = await libp2p.dialProtocol(peer, headsProtocolOf(db.address), { signal })
      try {
        for (const head of await db.log.heads()) {
          const bytes = await db.log.storage.get(head.hash) as Uint8Array | undefined
          if (bytes != null) stream.send(bytes)
        }
        await stream.close({ signal })
      } catch (err) {
        stream.abort(err instanceof Error ? err : new Error(String(err)))
        throw err
      }
    })().catch((err: any) => { dbLog('%s: heads exchange with %s, subscribed before us: %s', db.address, peer.toString(), err?.message ?? err) })
  }
}

/**
 * `options` whose `Database` keeps its heads, log index and catalog index in
 * `shared` (see shared-storage.ts), unless the caller gave storages, there is
 * no shared store (an OrbitDB the caller brought), or the
 * database was written before it (its own heads store exists: opened as
 * before, with OrbitDB's own stores).
 */
function inSharedStorage (options: OpenOptions, shared: SharedStorage | undefined): OpenOptions {
  const Database = options.Database as DatabaseFactory | undefined
  if (shared == null || Database == null || options.headsStorage != null || options.indexStorage != null) return options
  const factory: DatabaseFactory = async (init) => {
    // written before the shared store: its own stores (unless it was written here since)
    if (shared.persistent && !(await shared.holds(init.address, 'heads')) && await platform.storeExists(orbitdbPath(orbitdbPath(init.directory ?? './orbitdb', `./${init.address}/`), '/log/_heads/'))) return await Database(init)
    return await Database({
      ...init,
      headsStorage: await ComposedStorage(await LRUStorage({ size: 1000 }), shared.storage(init.address, 'heads')),
      indexStorage: await ComposedStorage(await LRUStorage({ size: 1000 }), shared.storage(init.address, 'index')),
      catalogStorage: shared.storage(init.address, 'catalog')
    } as DatabaseInit)
  }
  return { ...options, Database: factory }
}

/** OrbitDB's own path join (utils/path-join.js), so a path is spelled as OrbitDB spelled it (browser-level names its database by it). */
function orbitdbPath (...paths: string[]): string {
  return paths.join('/').replace(/((?<=\/)\/+)|(^\.\/)|((?<=\/)\.\/)/g, '') || '.'
}

async function runClosers (closers: Array<() => Promise<void>>): Promise<void> {
  while (closers.length > 0) {
    const close = closers.pop()
    try {
      await close?.()
    } catch (err: any) {
      log.error('close failed: %s', err?.message ?? err)
    }
  }
}

async function createHelia (init: StackInit, closers: Array<() => Promise<void>>): Promise<NppHelia> {
  const crowd = init.peersPerAddress ?? DEFAULT_PEERS_PER_ADDRESS
  let blockstore, datastore
  if (init.storage === 'memory') {
    blockstore = new MemoryBlockstore()
    datastore = new MemoryDatastore()
  } else {
    const lock = await platform.lockStorage(init.directory)
    closers.push(async () => { await lock.release() })
    const bs = new LevelBlockstore(joinPath(init.directory, 'blocks'))
    const ds = new LevelDatastore(joinPath(init.directory, 'datastore'))
    await bs.open()
    closers.push(async () => { await bs.close() })
    await ds.open()
    closers.push(async () => { await ds.close() })
    blockstore = bs
    datastore = ds
  }

  const services: Record<string, any> = {
    identify: identify({ maxMessageSize: MAX_IDENTIFY_MESSAGE_BYTES }),
    pubsub: gossipsub({
      // OrbitDB publishes updates whether or not anyone listens yet
      allowPublishToZeroTopicPeers: true,
      emitSelf: false,
      scoreParams: crowdScoreParams(crowd)
    })
  }

  const discovery = new HubAnnouncer()
  const light = await createLightHelia({
    blockstore,
    datastore,
    codecs: [dagCbor],
    // no gateways, no delegated routers: blocks come from connected peers only
    blockBrokers: [],
    routers: []
  })
  const transports = await platform.transports({ relay: init.relay ?? false, iceServers: init.iceServers ?? [...DEFAULT_ICE_SERVERS], listen: init.listen })
  // runs after libp2p has stopped (closers run last first)
  closers.push(transports.release)
  const limits = crowdConnectionLimits(crowd, platform.connectionLimits)
  const helia = withBitswap(withLibp2pLight(light, {
    addresses: { listen: init.listen, ...(init.announce != null && init.announce.length > 0 ? { announce: init.announce } : {}) },
    transports: transports.transports,
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: inboundGate(limits.gate, platform.connectionGater(init.trusted ?? [])),
    connectionManager: limits.connectionManager,
    peerDiscovery: init.pubsubDiscovery ? [discovery.discovery] : [],
    services
  } as any), BITSWAP_OPTIONS) as unknown as NppHelia

  await helia.start()
  closers.push(async () => { await helia.stop() })
  if (init.pubsubDiscovery) {
    discovery.start(helia.libp2p as NppLibp2p)
    closers.push(async () => { discovery.stop() })
  }
  log('helia started as %s (%s storage)', helia.libp2p.peerId.toString(), init.storage)
  return helia
}

async function createOrbit (helia: NppHelia, init: StackInit, closers: Array<() => Promise<void>>): Promise<OrbitDB> {
  const id = helia.libp2p.peerId.toString()
  let orbitdb: OrbitDB
  if (init.storage === 'memory') {
    const keystore = await KeyStore({ storage: await MemoryStorage() })
    const identities = await Identities({ keystore, ipfs: helia as any })
    orbitdb = await createOrbitDB({ ipfs: helia as any, id, identities, directory: joinPath(init.directory, 'orbitdb') })
    // memory means memory for every database, including ones a caller opens
    // through `npp.orbitdb` directly: heads and indexes never touch the disk
    const open = orbitdb.open
    orbitdb.open = async (address, options = {}) => await open(address, {
      headsStorage: await MemoryStorage(),
      indexStorage: await MemoryStorage(),
      ...options
    })
  } else {
    const directory = joinPath(init.directory, 'orbitdb')
    const keystore = await KeyStore({
      storage: await ComposedStorage(await LRUStorage({ size: 1000 }), await LevelStorage({ path: joinPath(directory, 'keystore') }))
    })
    const identities = await Identities({ keystore, ipfs: helia as any })
    // a stable id keeps the same OrbitDB identity (and so the same database addresses) across restarts
    orbitdb = await createOrbitDB({ ipfs: helia as any, id, identities, directory })
  }
  // orbitdb.stop() closes every database it opened and the keystore
  closers.push(async () => { await orbitdb.stop() })
  return orbitdb
}

// --- bitswap: what one peer's wants may cost us ------------------------------
//
// @helia/bitswap 4.0.19 (checked against dist/src/peer-want-lists/) handles
// every wantlist a peer sends at once: each want is decoded, looked up in the
// blockstore (a NotFoundError, with its stack trace, for each one we lack) and
// answered, and every message walks the peer's whole wantlist again, looking
// up once more each want already known to be missing. One stranger's flood of
// random want-haves, one message at a time, had every one of them answered,
// took 30 to 35 ms of the victim's CPU per 1,000, its writes from a median of
// 14 to 66-84 ms and its RSS from 160 to about 300 MB in 4 s; paced, 11 to
// 12 ms, 13 ms and 210-225 MB (test/integration/hostile-bitswap.test.ts). No
// option bounds either (see BITSWAP_OPTIONS), so `limitPeerWants` patches the
// one bitswap it is given, through two of its instances (none of bitswap's
// modules is loaded):
// - its PeerWantLists' `receiveMessage`, to pace the wants of each peer
//   (`BitswapWantLimits`): a message within the peer's budget is handled at
//   once, as before; one over it waits for its turn, in order; one that would
//   make the peer's wait longer than its backlog is dropped. A message without
//   wants (blocks answering our own wants) is not handed to it at all: it
//   only made bitswap walk the peer's wantlist again.
// - each Ledger's `sendBlocksToPeer`, to look up a want known to be missing
//   again only once the block has come (bitswap's `receivedBlock`, which runs
//   for every block stored), not on every message of that peer.

const bitswapLog = logger('bitswap')
const PARKED = 'npp-parked'

/** What `limitPeerWants` did, in wants. */
export interface BitswapWantStats {
  /** Wants handled later than they came, their peer being over its budget. */
  deferred: number
  /** Wants dropped, their peer's backlog being full. */
  dropped: number
}

export interface BitswapWantLimiter {
  readonly stats: BitswapWantStats
  /** Clears every timer and backlog and gives bitswap its own methods back. Safe to call twice. */
  stop(): void
}

interface Budget {
  tokens: number
  at: number
  waiting: Array<{ message: any, cost: number }>
  waitingCost: number
  timer?: ReturnType<typeof setTimeout>
  dropped: number
}

/**
 * Paces the wants each peer sends to `helia`'s bitswap (see above); undefined,
 * with an error logged, when its internals are not the ones checked.
 */
export function limitPeerWants (helia: NppHelia, limits: BitswapWantLimits = BITSWAP_WANT_LIMITS): BitswapWantLimiter | undefined {
  const wantLists = (helia as any).blockBrokers?.find((b: any) => b?.name === 'bitswap')?.bitswap?.peerWantLists
  const methods = ['receiveMessage', 'receivedBlock', 'peerDisconnected']
  if (wantLists == null || typeof wantLists.ledgerMap?.get !== 'function' || typeof wantLists.ledgerMap?.values !== 'function' || methods.some(m => typeof wantLists[m] !== 'function')) {
    bitswapLog.error('bitswap wants are not limited: @helia/bitswap is not the version checked (4.0.19)')
    return undefined
  }
  // put back by stop(): bitswap's own are on its prototype
  const own = new Map(methods.filter(m => Object.hasOwn(wantLists, m)).map(m => [m, wantLists[m]]))
  const receive = wantLists.receiveMessage
  const receivedBlock = wantLists.receivedBlock
  const peerDisconnected = wantLists.peerDisconnected
  const stats: BitswapWantStats = { deferred: 0, dropped: 0 }
  const budgets = new Map<string, Budget>()
  const patched = new WeakSet<object>()
  const recheck = new WeakSet<object>()
  let waitingTotal = 0
  let stopped = false

  const handle = (peerId: any, message: any): void => {
    try {
      receive.call(wantLists, peerId, message)
      parkMissing(wantLists.ledgerMap.get(peerId))
    } catch (err: any) {
      bitswapLog.error('wants of %p not handled - %e', peerId, err)
    }
  }
  // wants known to be missing are taken out of each run of sendBlocksToPeer
  // (their status is what it picks), and put back after it
  const parkMissing = (ledger: any): void => {
    if (ledger == null || patched.has(ledger) || typeof ledger.sendBlocksToPeer !== 'function' || !(ledger.wants instanceof Map)) return
    patched.add(ledger)
    const send = ledger.sendBlocksToPeer
    ledger.sendBlocksToPeer = async (...args: unknown[]) => {
      const parked: any[] = []
      for (const want of ledger.wants.values()) {
        if (want.status !== 'want' || want.haveBlock !== false || recheck.delete(want)) continue
        want.status = PARKED
        parked.push(want)
      }
      try {
        return await send.apply(ledger, args)
      } finally {
        for (const want of parked) if (want.status === PARKED) want.status = 'want'
      }
    }
  }
  const refill = (b: Budget): void => {
    const now = Date.now()
    b.tokens = Math.min(limits.burst, b.tokens + (now - b.at) * limits.wantsPerSecond / 1000)
    b.at = now
  }
  // a message bigger than the whole budget goes once the budget is full, into debt
  const affordable = (b: Budget, cost: number): boolean => b.tokens >= Math.min(cost, limits.burst)
  const drain = (peerId: any, b: Budget): void => {
    b.timer = undefined
    refill(b)
    while (b.waiting.length > 0 && affordable(b, b.waiting[0]!.cost)) {
      const { message, cost } = b.waiting.shift()!
      b.waitingCost -= cost
      waitingTotal -= cost
      b.tokens -= cost
      handle(peerId, message)
    }
    schedule(peerId, b)
  }
  const schedule = (peerId: any, b: Budget): void => {
    if (stopped || b.timer != null || b.waiting.length === 0) return
    const missing = Math.min(b.waiting[0]!.cost, limits.burst) - b.tokens
    b.timer = setTimeout(() => { drain(peerId, b) }, Math.max(1, Math.ceil(missing * 1000 / limits.wantsPerSecond)))
  }

  wantLists.receiveMessage = (peerId: any, message: any): void => {
    const entries: number = message?.wantlist?.entries?.length ?? 0
    if (entries === 0 && message?.wantlist?.full !== true) return
    const key = peerId.toString()
    let b = budgets.get(key)
    if (b == null) {
      b = { tokens: limits.burst, at: Date.now(), waiting: [], waitingCost: 0, dropped: 0 }
      budgets.set(key, b)
    }
    refill(b)
    const cost = Math.max(entries, limits.messageCost)
    if (b.waiting.length === 0 && affordable(b, cost)) {
      b.tokens -= cost
      handle(peerId, message)
      return
    }
    if (b.waitingCost + cost > limits.backlog || waitingTotal + cost > limits.backlogTotal) {
      stats.dropped += entries
      if (b.dropped === 0) bitswapLog('%p sends wants faster than %d a second: dropping what its backlog cannot hold', peerId, limits.wantsPerSecond)
      b.dropped += entries
      return
    }
    // only the wantlist waits: blocks are not kept for it
    b.waiting.push({ message: { wantlist: message.wantlist, blocks: [], blockPresences: [], pendingBytes: 0 }, cost })
    b.waitingCost += cost
    waitingTotal += cost
    stats.deferred += entries
    schedule(peerId, b)
  }
  wantLists.receivedBlock = async (cid: any, options?: unknown): Promise<void> => {
    const key = uint8ArrayToString(cid.multihash.bytes, 'base64')
    for (const ledger of wantLists.ledgerMap.values()) {
      const want = ledger.wants?.get(key)
      if (want != null) recheck.add(want)
    }
    await receivedBlock.call(wantLists, cid, options)
  }
  wantLists.peerDisconnected = (peerId: any): void => {
    forget(peerId.toString())
    peerDisconnected.call(wantLists, peerId)
  }
  const forget = (key: string): void => {
    const b = budgets.get(key)
    if (b == null) return
    clearTimeout(b.timer)
    waitingTotal -= b.waitingCost
    if (b.dropped > 0) bitswapLog('%s gone: %d of its wants were dropped', key, b.dropped)
    budgets.delete(key)
  }

  return {
    stats,
    stop () {
      if (stopped) return
      stopped = true
      for (const key of [...budgets.keys()]) forget(key)
      for (const m of methods) {
        if (own.has(m)) wantLists[m] = own.get(m)
        else delete wantLists[m]
      }
    }
  }
}
