import type { HeliaWithLibp2p } from '@helia/libp2p'
import type { ProgressEvent, ProgressOptions } from 'progress-events'
import type { Libp2p } from '@libp2p/interface'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Identify } from '@libp2p/identify'
import type { OrbitDB } from './orbitdb/types.ts'
import type { KeeperRefusedError } from './errors.ts'
import type { KeeperServiceInit, KeptUser } from './keeper/keeper.ts'

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }

/** Free-form fields stored beside a piece's hash and instrument (title, composer, ...). */
export type PieceExtra = Record<string, JsonValue>

/** A catalogued piece: the tutorial's `{ hash, instrument }` plus any extra fields. */
export interface Piece extends PieceExtra {
  hash: string
  instrument: string
}

/** A piece returned by `queryCatalog`, with the peer id of the catalog it came from. */
export type OwnedPiece = Piece & { owner: string }

/** A companion as kept in the `companions` register. */
export interface CompanionRecord {
  /** Peer id of the companion. */
  nodeId: string
  /** Address of the companion's `pieces` database. */
  pieces: string
  /** The companion's username when it was last seen. */
  username: string
  /** Where the companion was last reachable. */
  multiaddrs: string[]
  /** When the companion was last connected (ms since the epoch). */
  lastSeen: number
  /** The keeper that introduced it (peer id), for a companion met through a keeper rather than directly. */
  introducedBy?: string
  /** The OrbitDB identity that writes its catalog (as verified), recorded so one identity stays one companion while its replica is closed. */
  identity?: string
}

/** A companion as returned by `getCompanions()`. */
export interface Companion extends CompanionRecord {
  /** Address of the companion's `user` database (the register's key). */
  address: string
  /** Whether a connection to the companion is open now. */
  online: boolean
}

/** The libp2p services this library needs: gossipsub named `pubsub` (as OrbitDB expects) and identify. */
// a type, not an interface: libp2p's ServiceMap needs an index signature
export type NppServices = {
  pubsub: GossipSub
  identify: Identify
}

/** A libp2p node with the services this library needs (others may be there too). */
export type NppLibp2p = Libp2p<NppServices>

/** A Helia node with such a libp2p, as OrbitDB needs it. */
export type NppHelia = HeliaWithLibp2p<NppServices>

/**
 * A WebRTC ICE server, as in the DOM's `RTCIceServer` (declared here so a
 * Node-only project needs no DOM types).
 */
export interface IceServer {
  /** `stun:`, `stuns:`, `turn:` or `turns:` URL(s). */
  urls: string | string[]
  username?: string
  credential?: string
}

