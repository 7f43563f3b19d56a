/**
 * Log entries from the network are checked before they can block anything
 * (issue 10, finding 2). Anyone who knows a database's address can publish
 * on its gossipsub topic or open OrbitDB's heads protocol for it, and OrbitDB
 * applies whatever arrives in the database's one queue, the queue the
 * owner's own writes wait in: its access controller looks the entry's
 * identity up over bitswap with a 30 s time limit, and the queue has no
 * bound. Entries signed by a throwaway identity (published nowhere, so the
 * lookup can only time out) made `addNewPiece` take up to 28 s, stopped every
 * write for 65 s through the heads protocol, took memory from 169 to 430 MB
 * and made `stop()` hang; gossipsub forwarded them to companions, whose
 * replicas stalled the same way.
 *
 * For every database opened through `Stack.open`, an entry from the network
 * is checked before OrbitDB sees it, outside the database's queue:
 *
 * - on the database's gossipsub topic, by a topic validator: an entry that
 *   fails is neither delivered nor forwarded (`Reject` for an entry shown to
 *   be bad, `Ignore` when we could not tell: an identity not fetched yet, no
 *   room to check); at most `MAX_PENDING_ENTRIES` are checked at once per
 *   database, more are dropped unchecked (`busy`), and an entry accepted
 *   lately or already in the log is not delivered again;
 * - in a heads exchange (OrbitDB's `/orbitdb/heads/<address>` protocol, both
 *   the streams it accepts and the ones it dials): the stream is read one
 *   head at a time, paused while a head is checked and applied (a peer has
 *   at most its yamux window in flight, see `HeadsReader`); heads that fail
 *   are dropped before OrbitDB reads them, and an exchange that sends
 *   `MAX_REFUSED_HEADS` of them (one), bytes that are not a head, more than
 *   `MAX_EXCHANGE_HEADS` heads, or keeps OrbitDB waiting for its next head
 *   over `HEADS_IDLE_TIMEOUT`, is cut (OrbitDB reads the heads of the
 *   exchanges it dials in the queue that also applies the topic's updates,
 *   and waits for them as long as the stream lives); `MAX_HEADS_STREAMS`
 *   exchanges of a database at once per connection;
 * - in the log itself (the access controller's `canAppend`, for entries that
 *   reach the queue some other way, such as the ones behind a head): the same
 *   check, answered from the cache for anything checked before.
 *
 * The check: a decodable entry of this database; an identity fetched
 * (waited for `IDENTITY_TIMEOUT`, fetched for up to `IDENTITY_FETCH_TIMEOUT`;
 * `MAX_IDENTITY_LOOKUPS` at once, `MAX_LOOKUPS_PER_PEER` for the entries of
 * one peer), verified, and cached (`IDENTITY_CACHE_SIZE` verified
 * identities; one that could not be fetched or verified is refused from the
 * cache for `REFUSED_IDENTITY_TTL`); a key
 * that is that identity's (OrbitDB 4.0.0 checks the signature against the
 * key the entry carries and, apart, that the identity it names may write,
 * never that the two belong together: an entry naming the owner's identity
 * and signed with any other key was accepted into the owner's own catalog);
 * the access controller's write list (fixed for an `ipfs` controller, `'*'`
 * allows all; other controllers are asked); a valid signature. Refusals are
 * counted by reason, logged (`npp:entry-guard`) and announced as
 * `entry:rejected`. Our own identity is trusted from the start, so our own
 * writes never wait on a lookup, and `stop()` cancels every lookup.
 *
 * Checked against `@orbitdb/core` 4.0.0 (`src/sync.js`, `src/database.js`,
 * `src/oplog/log.js`, `src/oplog/entry.js`, `src/access-controllers/ipfs.js`,
 * `src/identities/identities.js`), libp2p 3.3, `@libp2p/utils` 7.4,
 * `@chainsafe/libp2p-yamux` 8.0 and `@libp2p/gossipsub` 17.
 */
import { Entry, IPFSBlockStorage } from '@orbitdb/core'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import * as Block from 'multiformats/block'
import * as dagCbor from '@ipld/dag-cbor'
import { sha256 } from 'multiformats/hashes/sha2'
import { base58btc } from 'multiformats/bases/base58'
import { TypedEventEmitter } from 'main-event'
import { raceSignal } from 'race-signal'
import { concat } from 'uint8arrays/concat'
import { logger } from '../utils/logger.ts'
import { deadline } from '../utils/abort.ts'
import { deliverHeads } from './patches.ts'
import type { PeerId, Stream, StreamHandler } from '@libp2p/interface'
import type { OrbitDBDatabase, OrbitDBEntry, OrbitDBIpfs, OrbitDBStorage } from './types.ts'
import type { EntryRejectReason, EntryRejectedDetail, NppLibp2p } from '../types.ts'

/**
 * Longest wait for the identity an entry names before the entry is dropped
 * (OrbitDB's own: 30 s, in the database's queue). Its fetch goes on, up to
 * `IDENTITY_FETCH_TIMEOUT`, so the next entry that names it finds it: a slow
 * honest peer (a page still setting up) costs one round of entries.
 */
