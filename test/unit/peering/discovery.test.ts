import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { TypedEventEmitter, setMaxListeners } from 'main-event'
import { defaultLogger } from '@libp2p/logger'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { fromString } from 'uint8arrays'
import * as Block from 'multiformats/block'
import * as dagCbor from '@ipld/dag-cbor'
import { sha256 } from 'multiformats/hashes/sha2'
import { base58btc } from 'multiformats/bases/base58'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'
import { Discovery, remoteHost, type DiscoveryInit } from '../../../src/peering/discovery.ts'
import { DuplicateIdentityError } from '../../../src/companions/companions.ts'
import { InvalidRemoteDataError, TimeoutError } from '../../../src/errors.ts'
import type { NewPiecePleaseEvents, NppLibp2p } from '../../../src/index.ts'

const USER_DB = '/orbitdb/zdpuAmrcSRUhkQcnRQ6p4bphs7DJWGBkqczSGFYynX6moTcDL'
/** Our catalog's address: the acknowledgement topic when a test asks for one. */
const CATALOG = '/orbitdb/zdpuAvNfQRbH9ZpAuDfCK1hDvmGSjc7qn6JjcUqM4SXAsfXWk'

const newPeerId = async (): Promise<PeerId> => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))

/** A well-formed OrbitDB address of its own for `name`. */
async function address (name: string): Promise<string> {
  const { cid } = await Block.encode({ value: { name }, codec: dagCbor, hasher: sha256 })
  return `/orbitdb/${cid.toString(base58btc)}`
}

/** `promise`, or a rejection naming `what` after `ms` (the condition never came). */
async function within<T> (promise: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`${what}: not within ${ms} ms`)) }, ms)
    })])
  } finally {
    clearTimeout(timer)
  }
}

/** A promise with its resolve function outside (a gate the test opens, or a condition a stub reports). */
function signal<T = void> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>(_resolve => { resolve = _resolve })
  return { promise, resolve }
}

const turn = async (): Promise<void> => { await new Promise<void>(resolve => setImmediate(resolve)) }

/** Let the event loop turn until `check()` holds; fails after `turns` turns (for conditions that need no timer). */
async function settled (check: () => boolean, what: string, turns = 1000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (check()) return
    await turn()
  }
  assert.fail(`${what}: not after ${turns} turns`)
}

interface FakeConnection { remotePeer: PeerId, remoteAddr?: Multiaddr, limits?: { seconds: number } }

interface SetupOptions {
  /** What the verifier does with an announcement (the n-th verification overall). */
  verify?: (userDb: string, from: string, signal: AbortSignal, n: number) => Promise<void>
  /** What the n-th publish returns (default: every subscriber is a recipient). */
  publish?: (n: number, topic: string) => Promise<{ recipients: PeerId[] }>
  /** Discovery options besides `userDb`. */
  init?: Partial<DiscoveryInit>
}

/**
 * Discovery over stubbed components: a pubsub whose subscribers and publish
 * results the test decides, a libp2p whose connections the test opens and
 * closes (with the events libp2p would dispatch), and a verifier.
 */