export interface NewPiecePleaseInit {
  /**
   * Node: the folder holding all persistent data (blocks, datastore with the
   * peer id, OrbitDB keystore, heads and indexes). Ignored when `storage` is
   * `'memory'`.
   *
   * @default './.npp'
   */
  directory?: string
  /**
   * `'persistent'` keeps everything (including the peer id) across restarts;
   * `'memory'` keeps nothing.
   *
   * @default 'persistent'
   */
  storage?: 'persistent' | 'memory'
  /**
   * Multiaddrs to listen on. In Node, loopback only by default: pass
   * `['/ip4/0.0.0.0/tcp/4002']` to be reachable from other machines. With
   * `relay` set, `/p2p-circuit` and `/webrtc` are added.
   *
   * @default `['/ip4/127.0.0.1/tcp/0']` in Node, `['/p2p-circuit', '/webrtc']` in a browser
   */
  listen?: string[]
  /**
   * Multiaddrs to announce instead of the listen addresses: where others
   * reach this peer when that is not where it listens (a keeper behind NAT
   * with a forwarded port, a public DNS name).
   *
   * @default [] (the listen addresses)
   */
  announce?: string[]
  /**
   * Multiaddrs (each ending in `/p2p/<peer id>`) dialed at start. No public
   * bootstrap list is ever used by default.
   *
   * @default []
   */
  bootstrap?: string[]
  /**
   * Milliseconds between redials of companions that are not connected.
   *
   * @default 10000
   */
  reconnectInterval?: number
  /**
   * Milliseconds each source of `queryCatalog` may take before it is reported
   * as timed out.
   *
   * @default 5000
   */
  queryTimeout?: number
  /**
   * Milliseconds to open, replicate and validate a peer's user database when
   * it announces itself.
   *
   * @default 10000
   */
  discoveryTimeout?: number
  /**
   * Milliseconds for `connectToPeer` and for each redial of a companion.
   *
   * @default 10000
   */
  dialTimeout?: number
  /**
   * Username written to a new profile. Later starts keep the stored one.
   *
   * @default `'musician-'` followed by the last 6 characters of the peer id
   */
  username?: string
  /**
   * Run `@libp2p/pubsub-peer-discovery` on its default topic, so peers that
   * share a hub (a relay, or any peer subscribed to the topic) find each other.
   *
   * @default `false`, or `true` when `relay` is set
   */
  pubsubDiscovery?: boolean
  /**
   * The relay to meet other peers through: its multiaddr, or the HTTP URL of
   * its `/config` endpoint (fetched when the relay is first dialed, bounded by
   * `dialTimeout`). Dialed at start and whenever the link drops, with
   * back-off and jitter, for as long as the peer runs (see `hubs()` and the
   * `hub:connected`/`hub:disconnected` events); a peer whose relay is down
   * still starts with its local data, unless `requireRelay` is set. Turns
   * `pubsubDiscovery` on unless it is set to `false`. In Node it also adds
   * circuit relay v2 and WebRTC (`node-datachannel`) and listens on
   * `/p2p-circuit` and `/webrtc`, so browsers that meet this peer at the
   * relay link to it directly.
   *
   * @default none
   */
  relay?: string
  /**
   * Start only when the relay answers: `start()` rejects with
   * `RelayUnavailableError` when the relay (and its `/config`, for a URL)
   * cannot be reached within `dialTimeout`. By default a peer starts with
   * its local data whatever the network does, and keeps trying the relay.
   *
   * @default false
   */
  requireRelay?: boolean
  /**
   * How many peers to expect behind one IP address: a class behind a
   * school's NAT, a conservatory's network, every peer on one machine.
   * libp2p refuses a sixth inbound connection per second from one host, and
   * gossipsub penalises more than 10 peers that share an address (from 15
   * on, it ignores what they send). This sets, per address, the inbound
   * connections per second (libp2p's `inboundConnectionThreshold`) and the
   * inbound connections still upgrading at once, and gossipsub's
   * `IPColocationFactorThreshold`, to it; one address may keep twice as many
   * open inbound connections. Beyond it, peers of one address are still
   * penalised and refused: one host posing as many peers gains nothing, and
   * a stalled connection makes room for a newcomer after 2 s (5 s in a
   * browser).
   *
   * @default 64
   */
  peersPerAddress?: number