export const IDENTITY_TIMEOUT = 2_000
/** Time limit to fetch an identity. */
export const IDENTITY_FETCH_TIMEOUT = 20_000
/** Identities fetched over the network at once; entries that need one more are dropped unchecked (`busy`). */
export const MAX_IDENTITY_LOOKUPS = 32
/** Identity fetches started by entries one peer delivered; its entries that need one more are dropped unchecked (`busy`). */
export const MAX_LOOKUPS_PER_PEER = 4
/** Entries of one database checked at once from its gossipsub topic; more are dropped unchecked (`busy`). */
export const MAX_PENDING_ENTRIES = 32
/**
 * Heads refused in one heads exchange before the exchange is cut. Every
 * database this library opens has one writer, so the heads of an exchange all name
 * one identity: once one is refused, the rest would be too (an identity
 * asked for lately is not waited for again), and reading on only keeps the
 * peer's stream, and what it sent, open. 12 exchanges at once of 100 KB
 * heads from three connections took the victim's RSS up by 66-74 MB when
 * cut at the 8th refused head, by 34-37 MB at the first.
 */
export const MAX_REFUSED_HEADS = 1
/** Heads in one heads exchange (a log has a few; a peer replaying a writer's entries is cut beyond). */
export const MAX_EXCHANGE_HEADS = 64
/**
 * Heads exchanges of one database at once over one connection, each way
 * (libp2p's default: 32 inbound, 64 outbound). An honest peer has one or two
 * open (OrbitDB's own when it sees us subscribe, and a replica's check).
 * Each holds up to its yamux window and a read buffer while a head is
 * checked: 32 exchanges of 100 KB heads at once on each of three connections
 * took the victim's RSS up by 84-101 MB, 4 by 45-78 MB (those refused still
 * cost their stream's first window, 256 KiB).
 */
export const MAX_HEADS_STREAMS = 4
/** Longest wait for the next head of a heads exchange (an honest peer sends its few heads at once, then closes). */
export const HEADS_IDLE_TIMEOUT = 10_000
/** Verified identities kept. */
export const IDENTITY_CACHE_SIZE = 1024
/** How long an identity that could not be fetched or verified is refused without asking again. */
export const REFUSED_IDENTITY_TTL = 30_000
/** Entries larger than this are refused unread (a block is at most 1 MiB on the wire). */
export const MAX_REMOTE_ENTRY_BYTES = 2 * 1024 * 1024

const HEADS_PROTOCOL = '/orbitdb/heads/'
/** Entries remembered per database as accepted from its topic. */
const RECENT_ENTRIES = 256
const ALL_REASONS: EntryRejectReason[] = ['not-an-entry', 'wrong-log', 'unknown-identity', 'not-a-writer', 'bad-signature', 'busy']

/** An OrbitDB identity as `Identities.verifyIdentity` takes it. */
export interface GuardIdentity {
  id: string
  publicKey: string
  signatures: { id: string, publicKey: string }
  type: string
  hash: string
  bytes?: Uint8Array
}

/** What the guard needs of OrbitDB's `Identities`. */
export interface GuardIdentities {
  verifyIdentity(identity: GuardIdentity): Promise<boolean>
  verify(signature: string, publicKey: string, data: Uint8Array): Promise<boolean>
}

export interface EntryGuardComponents {
  /** Identity blocks are fetched through it (bitswap). */
  ipfs: OrbitDBIpfs
  /** `orbitdb.identities`: verifies identities and signatures. */
  identities: GuardIdentities
  /** Whose heads protocol streams and gossipsub topic validators are guarded. */
  libp2p: NppLibp2p
  /** Trusted from the start: our own identity (own writes never wait on a lookup). */
  identity?: GuardIdentity
  /** Where identity blocks come from; default an `IPFSBlockStorage` on `ipfs` with `fetchTimeout`. For tests. */
  storage?: Pick<OrbitDBStorage, 'get' | 'close'>
}

export interface EntryGuardInit {
  /** @default IDENTITY_TIMEOUT */
  identityTimeout?: number
  /** @default IDENTITY_FETCH_TIMEOUT */
  fetchTimeout?: number
  /** @default MAX_IDENTITY_LOOKUPS */
  maxLookups?: number
  /** @default MAX_LOOKUPS_PER_PEER */
  maxLookupsPerPeer?: number
  /** @default MAX_PENDING_ENTRIES */
  maxPending?: number
  /** @default MAX_REFUSED_HEADS */
  maxRefusedHeads?: number
  /** @default MAX_EXCHANGE_HEADS */
  maxHeads?: number
  /** Heads exchanges of one database at once per connection, each way, unless the handler's registration says otherwise. @default MAX_HEADS_STREAMS */
  maxHeadsStreams?: number
  /** @default HEADS_IDLE_TIMEOUT */
  headsIdleTimeout?: number
  /** @default REFUSED_IDENTITY_TTL */
  refusedTtl?: number
}

export interface EntryGuardEvents {
  'entry:rejected': CustomEvent<EntryRejectedDetail>
}

type Verdict = { ok: true, hash: string, known?: boolean } | { ok: false, reason: EntryRejectReason }