async function setup (options: SetupOptions = {}): Promise<{
  discovery: Discovery
  events: TypedEventEmitter<NewPiecePleaseEvents>
  /** As gossipsub reports it: signed by `from`, delivered by the neighbour `via` (`from` itself by default). */
  deliver(from: PeerId, data: Uint8Array | string, via?: PeerId): void
  announce(from: PeerId, userDb?: string): void
  verified: Array<{ from: string, userDb: string }>
  libp2p: EventTarget
  subscribers: PeerId[]
  /** Peers subscribed to the acknowledgement topic (`CATALOG`): they took our announcement in. */
  acknowledgers: PeerId[]
  /** `peer` opens our catalog: it subscribes to the acknowledgement topic, as gossipsub reports it. */
  acknowledge(peer: PeerId): void
  pubsub: EventTarget
  publishes: () => number
  /** A connection to `peer`, from `host` when given (a TCP address on it), else with no host of its own. */
  connect(peer: PeerId, limited?: boolean, host?: string): void
  disconnect(peer: PeerId): void
}> {
  const self = await newPeerId()
  const subscribers: PeerId[] = []
  const acknowledgers: PeerId[] = []
  let publishes = 0
  const publish = options.publish ?? (async () => ({ recipients: [...subscribers] }))
  const pubsub = Object.assign(new EventTarget(), {
    subscribe () {},
    unsubscribe () {},
    getSubscribers: (topic: string) => topic === CATALOG ? acknowledgers : subscribers,
    publish: async (topic: string) => await publish(++publishes, topic)
  })
  setMaxListeners(Infinity, pubsub) // as gossipsub does: one listener per peer waiting to subscribe
  const connections = new Map<string, FakeConnection[]>()
  const libp2p = Object.assign(new EventTarget(), {
    peerId: self,
    getPeers: () => [],
    getConnections: (peer?: PeerId) => peer == null ? [...connections.values()].flat() : connections.get(peer.toString()) ?? [],
    services: { pubsub }
  }) as unknown as NppLibp2p
  const events = new TypedEventEmitter<NewPiecePleaseEvents>()
  const verified: Array<{ from: string, userDb: string }> = []
  let verifications = 0
  const verify = options.verify ?? (async () => {})
  const verifier = {
    verify: async (userDb: string, from: string, signal: AbortSignal) => {
      await verify(userDb, from, signal, ++verifications)
      verified.push({ from, userDb })
    }
  }
  const discovery = new Discovery({ libp2p, events, logger: defaultLogger(), verifier }, { userDb: USER_DB, timeout: 1000, ...options.init })
  await discovery.start()
  let msgIds = 0
  const deliver = (from: PeerId, data: Uint8Array | string, via: PeerId = from): void => {
    const msg = { type: 'signed', topic: self.toString(), from, data: typeof data === 'string' ? fromString(data) : data }
    pubsub.dispatchEvent(new CustomEvent('gossipsub:message', { detail: { propagationSource: via, msgId: String(++msgIds), msg } }))
  }
  return {
    discovery,
    events,
    deliver,
    announce: (from, userDb = USER_DB) => { deliver(from, JSON.stringify({ userDb })) },
    verified,
    libp2p,
    subscribers,
    acknowledgers,
    acknowledge (peer) {
      acknowledgers.push(peer)
      pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { peerId: peer, subscriptions: [{ topic: CATALOG, subscribe: true }] } }))
    },
    pubsub,
    publishes: () => publishes,
    connect (peer, limited = false, host) {
      const list = connections.get(peer.toString()) ?? []
      const connection: FakeConnection = {
        remotePeer: peer,
        ...(host != null ? { remoteAddr: multiaddr(`/ip4/${host}/tcp/4001`) } : {}),
        ...(limited ? { limits: { seconds: 120 } } : {})
      }
      connections.set(peer.toString(), [...list, connection])
      libp2p.dispatchEvent(new CustomEvent('connection:open', { detail: connection }))
      if (list.length === 0) libp2p.dispatchEvent(new CustomEvent('peer:connect', { detail: peer }))
    },
    disconnect (peer) {
      connections.delete(peer.toString())
      libp2p.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peer }))
    }
  }
}