  /**
   * ICE servers for WebRTC links (`{ urls: 'stun:…' | 'turn:…', username?, credential? }`).
   * None by default: no public STUN server is contacted and only host
   * candidates are gathered, which is enough on one network; add a STUN or
   * TURN server of your own to link across NATs.
   *
   * @default []
   */
  iceServers?: IceServer[]
  /**
   * Keepers: always-on peers (`npx new-piece-please keeper`) that keep this
   * peer's databases while it is offline and introduce the catalogs they
   * keep. Multiaddrs ending in `/p2p/<peer id>`; each is dialed and redialed
   * like a bootstrap peer. At every direct connection this peer asks the
   * keeper to keep its databases (`keeper:registered`, or `keeper:refused`
   * with a `KeeperRefusedError`) and records the catalogs it introduces as
   * companions once each profile's proof shows it is its own peer's.
   *
   * @default []
   */
  keepers?: string[]
  /**
   * Whether keepers may introduce this peer's catalog to the peers they
   * serve. `false` keeps it on the keeper without it being listed.
   *
   * @default true
   */
  listed?: boolean
  /**
   * Companions taken from keepers' introductions at most, in all (those
   * recorded before a restart count). When keepers list more catalogs, the
   * most recently updated are taken and the rest skipped (`skipped` in
   * `keepers()`). Peers met directly are not limited by it. `0` takes none.
   *
   * @default 64
   */
  maxIntroduced?: number
  /**
   * Run as a keeper: serve the keeper protocol and keep the databases of the
   * peers allowed (see `KeeperServiceInit`). Used by `npx new-piece-please
   * keeper`; a keeper does not announce itself to the peers it meets.
   *
   * @default none (a regular peer)
   */
  keeper?: Omit<KeeperServiceInit, 'timeout' | 'usageStorage'>
  /**
   * Bring your own Helia node (with libp2p and a gossipsub service named
   * `pubsub`). It is started if needed but not stopped by `stop()`.
   *
   * @default none (built for you)
   */
  helia?: NppHelia
  /**
   * Bring your own OrbitDB instance (its `ipfs` is used as the Helia node).
   * It is not stopped by `stop()`.
   *
   * @default none (built for you)
   */
  orbitdb?: OrbitDB
}

/** How one source of a `queryCatalog` call went. */
export interface QuerySource {
  /** Peer id of the catalog's owner (own peer id for the local catalog). */
  owner: string
  /** Address of the `pieces` database queried. */
  address: string
  /**
   * `ok`: answered; `unsynced`: answered from a replica that has never
   * synced with its owner in this run (its results may be partial or empty);
   * `timeout`: not within the time limit; `error`: failed (a replica that
   * could not even be opened included); `aborted`: the caller's signal fired.
   */
  status: 'ok' | 'unsynced' | 'timeout' | 'error' | 'aborted'
  /** Matches this source contributed. */
  count: number
  /** Milliseconds the source took (or was given). */
  ms: number
  /** Whether the owner was connected when the query ran. */
  online: boolean
  /** Why the source failed, when it did. */
  error?: string
  /** A companion's replica: how far it has followed its owner's catalog (absent for the own catalog). */
  sync?: ReplicaSync
}

/**
 * How far a replica has followed its owner's catalog:
 * - `never`: not synced with the owner since it was opened (it may hold what
 *   an earlier run replicated);
 * - `syncing`: the owner has entries it lacks, being fetched (`progress`:
 *   log clock times, `have` of `want`);
 * - `synced`: it had every head of the owner's catalog at `syncedAt`;
 * - `unreachable`: the owner is not linked directly since `unreachableSince`
 *   (`syncedAt` tells how fresh the replica is, when known).
 */
export interface ReplicaSync {
  state: 'never' | 'syncing' | 'synced' | 'unreachable'
  /** When the replica last had every head of its owner (ms since the epoch). */
  syncedAt?: number
  unreachableSince?: number
  progress?: { have: number, want: number }
  /** Why the last check against the owner failed. */
  error?: string
}

export interface QueryResult {
  /** Matches from every source that answered, each with its `owner`, without duplicates. */
  results: OwnedPiece[]
  /** One report per source. */
  sources: QuerySource[]
  /** True when every source answered `ok`. */
  complete: boolean
}

/** Filter for `queryCatalog`: a predicate over pieces, or fields that must all be equal. */
export type PieceFilter = ((piece: Piece) => boolean) | Partial<Record<string, JsonValue>>

export interface AbortOptions {
  signal?: AbortSignal
}

export interface QueryOptions extends AbortOptions, ProgressOptions<QueryProgressEvents> {
  /** Milliseconds each source may take. @default the instance's `queryTimeout` */
  timeout?: number
}

/**
 * Progress of a `queryCatalog` call, for showing results as sources answer:
 * `npp:query:start` once with the sources about to be asked, then
 * `npp:query:source` as each one settles (in the order they do), with its
 * report and its matches (owned, before de-duplication across sources).
 * A throwing listener is logged and ignored.
 */