interface Guarded {
  address: string
  /** An `ipfs` access controller's fixed write list; otherwise the controller itself is asked. */
  write?: string[]
  /** The access controller's own `canAppend`. */
  canAppend: (entry: OrbitDBEntry) => Promise<boolean>
  /** Entries arrive encrypted for replication: they cannot be read before OrbitDB decrypts them. */
  sealed: boolean
  /** Aborted when the database closes. */
  signal: AbortSignal
  /** Entries from the topic being checked now. */
  pending: number
  /** Whether the log has an entry. */
  has: (hash: string) => Promise<boolean>
  /** Entries from the topic accepted lately: the same entry again (a replay) is not checked or delivered twice. */
  accepted: Bounded<string, true>
}

interface Refusal { at: number, timedOut: boolean }

/** A `Map` that forgets its oldest entries beyond `size`. */
class Bounded<K, V> extends Map<K, V> {
  private readonly limit: number
  constructor (limit: number) {
    super()
    this.limit = limit
  }

  override set (key: K, value: V): this {
    this.delete(key)
    super.set(key, value)
    while (this.size > this.limit) this.delete(this.keys().next().value as K)
    return this
  }
}

export class EntryGuard extends TypedEventEmitter<EntryGuardEvents> {
  private readonly components: EntryGuardComponents
  private readonly init: Required<EntryGuardInit>
  private readonly log = logger('entry-guard')
  private readonly storage: Promise<Pick<OrbitDBStorage, 'get' | 'close'>>
  private readonly guarded = new Map<string, Guarded>()
  private readonly verified = new Bounded<string, GuardIdentity>(IDENTITY_CACHE_SIZE)
  private readonly refused = new Bounded<string, Refusal>(IDENTITY_CACHE_SIZE)
  private readonly lookups = new Map<string, { fetched: Promise<GuardIdentity | undefined>, since: number }>()
  /** Fetches in flight by the peer whose entry started them. */
  private readonly lookupsBy = new Map<string, number>()
  private readonly validators = new WeakMap<Guarded, (peer: PeerId, message: Message) => Promise<TopicValidatorResult>>()
  private readonly shutdown = new AbortController()
  private restore?: () => void
  /** Entries refused, by reason. */
  readonly stats: Record<EntryRejectReason, number> = Object.fromEntries(ALL_REASONS.map(r => [r, 0])) as Record<EntryRejectReason, number>

  constructor (components: EntryGuardComponents, init: EntryGuardInit = {}) {
    super()
    this.components = components
    this.init = {
      identityTimeout: init.identityTimeout ?? IDENTITY_TIMEOUT,
      fetchTimeout: init.fetchTimeout ?? IDENTITY_FETCH_TIMEOUT,
      maxLookups: init.maxLookups ?? MAX_IDENTITY_LOOKUPS,
      maxLookupsPerPeer: init.maxLookupsPerPeer ?? MAX_LOOKUPS_PER_PEER,
      maxPending: init.maxPending ?? MAX_PENDING_ENTRIES,
      maxRefusedHeads: init.maxRefusedHeads ?? MAX_REFUSED_HEADS,
      maxHeads: init.maxHeads ?? MAX_EXCHANGE_HEADS,
      maxHeadsStreams: init.maxHeadsStreams ?? MAX_HEADS_STREAMS,
      headsIdleTimeout: init.headsIdleTimeout ?? HEADS_IDLE_TIMEOUT,
      refusedTtl: init.refusedTtl ?? REFUSED_IDENTITY_TTL
    }
    this.storage = components.storage != null
      ? Promise.resolve(components.storage)
      // not pinned: a stranger's identity is not kept for it
      : IPFSBlockStorage({ ipfs: components.ipfs, pin: false, timeout: this.init.fetchTimeout })
  }

