import type { IceServer } from './types.ts'
/** Defaults for every option, named so the README and the code agree. */

/** Node: where persistent data lives when `directory` is not given. */
export const DEFAULT_DIRECTORY = './.npp'
/** Node: listen on loopback only unless told otherwise (nothing is exposed by default). */
export const DEFAULT_LISTEN: readonly string[] = ['/ip4/127.0.0.1/tcp/0']
/** With a relay: a reservation on it (reachable as `<relay>/p2p-circuit`) and WebRTC through it; the browser default. */
export const RELAY_LISTEN: readonly string[] = ['/p2p-circuit', '/webrtc']
/** WebRTC ICE servers: none, so no public STUN is contacted; only host candidates are gathered. */
export const DEFAULT_ICE_SERVERS: readonly IceServer[] = []
/** How often known companions that are not connected are redialed. */
export const DEFAULT_RECONNECT_INTERVAL = 10_000
/** Longest back-off between redials of a companion that keeps failing. */
export const DEFAULT_MAX_RECONNECT_BACKOFF = 5 * 60_000
/** Time limit for each source of `queryCatalog`. */
export const DEFAULT_QUERY_TIMEOUT = 5_000
/** Time limit to open, replicate and validate a peer's user database when it announces itself. */
export const DEFAULT_DISCOVERY_TIMEOUT = 10_000
/** Peers expected behind one IP address (libp2p's inbound rate per host, gossipsub's IP colocation threshold). */
export const DEFAULT_PEERS_PER_ADDRESS = 64
/**
 * Companions taken from keepers' introductions at most. At 500 kept users a
 * new peer took 256 catalogs of 1,000 pieces (707 MB RSS, 3,149 open files
 * after 60 s); a quarter of the companion cap leaves room for the peers met
 * directly.
 */
export const DEFAULT_MAX_INTRODUCED = 64
/** Time limit for `connectToPeer` and each redial. */
export const DEFAULT_DIAL_TIMEOUT = 10_000
/** Time limit for `sendMessage` to see the remote peer subscribed to its topic. */
export const DEFAULT_SEND_TIMEOUT = 10_000
/** Instrument used by `addNewPiece` when none is given (as in the tutorial). */
export const DEFAULT_INSTRUMENT = 'Piano'

/** Messages larger than this are dropped unread. */
export const MAX_MESSAGE_BYTES = 16 * 1024
/** Longest accepted piece hash. */
export const MAX_HASH_LENGTH = 256
/** Longest accepted instrument name. */
export const MAX_INSTRUMENT_LENGTH = 128
/** Largest accepted piece document, JSON-encoded. */
export const MAX_PIECE_BYTES = 8 * 1024
/** Largest accepted profile value, JSON-encoded. */
export const MAX_PROFILE_VALUE_BYTES = 4 * 1024
/** Longest accepted profile key. */
export const MAX_PROFILE_KEY_LENGTH = 64
/** Longest accepted username. */
export const MAX_USERNAME_LENGTH = 128
/** Largest accepted companion multiaddr list (entries kept from a remote profile). */
export const MAX_COMPANION_MULTIADDRS = 16

/** Per-peer message budget: burst size and refill rate (messages per second). */
export const MESSAGE_BURST = 20
export const MESSAGE_RATE_PER_SECOND = 5
/** How many peers' rate-limit buckets are remembered (least recently seen evicted). */
export const MAX_TRACKED_PEERS = 1024
/** Discoveries validated at once; more wait in a bounded queue. */
export const DISCOVERY_CONCURRENCY = 4
/** Discoveries waiting at most; beyond this new announcements are dropped. */
export const MAX_PENDING_DISCOVERIES = 64
/**
 * Discoveries under way at most for the peers behind one remote address (an
 * IP address or host name; a peer reached over WebRTC or a relay is its own
 * address), so that one host opening many connections holds a quarter of
 * `MAX_PENDING_DISCOVERIES`, not all of it; its further announcements wait
 * (deferred) for its own slots.
 */
export const MAX_DISCOVERIES_PER_ADDRESS = 16
/** After a failed discovery, the same user-db address is not tried again for this long. */
export const DISCOVERY_FAILURE_TTL = 60_000
/** Publishes tried when the remote peer is not (yet) a recipient (back-off 10, 20, 40, then 50 ms: ~2.9 s in all). */
export const ANNOUNCE_ATTEMPTS = 60

/** Database names (as in the tutorial). */
export const PIECES_DB = 'pieces'
export const USER_DB = 'user'
export const COMPANIONS_DB = 'companions'
export const COUNTERS_DB = 'counters'

/** Piece fields the catalog indexes for exact-match lookups (`getByInstrument`, `queryCatalog({ instrument })`). */
export const CATALOG_INDEX_FIELDS: readonly string[] = ['instrument']

/** Companions kept at most; announcements from further new peers are refused. */
export const MAX_COMPANIONS = 256

/**
 * Largest identify message read from a peer. OrbitDB registers one protocol
 * per open database (`/orbitdb/heads/<address>`, about 70 bytes), and
 * identify lists them all: libp2p's 8 KiB read limit is passed at about 110
 * databases (a peer with ~100 companions, a keeper of ~35 users), after which
 * identify fails without a log, gossipsub never learns the peer speaks it,
 * and the two never become companions. 512 KiB holds about 7,000.
 */
export const MAX_IDENTIFY_MESSAGE_BYTES = 512 * 1024