export type QueryProgressEvents =
  ProgressEvent<'npp:query:start', { sources: Array<Pick<QuerySource, 'owner' | 'address' | 'online'>> }> |
  ProgressEvent<'npp:query:source', { source: QuerySource, results: OwnedPiece[], answered: number, total: number }>

export interface MessageDetail {
  /** Peer id that signed the message. */
  from: string
  /** Topic it arrived on (this node's peer id). */
  topic: string
  /** The decoded JSON object. */
  data: Record<string, JsonValue>
}

export interface DroppedMessageDetail {
  /** The directly connected peer that delivered the message (for a message it signed itself, its signer). */
  from: string
  reason: DropReason
}

/**
 * Why a message on this node's topic was dropped: `forwarded` (signed by a
 * peer other than the neighbour that delivered it: honest peers publish to
 * this topic only over a direct connection) and `duplicate-identity` (a valid
 * profile whose OrbitDB identity is already a companion through another,
 * connected, peer id) as well as the checks of size, shape, rate and room.
 */
export type DropReason = 'oversized' | 'not-json' | 'wrong-shape' | 'rate-limited' | 'queue-full' | 'invalid-user-db' | 'recently-failed' | 'forwarded' | 'duplicate-identity'

/**
 * Why a log entry from the network was refused before OrbitDB applied it (see
 * `stats.entriesRejected`): `not-an-entry` (not a decodable OrbitDB entry, or
 * too large), `wrong-log` (an entry of another database), `unknown-identity`
 * (the identity it names could not be fetched and verified within the time
 * limit), `not-a-writer` (an identity the database's access controller does
 * not allow), `bad-signature` (not signed by the key of the identity it
 * names), `busy` (too many entries of this database, or identities, being
 * checked at once: dropped unchecked).
 */
export type EntryRejectReason = 'not-an-entry' | 'wrong-log' | 'unknown-identity' | 'not-a-writer' | 'bad-signature' | 'busy'

export interface EntryRejectedDetail {
  /** The database (own or a replica) it was sent for. */
  address: string
  /** The peer that delivered it (gossipsub's propagation source, or the other end of a heads exchange), when known. */
  from?: string
  reason: EntryRejectReason
  /**
   * How it came: on the database's gossipsub topic, in a heads exchange, or
   * to the log itself (another way: behind an accepted head, or read from
   * the owner by convergence).
   */
  via: 'pubsub' | 'heads' | 'log'
}

export interface NewPiecePleaseEvents {
  /** The instance is started and its databases are open. */
  ready: CustomEvent<{ peerId: string }>
  /** A libp2p connection to a peer opened. */
  'peer:connect': CustomEvent<{ peerId: string }>
  /** A libp2p connection to a peer closed (no connections left to it). */
  'peer:disconnect': CustomEvent<{ peerId: string }>
  /** A valid JSON object arrived on this node's topic. */
  message: CustomEvent<MessageDetail>
  /** A peer's user database was validated and the peer recorded as a companion. */
  'db:discovered': CustomEvent<Companion>
  /** A companion connected. */
  'companion:online': CustomEvent<Companion>
  /** A companion disconnected, or could not be reached by a redial. */
  'companion:offline': CustomEvent<Companion>
  /** A message or announcement from the network was dropped. */
  'message:dropped': CustomEvent<DroppedMessageDetail>
  /** A log entry from the network was refused before OrbitDB applied it (see `EntryRejectReason`). */
  'entry:rejected': CustomEvent<EntryRejectedDetail>
  /** A catalog (own or a companion's replica) changed. */
  'catalog:update': CustomEvent<{ owner: string, address: string }>
  /** A replica's sync state changed (see `ReplicaSync`): for a progress bar, or to say how fresh a companion's catalog is. */
  'catalog:sync': CustomEvent<ReplicaSync & { owner: string, address: string }>
  /** A keeper agreed to keep this peer's databases (at each direct connection to it). */
  'keeper:registered': CustomEvent<KeeperStatus>
  /** A keeper refused to keep this peer's databases; `error` is a `KeeperRefusedError` whose `reason` says why. */
  'keeper:refused': CustomEvent<KeeperStatus & { error: KeeperRefusedError }>
  /** A keeper's introductions were all checked (each taken as a companion or not; `introduced` counts those taken since start). */
  'keeper:introduced': CustomEvent<KeeperStatus>
  /** On a keeper: a kept user was dropped (over a quota as it grew, or denied); what was kept of it is closed and forgotten. */
  'keeper:dropped': CustomEvent<{ peerId: string, reason: 'over-quota' | 'not-allowed', message: string }>
  /** On a keeper: what it keeps of a user changed (pieces, bytes), measured when the user registered or its databases changed. */
  'keeper:kept': CustomEvent<KeptUser>
  /** On a keeper: a kept user's databases were opened (a peer wants them, the user connected or registered) or closed (idle for `idleTimeout`). */
  'keeper:activity': CustomEvent<{ peerId: string, open: boolean }>
  /** A link to a hub (the relay, a bootstrap peer) came up. */
  'hub:connected': CustomEvent<HubStatus>
  /** A link to a hub went down, or its first dial (after start or after a drop) failed (`failedDials`, `lastError`); it is dialed again with back-off and jitter. */
  'hub:disconnected': CustomEvent<HubStatus>
}