  /**
   * Filter OrbitDB's heads exchanges: wrap `libp2p.handle` and
   * `libp2p.dialProtocol` so that a stream of `/orbitdb/heads/<address>` for
   * a guarded database reaches OrbitDB's `Sync` with the heads that fail
   * taken out. OrbitDB registers its handler and dials through these two
   * methods (`src/sync.js` startSync, handlePeerSubscribed); both are looked
   * up on the libp2p node at each call. Other protocols pass untouched.
   */
  start (): void {
    if (this.restore != null) return
    const libp2p = this.components.libp2p
    const handle = libp2p.handle
    const dialProtocol = libp2p.dialProtocol
    const own = (name: string): boolean => Object.prototype.hasOwnProperty.call(libp2p, name)
    const ownHandle = own('handle')
    const ownDial = own('dialProtocol')
    const guardedHandle: typeof handle = async (protocol, handler, options) => {
      const address = typeof protocol === 'string' ? addressOf(protocol) : undefined
      if (address == null) return await handle.call(libp2p, protocol, handler, options)
      const filtered: StreamHandler = async (stream, connection) => {
        await handler(this.filterHeads(address, stream, connection.remotePeer), connection)
      }
      // few exchanges at once per connection: each holds up to a yamux window (and a read buffer) while its heads are checked
      const streams = this.init.maxHeadsStreams
      await handle.call(libp2p, protocol, filtered, { maxInboundStreams: streams, maxOutboundStreams: streams, ...options })
    }
    const guardedDial: typeof dialProtocol = async (peer, protocols, options) => {
      // OrbitDB dials a heads exchange inside the queue that also applies the
      // database's updates: the dial is bounded like the wait for a head
      const asked = typeof protocols === 'string' ? addressOf(protocols) : undefined
      const bounded = asked != null && this.guarded.has(asked)
        ? { ...options, signal: AbortSignal.any([AbortSignal.timeout(this.init.headsIdleTimeout), ...(options?.signal != null ? [options.signal] : [])]) }
        : options
      const stream = await dialProtocol.call(libp2p, peer, protocols, bounded)
      const address = addressOf(stream.protocol)
      return address == null ? stream : this.detachHeads(address, stream, remotePeerOf(stream, peer))
    }
    libp2p.handle = guardedHandle
    libp2p.dialProtocol = guardedDial
    this.restore = () => {
      // someone wrapped them again after us: theirs stay (ours pass everything once nothing is guarded)
      if (libp2p.handle === guardedHandle) {
        if (ownHandle) libp2p.handle = handle
        else delete (libp2p as Partial<NppLibp2p>).handle
      }
      if (libp2p.dialProtocol === guardedDial) {
        if (ownDial) libp2p.dialProtocol = dialProtocol
        else delete (libp2p as Partial<NppLibp2p>).dialProtocol
      }
    }
  }

  /**
   * Cancel every lookup and stop guarding (the streams and topics of what is
   * still open are no longer checked; its log refuses entries of identities
   * the guard has not verified before).
   */
  async stop (): Promise<void> {
    this.shutdown.abort(new DOMException('the entry guard stopped', 'AbortError'))
    this.restore?.()
    this.restore = undefined
    for (const address of [...this.guarded.keys()]) this.unguard(address)
    await (await this.storage).close()
  }

  /**
   * Guard `db`: a topic validator on its gossipsub topic, its heads exchanges
   * filtered, its access controller's `canAppend` replaced by the guard's
   * check. Call before its sync starts (open it with `sync: false`); `signal`
   * is aborted when it closes. Returns the function that stops guarding it.
   */
  guard (db: OrbitDBDatabase, signal: AbortSignal): () => void {
    if (this.shutdown.signal.aborted || this.guarded.has(db.address)) return () => {}
    const access = db.access
    const canAppend = access.canAppend.bind(access)
    const encryption = (db.log as unknown as { encryption?: { replication?: unknown } }).encryption
    const g: Guarded = {
      address: db.address,
      write: access.type === 'ipfs' && Array.isArray(access.write) ? [...access.write] : undefined,
      canAppend,
      sealed: encryption?.replication != null,
      signal: AbortSignal.any([signal, this.shutdown.signal]),
      pending: 0,
      has: async (hash) => await db.log.has(hash),
      accepted: new Bounded(RECENT_ENTRIES)
    }
    this.guarded.set(db.address, g)
    access.canAppend = async (entry) => await this.canAppend(g, entry)
    if (!g.sealed) this.components.libp2p.services.pubsub.topicValidators.set(db.address, this.validator(g))
    const stop = (): void => { this.unguard(db.address, g) }
    g.signal.addEventListener('abort', stop, { once: true })
    return stop
  }

  private unguard (address: string, g = this.guarded.get(address)): void {
    if (g == null || this.guarded.get(address) !== g) return
    this.guarded.delete(address)
    const validators = this.components.libp2p.services.pubsub.topicValidators
    if (validators.get(address) === this.validators.get(g)) validators.delete(address)
    this.validators.delete(g)
  }

  /** The gossipsub topic validator of `g`: nothing that fails is delivered to OrbitDB or forwarded. */
  private validator (g: Guarded): (peer: PeerId, message: Message) => Promise<TopicValidatorResult> {
    const validate = async (peer: PeerId, message: Message): Promise<TopicValidatorResult> => {
      if (g.signal.aborted) return TopicValidatorResult.Ignore
      if (g.pending >= this.init.maxPending) {
        this.refuse(g, 'busy', 'pubsub', peer)
        return TopicValidatorResult.Ignore
      }
      g.pending++
      try {
        const verdict = await this.checkBytes(g, message.data, peer, true)
        if (verdict.ok && verdict.known === true) {
          this.log.trace('%s: %s again from %p, not delivered', g.address, verdict.hash, peer)
          return TopicValidatorResult.Ignore
        }
        if (verdict.ok) {
          g.accepted.set(verdict.hash, true)
          return TopicValidatorResult.Accept
        }
        if (g.signal.aborted) return TopicValidatorResult.Ignore
        this.refuse(g, verdict.reason, 'pubsub', peer)
        // what we could not tell (an identity not fetched yet, no room to check) is dropped, not held against the sender
        return verdict.reason === 'busy' || verdict.reason === 'unknown-identity' ? TopicValidatorResult.Ignore : TopicValidatorResult.Reject
      } finally {
        g.pending--
      }
    }
    this.validators.set(g, validate)
    return validate
  }