describe('Discovery', () => {
  it('hands a well-formed announcement to the verifier and reports the message', async () => {
    const sender = await newPeerId()
    const { discovery, events, deliver, verified } = await setup()
    const message = new Promise(resolve => { events.addEventListener('message', e => { resolve(e.detail.data) }) })
    deliver(sender, JSON.stringify({ userDb: USER_DB }))
    assert.deepEqual(await message, { userDb: USER_DB })
    await turn()
    assert.deepEqual(verified.map(v => v.from), [sender.toString()])
    assert.equal(discovery.stats.discoveriesSucceeded, 1)
    await discovery.stop()
  })

  it('drops what is malformed with a reason on the shared event target, and never verifies it', async () => {
    const sender = await newPeerId()
    const { discovery, events, deliver, verified } = await setup()
    const reasons: string[] = []
    events.addEventListener('message:dropped', e => { reasons.push(e.detail.reason) })
    deliver(sender, 'not json')
    deliver(sender, JSON.stringify({ userDb: 'nope' }))
    deliver(sender, JSON.stringify({ userDb: USER_DB, extra: 1 }))
    deliver(sender, new Uint8Array(17 * 1024))
    assert.deepEqual(reasons, ['not-json', 'wrong-shape', 'wrong-shape', 'oversized'])
    assert.deepEqual(verified, [])
    assert.equal(discovery.stats.messagesDropped['wrong-shape'], 2)
    await discovery.stop()
  })

  describe('announcing our user db', () => {
    it('retries an announcement that was not delivered (no recipient in time, a publish error) until the peer is a recipient', async () => {
      const remote = await newPeerId()
      const delivered = signal()
      // eight publishes without the peer among the recipients (more than one
      // attempt's budget), then one that throws, then delivered
      const { discovery, subscribers, connect } = await setup({
        init: { timeout: 5000, announceAttempts: 3, retryMinDelay: 1, retryMaxDelay: 5 },
        publish: async (n) => {
          if (n <= 8) return { recipients: [] }
          if (n === 9) throw new Error('outbound stream not ready')
          delivered.resolve()
          return { recipients: [remote] }
        }
      })
      subscribers.push(remote)
      connect(remote)
      await within(delivered.promise, 'the announcement reaching the peer')
      await turn()
      assert.equal(discovery.stats.announcementsSent, 1)
      assert.equal(discovery.stats.announcementsRetried, 3, 'attempts of 3, 3 and 3 publishes failed')
      assert.equal(discovery.announcing, 0, 'nothing left running')
      await discovery.stop()
    })

    it('stops retrying when the peer disconnects, and when discovery stops', async () => {
      const [remote, other] = await Promise.all([newPeerId(), newPeerId()])
      const thirdPublish = signal()
      const { discovery, subscribers, connect, disconnect, publishes } = await setup({
        init: { timeout: 100, announceAttempts: 1, retryMinDelay: 1, retryMaxDelay: 5 },
        publish: async (n) => {
          if (n === 3) thirdPublish.resolve()
          return { recipients: [] }
        }
      })
      subscribers.push(remote, other)
      connect(remote)
      const chain = discovery.announce(remote) // the chain the connection started
      await within(thirdPublish.promise, 'a third publish (two retries)')
      disconnect(remote)
      assert.equal(await within(chain, 'the chain ending after the disconnect'), false)
      const after = publishes()
      await turn()
      assert.equal(publishes(), after, 'no publish after the peer left')
      assert.equal(discovery.announcing, 0)

      connect(other)
      const otherChain = discovery.announce(other)
      await discovery.stop()
      assert.equal(await within(otherChain, 'the chain ending at stop'), false)
      assert.equal(discovery.announcing, 0)
    })

    it('runs one announcement per peer, however many direct connections open to it', async () => {
      const remote = await newPeerId()
      const gate = signal<{ recipients: PeerId[] }>()
      const { discovery, subscribers, connect, publishes } = await setup({ publish: async () => await gate.promise })
      subscribers.push(remote)
      connect(remote)
      connect(remote)
      connect(remote)
      const chain = discovery.announce(remote)
      await turn()
      assert.equal(discovery.announcing, 1)
      assert.equal(publishes(), 1)
      gate.resolve({ recipients: [remote] })
      assert.equal(await within(chain, 'the announcement'), true)
      assert.equal(discovery.stats.announcementsSent, 1)
      await discovery.stop()
    })

    it('publishes to a bounded number of peers at once', async () => {
      const remotes = await Promise.all(Array.from({ length: 5 }, newPeerId))
      let running = 0
      let most = 0
      const gates: Array<() => void> = []
      const { discovery, subscribers, connect } = await setup({
        init: { announceConcurrency: 2 },
        publish: async (_n) => {
          running++
          most = Math.max(most, running)
          await new Promise<void>(resolve => { gates.push(resolve) })
          running--
          return { recipients: [...subscribers] }
        }
      })
      subscribers.push(...remotes)
      for (const remote of remotes) connect(remote)
      const chains = remotes.map(async remote => await discovery.announce(remote))
      const all = Promise.all(chains)
      // one publish let through per turn
      await settled(() => { gates.shift()?.(); return discovery.stats.announcementsSent === remotes.length }, 'every announcement sent')
      assert.deepEqual(await within(all, 'every announcement'), remotes.map(() => true))
      assert.equal(most, 2)
      await discovery.stop()
    })

    it('waits for a peer met over a relayed connection to subscribe, and announces once it does', async () => {
      const remote = await newPeerId()
      const { discovery, libp2p, subscribers, pubsub, connect } = await setup()
      // met through a relay: gossipsub does not run over the limited connection, no subscription yet
      connect(remote, true)
      await turn()
      assert.equal(discovery.announcing, 1, 'waiting for the subscription, at no cost')
      assert.equal(discovery.stats.announcementsSent, 0)
      // the WebRTC connection opens, and over it the peer subscribes
      connect(remote)
      subscribers.push(remote)
      pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { peerId: remote, subscriptions: [{ topic: remote.toString(), subscribe: true }] } }))
      assert.equal(await within(discovery.announce(remote), 'the announcement'), true)
      assert.equal(discovery.stats.announcementsSent, 1)
      // a relayed connection opening is no reason to announce
      const stranger = await newPeerId()
      libp2p.dispatchEvent(new CustomEvent('connection:open', { detail: { remotePeer: stranger, limits: { seconds: 120 } } }))
      assert.equal(discovery.announcing, 0)
      await discovery.stop()
    })

    it('sends an announcement again when the peer received it but never took it in (no acknowledgement), a bounded number of times', async () => {
      const remote = await newPeerId()
      // the receiver drops every announcement (its queue full, say): it never opens our catalog
      const { discovery, subscribers, connect, publishes } = await setup({
        init: { acknowledgement: CATALOG, acknowledgeTimeout: 20, maxUnacknowledged: 2, retryMinDelay: 1, retryMaxDelay: 5 }
      })
      subscribers.push(remote)
      connect(remote)
      assert.equal(await within(discovery.announce(remote), 'giving up'), false)
      assert.equal(publishes(), 3, 'sent, then sent again twice')
      assert.equal(discovery.stats.announcementsSent, 3)
      assert.equal(discovery.stats.announcementsUnacknowledged, 2)
      assert.equal(discovery.stats.announcementsRetried, 0, 'every delivery went through')
      assert.equal(discovery.announcing, 0)
      await discovery.stop()
    })

    it('stops sending again once the peer takes the announcement in, and waits for nothing when it already has', async () => {
      const [remote, companion] = await Promise.all([newPeerId(), newPeerId()])
      let takenIn = (): void => {}
      const { discovery, subscribers, acknowledgers, acknowledge, connect, publishes } = await setup({
        init: { acknowledgement: CATALOG, acknowledgeTimeout: 20, maxUnacknowledged: 5, retryMinDelay: 1, retryMaxDelay: 5 },
        // the first announcement is dropped by the receiver; the second is verified, and our catalog opened
        publish: async (n) => {
          if (n === 2) setImmediate(takenIn)
          return { recipients: [...subscribers] }
        }
      })
      subscribers.push(remote)
      takenIn = () => { acknowledge(remote) }
      connect(remote)
      assert.equal(await within(discovery.announce(remote), 'the acknowledged announcement'), true)
      assert.equal(publishes(), 2)
      assert.equal(discovery.stats.announcementsUnacknowledged, 1)
      // a companion from an earlier session already replicates our catalog
      subscribers.push(companion)
      acknowledgers.push(companion)
      connect(companion)
      assert.equal(await within(discovery.announce(companion), 'the announcement'), true)
      assert.equal(publishes(), 3, 'one publish, no resend')
      assert.equal(discovery.stats.announcementsUnacknowledged, 1)
      await discovery.stop()
    })

    it('gives up while only a relayed connection is left, and starts again on the next direct one', async () => {
      const remote = await newPeerId()
      let direct = false
      const { discovery, subscribers, connect } = await setup({
        init: { timeout: 50, announceAttempts: 2, retryMinDelay: 1, retryMaxDelay: 5 },
        // over the limited connection nothing reaches the peer
        publish: async () => ({ recipients: direct ? [remote] : [] })
      })
      subscribers.push(remote)
      connect(remote, true)
      assert.equal(await within(discovery.announce(remote), 'giving up'), false)
      assert.equal(discovery.stats.announcementsRetried, 0, 'no direct connection: not retried')
      direct = true
      connect(remote)
      assert.equal(await within(discovery.announce(remote), 'the announcement over the direct connection'), true)
      assert.equal(discovery.stats.announcementsSent, 1)
      await discovery.stop()
    })
  })

  describe('verifying announcements', () => {
    it('defers announcements that arrive while the verification queue is full, and verifies them when there is room', async () => {
      // 70 peers announce together, more than the 64 verifications the queue holds
      const senders = await Promise.all(Array.from({ length: 70 }, newPeerId))
      const addresses = await Promise.all(senders.map(async (_s, i) => await address(`user-${i}`)))
      const gate = signal()
      const allVerified = signal()
      const { discovery, announce, verified, connect } = await setup({
        verify: async (_userDb, _from, _signal, n) => {
          await gate.promise
          if (n === senders.length) allVerified.resolve()
        }
      })
      senders.forEach((sender, i) => { connect(sender); announce(sender, addresses[i]) })
      assert.equal(discovery.stats.messagesDropped['queue-full'], 0, 'nothing lost')
      assert.equal(discovery.stats.announcementsDeferred, 6)
      assert.equal(discovery.pending, 64)
      assert.equal(discovery.deferred, 6)
      gate.resolve()
      await within(allVerified.promise, 'every announcement verified')
      await turn()
      assert.deepEqual(new Set(verified.map(v => v.from)), new Set(senders.map(String)))
      assert.equal(discovery.stats.discoveriesSucceeded, 70)
      assert.equal(discovery.pending, 0)
      assert.equal(discovery.deferred, 0)
      await discovery.stop()
    })

    it('keeps the latest deferred announcement of each peer, and a bounded number of them (oldest dropped as queue-full)', async () => {
      const [a, b, c, d] = await Promise.all(Array.from({ length: 4 }, newPeerId)) as [PeerId, PeerId, PeerId, PeerId]
      const [b1, b2, cDb, dDb] = await Promise.all(['b1', 'b2', 'c', 'd'].map(address)) as [string, string, string, string]
      const gate = signal()
      const dropped: string[] = []
      const { discovery, events, announce, verified, connect } = await setup({
        init: { maxPending: 1, maxDeferred: 2 },
        verify: async (_userDb, from) => { if (from === a.toString()) await gate.promise }
      })
      events.addEventListener('message:dropped', e => { dropped.push(`${e.detail.from === c.toString() ? 'c' : e.detail.from}:${e.detail.reason}`) })
      for (const peer of [a, b, c, d]) connect(peer)
      announce(a) // verifying
      announce(b, b1) // deferred
      announce(c, cDb) // deferred
      announce(b, b2) // replaces b1, now the newest
      announce(d, dDb) // deferred: c, the oldest, makes room
      assert.deepEqual(dropped, ['c:queue-full'])
      assert.equal(discovery.deferred, 2)
      gate.resolve()
      await settled(() => discovery.pending + discovery.deferred === 0, 'every verification over')
      assert.deepEqual(verified.map(v => v.userDb), [USER_DB, b2, dDb])
      assert.equal(discovery.stats.announcementsDeferred, 4)
      await discovery.stop()
    })

    it('keeps the place of a deferred announcement made again', async () => {
      const [a, b, c] = await Promise.all(Array.from({ length: 3 }, newPeerId)) as [PeerId, PeerId, PeerId]
      const [bDb, cDb] = await Promise.all(['b', 'c'].map(address)) as [string, string]
      const gate = signal()
      const { discovery, announce, verified, connect } = await setup({
        init: { maxPending: 1 },
        verify: async (_userDb, from) => { if (from === a.toString()) await gate.promise }
      })
      for (const peer of [a, b, c]) connect(peer)
      announce(a) // verifying
      announce(b, bDb) // deferred
      announce(c, cDb) // deferred
      announce(b, bDb) // the same again (another connection opened): still before c
      assert.equal(discovery.stats.announcementsDeferred, 2)
      gate.resolve()
      await settled(() => discovery.pending + discovery.deferred === 0, 'every verification over')
      assert.deepEqual(verified.map(v => v.userDb), [USER_DB, bDb, cDb])
      await discovery.stop()
    })

    it('forgets a deferred announcement when its peer disconnects', async () => {
      const [a, b] = await Promise.all([newPeerId(), newPeerId()])
      const gate = signal()
      const { discovery, announce, verified, connect, disconnect } = await setup({
        init: { maxPending: 1 },
        verify: async () => { await gate.promise }
      })
      connect(a)
      connect(b)
      announce(a)
      announce(b, await address('b'))
      assert.equal(discovery.deferred, 1)
      disconnect(b)
      assert.equal(discovery.deferred, 0)
      gate.resolve()
      await settled(() => discovery.pending === 0, 'the verification over')
      assert.deepEqual(verified.map(v => v.from), [a.toString()])
      await discovery.stop()
    })

    it('retries a verification that failed for a transient reason while the peer is connected', async () => {
      const sender = await newPeerId()
      const succeeded = signal()
      const dropped: string[] = []
      const { discovery, events, announce, verified, connect } = await setup({
        init: { timeout: 30, retryMinDelay: 1, retryMaxDelay: 5 },
        verify: async (_userDb, _from, signal, n) => {
          if (n === 1) throw new TimeoutError('reading the manifest timed out')
          if (n === 2) { // stalls: its own deadline ends it
            await new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(signal.reason) }) })
          }
          succeeded.resolve()
        }
      })
      events.addEventListener('message:dropped', e => { dropped.push(e.detail.reason) })
      connect(sender)
      announce(sender)
      await within(succeeded.promise, 'the third attempt')
      await turn()
      assert.deepEqual(verified.map(v => v.from), [sender.toString()])
      assert.deepEqual(dropped, [], 'a transient failure is no reason to drop the announcement')
      assert.equal(discovery.stats.discoveriesRetried, 2)
      assert.equal(discovery.stats.discoveriesSucceeded, 1)
      assert.equal(discovery.stats.discoveriesFailed, 0)
      // announced again meanwhile (a new connection): not refused as recently failed
      announce(sender)
      await turn()
      assert.deepEqual(dropped, [])
      await discovery.stop()
    })

    it('gives up a transient failure when the peer disconnects, without refusing its next announcement', async () => {
      const sender = await newPeerId()
      const firstFailure = signal()
      let fail = true
      const { discovery, announce, verified, connect, disconnect } = await setup({
        init: { retryMinDelay: 1000, retryMaxDelay: 1000 },
        verify: async () => {
          if (!fail) return
          firstFailure.resolve()
          throw new TimeoutError('opening the user db timed out')
        }
      })
      connect(sender)
      announce(sender)
      await firstFailure.promise
      await turn()
      assert.equal(discovery.pending, 1, 'waiting to retry')
      disconnect(sender)
      await settled(() => discovery.pending === 0, 'the verification ending')
      assert.equal(discovery.stats.discoveriesFailed, 1)
      assert.equal(discovery.stats.messagesDropped['invalid-user-db'], 0)
      // it comes back and announces again
      fail = false
      connect(sender)
      announce(sender)
      await settled(() => discovery.pending === 0, 'the new verification over')
      assert.deepEqual(verified.map(v => v.from), [sender.toString()])
      await discovery.stop()
    })

    it('remembers a verification that failed for good and refuses the same announcement for a while', async () => {
      const sender = await newPeerId()
      const { discovery, events, deliver, connect } = await setup({ verify: async () => { throw new InvalidRemoteDataError('not a catalog') } })
      const reasons: string[] = []
      const failed = new Promise<void>(resolve => {
        events.addEventListener('message:dropped', e => { reasons.push(e.detail.reason); if (e.detail.reason === 'invalid-user-db') resolve() })
      })
      connect(sender)
      deliver(sender, JSON.stringify({ userDb: USER_DB }))
      await failed
      deliver(sender, JSON.stringify({ userDb: USER_DB }))
      assert.deepEqual(reasons, ['invalid-user-db', 'recently-failed'])
      assert.equal(discovery.stats.discoveriesRetried, 0)
      await discovery.stop()
    })

    it('stop() ends verifications waiting, deferred or about to be retried', async () => {
      const [a, b] = await Promise.all([newPeerId(), newPeerId()])
      const failed = signal()
      const { discovery, announce, connect } = await setup({
        init: { maxPending: 1, retryMinDelay: 60_000, retryMaxDelay: 60_000 },
        verify: async () => { failed.resolve(); throw new TimeoutError('slow') }
      })
      connect(a)
      connect(b)
      announce(a)
      announce(b, await address('b'))
      await failed.promise
      await turn()
      assert.equal(discovery.pending, 1)
      assert.equal(discovery.deferred, 1)
      await within(discovery.stop(), 'stop')
      assert.equal(discovery.pending, 0)
      assert.equal(discovery.deferred, 0)
    })

    it('drops a refused profile as duplicate-identity, and refuses the same announcement for a while', async () => {
      const sender = await newPeerId()
      const { discovery, events, announce, verified, connect } = await setup({ verify: async () => { throw new DuplicateIdentityError('already a companion') } })
      const reasons: string[] = []
      const refused = new Promise<void>(resolve => {
        events.addEventListener('message:dropped', e => { reasons.push(e.detail.reason); if (e.detail.reason === 'duplicate-identity') resolve() })
      })
      connect(sender)
      announce(sender)
      await within(refused, 'the refusal')
      announce(sender)
      assert.deepEqual(reasons, ['duplicate-identity', 'recently-failed'])
      assert.deepEqual(verified, [])
      assert.equal(discovery.stats.messagesDropped['duplicate-identity'], 1)
      assert.equal(discovery.stats.discoveriesRetried, 0)
      await discovery.stop()
    })
  })

  // issue 10, finding 4: 3,000 announcements signed with 2,000 fresh keys
  // over one connection filled the queue and pushed out an honest peer's
  describe('limits keyed on the connection, not on the signing key', () => {
    it('drops an announcement signed by another key than the neighbour that delivered it, and charges the neighbour\'s rate limit', async () => {
      const [flooder, honest] = await Promise.all([newPeerId(), newPeerId()])
      const keys = await Promise.all(Array.from({ length: 40 }, newPeerId))
      const { discovery, events, deliver, announce, verified, connect } = await setup()
      const reasons = new Map<string, number>()
      const from = new Set<string>()
      events.addEventListener('message:dropped', e => { reasons.set(e.detail.reason, (reasons.get(e.detail.reason) ?? 0) + 1); from.add(e.detail.from) })
      connect(flooder)
      connect(honest)
      for (const [i, key] of keys.entries()) deliver(key, JSON.stringify({ userDb: await address(`forged-${i}`) }), flooder)
      // the burst of 20 passes the rate limit, and is refused as forwarded
      assert.deepEqual(Object.fromEntries(reasons), { forwarded: 20, 'rate-limited': 20 })
      assert.deepEqual([...from], [flooder.toString()], 'dropped as the neighbour\'s, not as the signers\'')
      // the flooder's own announcement now meets its spent budget; another neighbour's does not
      announce(flooder)
      announce(honest)
      await settled(() => discovery.pending === 0 && verified.length === 1, 'the honest verification')
      assert.deepEqual(verified.map(v => v.from), [honest.toString()])
      assert.equal(discovery.stats.messagesDropped['rate-limited'], 21)
      assert.equal(discovery.stats.discoveriesStarted, 1)
      await discovery.stop()
    })

    it('bounds verifications per remote address, and runs another address\'s first one before a busy address\'s backlog', async () => {
      const crowd = await Promise.all(Array.from({ length: 5 }, newPeerId))
      const honest = await newPeerId()
      const gate = signal()
      const order: string[] = []
      const { discovery, announce, connect } = await setup({
        init: { concurrency: 1, maxPendingPerAddress: 3 },
        verify: async (_userDb, from) => { order.push(from); await gate.promise }
      })
      for (const [i, peer] of crowd.entries()) {
        connect(peer, false, '10.0.0.1')
        announce(peer, await address(`crowd-${i}`))
      }
      assert.equal(discovery.pending, 3, 'three verifications for 10.0.0.1')
      assert.equal(discovery.deferred, 2, 'its other announcements wait')
      connect(honest, false, '10.0.0.2')
      announce(honest, await address('honest'))
      assert.equal(discovery.pending, 4, 'another address has room')
      await settled(() => order.length === 1, 'the first verification running')
      gate.resolve()
      await settled(() => discovery.pending + discovery.deferred === 0, 'every verification over')
      assert.equal(order.length, 6)
      assert.equal(order[1], honest.toString(), 'the other address goes before the backlog of the first')
      await discovery.stop()
    })

    it('pushes out a deferred announcement of the address holding the most, not the oldest of all', async () => {
      const [busy, honest, f1, f2, f3] = await Promise.all(Array.from({ length: 5 }, newPeerId)) as [PeerId, PeerId, PeerId, PeerId, PeerId]
      const gate = signal()
      const dropped: string[] = []
      const { discovery, events, announce, verified, connect } = await setup({
        init: { maxPending: 1, maxDeferred: 3 },
        verify: async (_userDb, from) => { if (from === busy.toString()) await gate.promise }
      })
      events.addEventListener('message:dropped', e => { dropped.push(`${e.detail.from}:${e.detail.reason}`) })
      connect(busy, false, '10.0.0.1')
      connect(honest, false, '10.0.0.2')
      for (const f of [f1, f2, f3]) connect(f, false, '10.0.0.1')
      announce(busy) // verifying
      announce(honest, await address('honest')) // deferred, the oldest
      announce(f1, await address('f1'))
      announce(f2, await address('f2'))
      announce(f3, await address('f3')) // full: 10.0.0.1 holds two, its oldest goes
      assert.deepEqual(dropped, [`${f1.toString()}:queue-full`])
      gate.resolve()
      await settled(() => discovery.pending + discovery.deferred === 0, 'every verification over')
      assert.ok(verified.some(v => v.from === honest.toString()), 'the honest announcement was verified')
      await discovery.stop()
    })

    it('counts a peer under the host of its direct connection; WebRTC and relayed addresses name none', () => {
      assert.equal(remoteHost(multiaddr('/ip4/192.0.2.7/tcp/4001')), '192.0.2.7')
      assert.equal(remoteHost(multiaddr('/ip6/::1/tcp/4001/ws')), '::1')
      assert.equal(remoteHost(multiaddr('/dns4/example.org/tcp/443/wss')), 'example.org')
      assert.equal(remoteHost(multiaddr('/webrtc/p2p/12D3KooWHBKuUEKnCyN7TvzLrosxvuZtMMrGGGTFewH8rfBjdPb5')), undefined)
      assert.equal(remoteHost(multiaddr('/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWHBKuUEKnCyN7TvzLrosxvuZtMMrGGGTFewH8rfBjdPb5/p2p-circuit/webrtc')), undefined)
      assert.equal(remoteHost(undefined), undefined)
    })
  })
})