/** A keeper this peer is configured with (`keepers`), and what it answered. */
export interface KeeperStatus {
  /** As configured. */
  configured: string
  peerId: string
  /** It keeps our databases (it said so at the last connection). */
  registered: boolean
  /** Why it refused at the last connection, if it did (see `KeeperRefusedError`). */
  refused?: string
  /** Companions recorded through its introductions since start. */
  introduced: number
  /** Catalogs of its last list not taken: over `maxIntroduced` (the most recently updated are taken first). */
  skipped: number
  /** Why the last request to it failed (a timeout, a dropped link). */
  lastError?: string
}

/** A hub (the relay or a bootstrap peer) and this peer's link to it. */
export interface HubStatus {
  kind: 'relay' | 'bootstrap'
  /** As configured: a multiaddr, or the relay's `/config` URL. */
  configured: string
  /** Its peer id, once it has been reached. */
  peerId?: string
  connected: boolean
  /** When `connected` last changed (or the instance started), in ms since the epoch. */
  since: number
  /** Dials that failed since the link was last up. */
  failedDials: number
  /** Why the last dial failed. */
  lastError?: string
}

/** Counters of what the node received and dropped (for diagnostics and tests). */
export interface NppStats {
  messagesReceived: number
  messagesDropped: Record<DropReason, number>
  discoveriesStarted: number
  discoveriesSucceeded: number
  discoveriesFailed: number
  /**
   * Verifications of an announced user db tried again after a failure that
   * may pass (a timeout reading or opening it), while its peer stayed
   * connected.
   */
  discoveriesRetried: number
  /**
   * Announcements received while the verification queue was full, kept (the
   * latest per peer) and verified once there was room; not counted as
   * dropped. One pushed out of the full deferred set counts as
   * `messagesDropped['queue-full']`.
   */
  announcementsDeferred: number
  announcementsSent: number
  /**
   * Announcements of our user db tried again after a failure that may pass
   * (the peer not a recipient in time, a publish error, a timeout), while a
   * direct connection to the peer lasted.
   */
  announcementsRetried: number
  /**
   * Announcements sent again because the peer, though it received one, did
   * not take it in: it never opened our catalog (a receiver drops an
   * announcement when its queue is full or our rate is spent, and cannot
   * tell us). At most 5 per connection.
   */
  announcementsUnacknowledged: number
  redials: number
  /**
   * Log entries from the network refused before OrbitDB applied them, by
   * reason: not delivered to the database, not forwarded to other peers.
   */
  entriesRejected: Record<EntryRejectReason, number>
}