  /** `stream` as OrbitDB's `Sync` reads it: its heads that fail are taken out; too many of them cut the exchange. */
  private filterHeads (address: string, stream: Stream, from: PeerId | undefined): Stream {
    const g = this.guarded.get(address)
    if (g == null || g.sealed) return stream
    const heads = (): AsyncGenerator<unknown> => this.checkedHeads(g, stream, from)
    return new Proxy(stream, {
      get: (target, prop) => {
        if (prop === Symbol.asyncIterator) return heads
        const value = Reflect.get(target, prop, target)
        return typeof value === 'function' ? value.bind(target) : value
      }
    })
  }

  /**
   * `stream` as OrbitDB's `Sync` reads it when it dialed the exchange: no
   * heads, so its queue (the one that also applies the database's updates)
   * goes on at once. The heads that pass are read in the background and
   * handed to OrbitDB as updates of the database, queued like a pubsub
   * message. A peer that subscribes to a topic and never answers held every
   * update 10 s per exchange, one exchange after the other (issue 10,
   * finding 7: three such peers, 30 s); now it holds only its own stream.
   */
  private detachHeads (address: string, stream: Stream, from: PeerId | undefined): Stream {
    const g = this.guarded.get(address)
    if (g == null || g.sealed) return stream
    void (async () => {
      try {
        for await (const head of this.checkedHeads(g, stream, from)) {
          deliverHeads(this.components.libp2p.services.pubsub, address, from, [head])
        }
      } catch (err: any) {
        this.log('%s: heads exchange with %s ended: %s', address, from?.toString() ?? 'a peer', err?.message ?? err)
      }
    })()
    const none = async function * (): AsyncGenerator<unknown> {}
    return new Proxy(stream, {
      get: (target, prop) => {
        if (prop === Symbol.asyncIterator) return none
        const value = Reflect.get(target, prop, target)
        return typeof value === 'function' ? value.bind(target) : value
      }
    })
  }

  /**
   * The heads of `stream` that pass, read one at a time (see `HeadsReader`):
   * the stream is paused while a head is checked and while OrbitDB applies
   * it. The exchange is cut (the stream aborted, OrbitDB's read failing)
   * after `maxRefusedHeads` refused heads, on bytes that are not a head,
   * beyond `maxHeads` heads, or when the peer keeps us waiting
   * `headsIdleTimeout` for its next head.
   */
  private async * checkedHeads (g: Guarded, stream: Stream, from: PeerId | undefined): AsyncGenerator<Uint8Array> {
    const who = from?.toString() ?? 'a peer'
    const reader = new HeadsReader(stream, MAX_REMOTE_ENTRY_BYTES)
    let refused = 0
    let heads = 0
    const cut = (why: string): Error => {
      this.log('%s: cutting a heads exchange with %s: %s', g.address, who, why)
      const err = new HeadsExchangeCutError(`heads exchange of ${g.address} with ${who} cut: ${why}`)
      stream.abort(err)
      return err
    }
    try {
      for (;;) {
        // the wait for the remote is bounded, not OrbitDB's work between two heads
        const bound = deadline(this.init.headsIdleTimeout, g.signal, `the next head of ${g.address}`)
        let head: Uint8Array | undefined
        try {
          head = await reader.next(bound.signal)
        } catch (err) {
          if (err instanceof HeadFramingError) {
            this.refuse(g, 'not-an-entry', 'heads', from)
            throw cut(err.message)
          }
          if (g.signal.aborted) {
            stream.abort(g.signal.reason)
            throw g.signal.reason
          }
          // OrbitDB's exchange fails (an `error` event, `npp:sync`) rather than ending as if complete
          if (bound.signal.aborted) throw cut(`no head within ${this.init.headsIdleTimeout} ms`)
          // the stream was reset or aborted: what was not read yet is dropped with it
          throw err
        } finally {
          bound.clear()
        }
        if (head == null) return
        if (++heads > this.init.maxHeads) throw cut(`over ${this.init.maxHeads} heads`)
        const verdict = await this.checkBytes(g, head, from)
        if (g.signal.aborted) {
          stream.abort(g.signal.reason)
          throw g.signal.reason
        }
        if (verdict.ok) {
          // a copy: a view would keep whatever arrived with it for as long as OrbitDB keeps the entry
          yield head.slice()
          continue
        }
        this.refuse(g, verdict.reason, 'heads', from)
        if (++refused >= this.init.maxRefusedHeads) throw cut(`${refused} ${refused === 1 ? 'head' : 'heads'} refused (${verdict.reason})`)
      }
    } finally {
      reader.close()
      // OrbitDB stopped reading before the end (its own error): nothing more is taken in
      if (stream.status === 'open' && !reader.done) stream.abort(new HeadsExchangeCutError(`heads exchange of ${g.address} with ${who} left unread`))
    }
  }

  /** The access controller's check, for entries that reach the log (ours included): identity, key, write permission. */
  private async canAppend (g: Guarded, entry: OrbitDBEntry): Promise<boolean> {
    // our own appends carry no hash yet: never counted as refused
    const remote = typeof entry.hash === 'string'
    const identity = await this.identity(entry.identity, g.signal, { retryTimedOut: true })
    let reason: EntryRejectReason | undefined
    if (identity === 'busy' || identity == null) {
      // the database is closing: OrbitDB's close waits for this queue, so end now (an abort is logged quietly)
      g.signal.throwIfAborted()
      reason = 'unknown-identity'
    } else if (entry.key !== identity.publicKey) {
      reason = 'bad-signature'
    } else if (!(await this.mayWrite(g, identity, entry))) {
      reason = 'not-a-writer'
    }
    if (reason == null) return true
    if (remote) this.refuse(g, reason, 'log')
    return false
  }

  /** Decode and check one entry as it came from the network. */
  private async checkBytes (g: Guarded, bytes: Uint8Array, from: PeerId | undefined, skipKnown = false): Promise<Verdict> {
    if (bytes.byteLength > MAX_REMOTE_ENTRY_BYTES) return { ok: false, reason: 'not-an-entry' }
    let entry: OrbitDBEntry
    try {
      entry = await Entry.decode(bytes)
    } catch {
      return { ok: false, reason: 'not-an-entry' }
    }
    if (!Entry.isEntry(entry) || typeof entry.identity !== 'string' || typeof entry.key !== 'string' || typeof entry.sig !== 'string') return { ok: false, reason: 'not-an-entry' }
    if (entry.id !== g.address) return { ok: false, reason: 'wrong-log' }
    if (skipKnown && (g.accepted.has(entry.hash) || await g.has(entry.hash).catch(() => false))) return { ok: true, hash: entry.hash, known: true }
    // entries from an unknown peer share one budget of fetches
    const identity = await this.identity(entry.identity, g.signal, { peer: from?.toString() ?? '', retryTimedOut: false })
    if (identity === 'busy') return { ok: false, reason: 'busy' }
    if (identity == null) return { ok: false, reason: 'unknown-identity' }
    if (entry.key !== identity.publicKey) return { ok: false, reason: 'bad-signature' }
    if (!(await this.mayWrite(g, identity, entry))) return { ok: false, reason: 'not-a-writer' }
    try {
      if (!(await Entry.verify(this.components.identities, entry))) return { ok: false, reason: 'bad-signature' }
    } catch {
      return { ok: false, reason: 'bad-signature' }
    }
    return { ok: true, hash: entry.hash }
  }

  private async mayWrite (g: Guarded, identity: GuardIdentity, entry: OrbitDBEntry): Promise<boolean> {
    if (g.write != null) return g.write.includes(identity.id) || g.write.includes('*')
    // another kind of controller: ask it (the identity is in the blockstore by now)
    const bound = deadline(this.init.identityTimeout, g.signal, 'asking the access controller')
    try {
      return await raceSignal(g.canAppend(entry), bound.signal)
    } catch {
      return false
    } finally {
      bound.clear()
    }
  }

  /**
   * The verified identity `hash`: from the cache, or fetched once for all who
   * ask (at most `maxLookups` fetches at once, `maxLookupsPerPeer` started by
   * entries one peer delivered: `busy` beyond). The answer waits at most
   * `identityTimeout` from the fetch's start (or until `signal`): `undefined`
   * then, while the fetch goes on up to `fetchTimeout`, so an entry that names
   * it once it has come finds it.
   * `undefined` too for one that could not be fetched or verified lately.
   */
  private async identity (hash: unknown, signal: AbortSignal, options: { peer?: string, retryTimedOut: boolean }): Promise<GuardIdentity | undefined | 'busy'> {
    if (typeof hash !== 'string' || hash.length === 0 || hash.length > 256) return undefined
    // ours, whatever the cache has forgotten
    if (hash === this.components.identity?.hash) return this.components.identity
    const known = this.verified.get(hash)
    if (known != null) return known
    const refusal = this.refused.get(hash)
    if (refusal != null && Date.now() - refusal.at < this.init.refusedTtl && !(refusal.timedOut && options.retryTimedOut)) return undefined
    let lookup = this.lookups.get(hash)
    // asked for a while already: not here yet (entries naming it cost nothing more while it comes)
    if (lookup != null && Date.now() - lookup.since >= this.init.identityTimeout) return undefined
    if (lookup == null) {
      if (this.shutdown.signal.aborted) return undefined
      const peer = options.peer
      if (peer != null && (this.lookups.size >= this.init.maxLookups || (this.lookupsBy.get(peer) ?? 0) >= this.init.maxLookupsPerPeer)) return 'busy'
      if (peer != null) this.lookupsBy.set(peer, (this.lookupsBy.get(peer) ?? 0) + 1)
      const fetched = this.lookup(hash).finally(() => {
        this.lookups.delete(hash)
        if (peer == null) return
        const n = (this.lookupsBy.get(peer) ?? 1) - 1
        if (n > 0) this.lookupsBy.set(peer, n)
        else this.lookupsBy.delete(peer)
      })
      lookup = { fetched, since: Date.now() }
      this.lookups.set(hash, lookup)
    }
    const answer = deadline(this.init.identityTimeout - (Date.now() - lookup.since), signal, `the identity ${hash}`)
    try {
      return await raceSignal(lookup.fetched, answer.signal)
    } catch {
      return undefined
    } finally {
      answer.clear()
    }
  }

  private async lookup (hash: string): Promise<GuardIdentity | undefined> {
    const bound = deadline(this.init.fetchTimeout, this.shutdown.signal, `fetching identity ${hash}`)
    const signal = bound.signal
    try {
      const storage = await this.storage
      const bytes = await raceSignal(storage.get(hash, signal), signal) as Uint8Array | undefined
      if (bytes == null) throw new Error('not found')
      const { cid, value } = await Block.decode<any, number, number>({ bytes, codec: dagCbor, hasher: sha256 })
      if (cid.toString(base58btc) !== hash) throw new Error('its block does not match its hash')
      const identity: GuardIdentity = { id: value?.id, publicKey: value?.publicKey, signatures: { ...value?.signatures }, type: value?.type, hash, bytes }
      if (!(await this.components.identities.verifyIdentity(identity))) throw new Error('its signatures do not verify')
      this.verified.set(hash, identity)
      this.refused.delete(hash)
      return identity
    } catch (err: any) {
      if (this.shutdown.signal.aborted) return undefined
      const timedOut = signal.aborted
      this.refused.set(hash, { at: Date.now(), timedOut })
      this.log('identity %s refused for %d ms: %s', hash, this.init.refusedTtl, timedOut ? `not fetched within ${this.init.fetchTimeout} ms` : err?.message ?? err)
      return undefined
    } finally {
      bound.clear()
    }
  }

  private refuse (g: Guarded, reason: EntryRejectReason, via: EntryRejectedDetail['via'], from?: PeerId): void {
    this.stats[reason]++
    const detail: EntryRejectedDetail = { address: g.address, reason, via, ...(from != null ? { from: from.toString() } : {}) }
    // one line per refusal would flood the log: the first of each kind, then a count
    const n = this.stats[reason]
    if (n === 1 || (n & (n - 1)) === 0) this.log('%s: refused an entry via %s from %s (%s; %d so far)', g.address, via, detail.from ?? 'a peer', reason, n)
    else this.log.trace('%s: refused an entry via %s from %s (%s)', g.address, via, detail.from ?? 'a peer', reason)
    this.safeDispatchEvent('entry:rejected', { detail })
  }
}

/** A heads exchange was ended by the guard (heads refused, too many sent, bytes that are not a head, or none in time). */
export class HeadsExchangeCutError extends Error {
  override name = 'HeadsExchangeCutError'
}

/** The bytes of a heads exchange are not a sequence of CBOR items (or one is over the size limit). */
class HeadFramingError extends Error {
  override name = 'HeadFramingError'
}

/**
 * The heads of one exchange, read with backpressure.
 *
 * libp2p 3's async iterator over a stream pushes every message into a queue
 * with no bound, and yamux grants the sender more window as each frame
 * arrives, not as it is read (`@libp2p/utils` 7.4 `AbstractMessageStream`,
 * `@chainsafe/libp2p-yamux` 8.0 `YamuxStream.handleData`): while OrbitDB, or
 * this guard, waited on one head (an identity lookup: 2 s), a peer could push
 * the rest as fast as the connection went. 96 exchanges at once of 100 KB
 * heads from three connections took the victim's RSS up by 1.1-1.4 GB, and
 * what was queued was held until read, seconds after the peer had stopped
 * (up to 240 MB after a GC).
 *
 * Here the stream is paused as soon as a whole head is buffered and resumed
 * only while the next head is awaited: a paused yamux stream sends no window
 * updates, so an exchange has at most its window in flight, and what waits
 * unread is bounded by the stream's read buffer limit, lowered to one head's
 * worth (libp2p resets the stream beyond; its default is 4 MB).
 *
 * OrbitDB sends each head with one `send()`, unframed, and a paused stream
 * hands over what arrived meanwhile as one message: heads are cut apart by
 * the length of their CBOR item (an entry is one dag-cbor block), and a head
 * that does not parse or is over `maxHeadBytes` is a `HeadFramingError`.
 */
class HeadsReader {
  /** Whether the stream ended with every head read. */
  done = false
  private readonly stream: Stream
  private readonly maxHeadBytes: number
  private parts: Uint8Array[] = []
  private buffered = 0
  /** Bytes the head being read needs at least (nothing to parse before). */
  private need = 1
  private wake?: () => void
  private failure?: Error

  constructor (stream: Stream, maxHeadBytes: number) {
    this.stream = stream
    this.maxHeadBytes = maxHeadBytes
    // what may wait unread while paused (libp2p resets the stream beyond): a head's worth, not libp2p's 4 MB
    stream.maxReadBufferLength = Math.min(stream.maxReadBufferLength, maxHeadBytes)
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('end', this.onEnd)
    stream.addEventListener('close', this.onClose)
    this.pause()
  }

  /** The next head, `undefined` at the end of the stream; waits for the peer until `signal`. */
  async next (signal: AbortSignal): Promise<Uint8Array | undefined> {
    for (;;) {
      // a stream reset or aborted: what was not read yet goes with it
      if (this.failure != null) throw this.failure
      const head = this.take()
      if (head != null) return head
      if (this.ended()) {
        if (this.buffered > 0) throw new HeadFramingError(`${this.buffered} bytes after the last head`)
        this.done = true
        return undefined
      }
      const woken = new Promise<void>(resolve => { this.wake = resolve })
      this.resume()
      try {
        await raceSignal(woken, signal)
      } finally {
        this.wake = undefined
      }
    }
  }

  /** Stop listening and drop what is buffered. */
  close (): void {
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('end', this.onEnd)
    this.stream.removeEventListener('close', this.onClose)
    this.parts = []
    this.buffered = 0
  }

  private readonly onMessage = (evt: Event): void => {
    const data = (evt as Event & { data: { subarray(): Uint8Array } }).data.subarray()
    if (data.byteLength === 0) return
    this.parts.push(data)
    this.buffered += data.byteLength
    if (this.buffered < this.need) return
    // no more until this is parsed (and, once it is a head, checked and applied)
    this.pause()
    this.wake?.()
  }

  private readonly onEnd = (): void => { this.wake?.() }

  private readonly onClose = (evt: Event): void => {
    const error = (evt as Event & { error?: Error }).error
    if (error != null) {
      this.failure ??= error
      this.parts = []
      this.buffered = 0
      // a reset leaves what arrived while paused in libp2p's read buffer, for as long as the stream is referenced
      if (this.stream.readBufferLength > 0) this.stream.closeRead().catch(() => {})
    }
    this.wake?.()
  }

  /** The next whole head buffered, if there is one. */
  private take (): Uint8Array | undefined {
    if (this.buffered < this.need) return undefined
    const bytes = this.parts.length === 1 ? this.parts[0]! : concat(this.parts, this.buffered)
    this.parts = [bytes]
    const item = cborItemEnd(bytes, this.maxHeadBytes)
    if ('need' in item) {
      this.need = item.need
      return undefined
    }
    const rest = bytes.subarray(item.end)
    this.parts = rest.byteLength > 0 ? [rest] : []
    this.buffered = rest.byteLength
    this.need = 1
    return bytes.subarray(0, item.end)
  }

  /** Nothing more will arrive: the remote closed its writable end and libp2p has handed everything over. */
  private ended (): boolean {
    const stream = this.stream
    return stream.readableEnded || stream.readStatus === 'closed' || (stream.status !== 'open' && stream.readBufferLength === 0)
  }

  private pause (): void {
    if (this.stream.readStatus === 'readable') this.stream.pause()
  }

  private resume (): void {
    if (this.stream.readStatus === 'paused') this.stream.resume()
  }
}

/**
 * Where the first CBOR data item of `bytes` ends (`{ end }`), or how many
 * bytes it needs at least when `bytes` holds only its beginning
 * (`{ need }`). It reads the items' heads only (a byte string is skipped by
 * its length) and allocates nothing. Throws a `HeadFramingError` for what
 * dag-cbor never holds (indefinite lengths, reserved values) and for an item
 * over `max` bytes.
 */
export function cborItemEnd (bytes: Uint8Array, max: number): { end: number } | { need: number } {
  let pos = 0
  // items still to read: the first, then those its arrays, maps and tags hold
  let items = 1
  while (items > 0) {
    if (pos >= bytes.byteLength) return { need: pos + 1 }
    const initial = bytes[pos]!
    const major = initial >> 5
    const info = initial & 0x1f
    pos++
    let arg = info
    if (info >= 24) {
      if (info > 27) throw new HeadFramingError(`not dag-cbor: additional information ${info} at byte ${pos - 1}`)
      const size = 2 ** (info - 24)
      if (pos + size > bytes.byteLength) return { need: pos + size }
      arg = 0
      for (let i = 0; i < size; i++) arg = arg * 256 + bytes[pos + i]!
      pos += size
    }
    items--
    if (major === 2 || major === 3) pos += arg
    else if (major === 4) items += arg
    else if (major === 5) items += 2 * arg
    else if (major === 6) items += 1
    // each item still to read takes a byte at least
    if (pos + items > max) throw new HeadFramingError(`a head over ${max} bytes`)
  }
  return pos > bytes.byteLength ? { need: pos } : { end: pos }
}

/** OrbitDB's heads protocol id of the database `address` (sync.js spells it so). */
export function headsProtocolOf (address: string): string {
  return HEADS_PROTOCOL + address.replace(/^\/+/, '')
}

/** The database address of an OrbitDB heads protocol id, or undefined. */
function addressOf (protocol: string | undefined): string | undefined {
  if (protocol == null || !protocol.startsWith(HEADS_PROTOCOL)) return undefined
  return '/' + protocol.slice(HEADS_PROTOCOL.length)
}

function remotePeerOf (stream: Stream, peer: unknown): PeerId | undefined {
  const remote = (stream as unknown as { remotePeer?: PeerId }).remotePeer
  if (remote != null) return remote
  return typeof (peer as PeerId)?.toMultihash === 'function' ? peer as PeerId : undefined
}
