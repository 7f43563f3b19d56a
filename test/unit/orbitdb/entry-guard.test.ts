import { describe, it, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { Entry, Identities, KeyStore, MemoryStorage } from '@orbitdb/core'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { yamux } from '@chainsafe/libp2p-yamux'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { raceEvent } from 'race-event'
import { raceSignal } from 'race-signal'
import { concat } from 'uint8arrays/concat'
import { equals } from 'uint8arrays/equals'
import { EntryGuard, cborItemEnd, MAX_HEADS_STREAMS, MAX_REMOTE_ENTRY_BYTES, type EntryGuardInit } from '../../../src/orbitdb/entry-guard.ts'
import type { Stream } from '@libp2p/interface'
import type { EntryRejectedDetail } from '../../../src/types.ts'

const ADDRESS = '/orbitdb/zdpuTheCatalog'
const peer = { toString: () => '12D3KooWSender' } as any
/** Hashes in the fake database's log. */
const inLog = new Set<string>()

/** Identity blocks as a peer would serve them: those in `blocks`; any other never arrives (until the signal fires). */
function blockStore (): { blocks: Map<string, Uint8Array>, asked: string[], get: (hash: string, signal?: AbortSignal) => Promise<Uint8Array | undefined>, close: () => Promise<void> } {
  const blocks = new Map<string, Uint8Array>()
  const asked: string[] = []
  return {
    blocks,
    asked,
    get: async (hash, signal) => {
      asked.push(hash)
      const bytes = blocks.get(hash)
      if (bytes != null) return bytes
      return await new Promise((_resolve, reject) => {
        signal?.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
      })
    },
    close: async () => {}
  }
}

function fakeLibp2p (): any {
  const handlers = new Map<string, any>()
  return {
    handlers,
    services: { pubsub: { topicValidators: new Map() } },
    handle: async (protocol: string, handler: any) => { handlers.set(protocol, handler) },
    dialProtocol: async () => { throw new Error('not in this test') }
  }
}

function fakeDb (write: string[]): any {
  return {
    address: ADDRESS,
    access: { type: 'ipfs', write, canAppend: async () => { throw new Error('OrbitDB\'s own check must not run') } },
    log: { has: async (hash: string) => inLog.has(hash) }
  }
}

async function entryBytes (identity: any, payload: unknown = { op: 'PUT', key: 'k', value: 1 }, id = ADDRESS): Promise<Uint8Array> {
  const entry = await Entry.create(identity, id, payload, undefined, { id: identity.publicKey, time: 1 }, [], [])
  return (await Entry.encode(entry)).bytes
}

describe('EntryGuard', () => {
  let identities: any, writer: any, other: any, stranger: any, store: ReturnType<typeof blockStore>
  let libp2p: any, guard: EntryGuard, rejected: EntryRejectedDetail[], closing: AbortController

  async function build (init: EntryGuardInit = {}, write = [writer.id]): Promise<(data: Uint8Array) => Promise<TopicValidatorResult>> {
    libp2p = fakeLibp2p()
    guard = new EntryGuard({ ipfs: {} as any, identities, libp2p, storage: store }, { identityTimeout: 50, fetchTimeout: 50, ...init })
    guard.start()
    rejected = []
    guard.addEventListener('entry:rejected', e => { rejected.push(e.detail) })
    closing = new AbortController()
    guard.guard(fakeDb(write), closing.signal)
    const validator = libp2p.services.pubsub.topicValidators.get(ADDRESS)
    return async (data) => await validator(peer, { type: 'signed', topic: ADDRESS, data })
  }

  beforeEach(async () => {
    identities = await Identities({ keystore: await KeyStore({ storage: await MemoryStorage() }), storage: await MemoryStorage() })
    writer = await identities.createIdentity({ id: 'writer' })
    other = await identities.createIdentity({ id: 'other' })
    stranger = await identities.createIdentity({ id: 'stranger' })
    store = blockStore()
    // the writer's and the other's identities can be fetched; the stranger's is published nowhere
    store.blocks.set(writer.hash, writer.bytes)
    store.blocks.set(other.hash, other.bytes)
  })

  afterEach(async () => { await guard?.stop() })

  it('accepts an entry signed by a writer, and refuses everything else with its reason', async () => {
    const validate = await build()
    assert.equal(await validate(await entryBytes(writer)), TopicValidatorResult.Accept)
    assert.equal(await validate(new Uint8Array([1, 2, 3])), TopicValidatorResult.Reject)
    assert.equal(await validate(await entryBytes(writer, 'x', '/orbitdb/zdpuAnotherLog')), TopicValidatorResult.Reject)
    assert.equal(await validate(await entryBytes(other)), TopicValidatorResult.Reject)
    // could not tell: dropped, not held against the sender
    assert.equal(await validate(await entryBytes(stranger)), TopicValidatorResult.Ignore)
    // names the writer's identity, signed with another key: OrbitDB 4.0.0 accepts it
    const forged = await Entry.create({ ...other, hash: writer.hash }, ADDRESS, 'forged', undefined, { id: other.publicKey, time: 2 }, [], [])
    assert.equal(await validate((await Entry.encode(forged)).bytes), TopicValidatorResult.Reject)
    // the writer's key, a payload changed after signing
    const signed = await Entry.create(writer, ADDRESS, 'signed', undefined, { id: writer.publicKey, time: 3 }, [], [])
    assert.equal(await validate((await Entry.encode({ ...signed, payload: 'changed' })).bytes), TopicValidatorResult.Reject)
    assert.deepEqual(rejected.map(r => r.reason), ['not-an-entry', 'wrong-log', 'not-a-writer', 'unknown-identity', 'bad-signature', 'bad-signature'])
    assert.ok(rejected.every(r => r.via === 'pubsub' && r.from === '12D3KooWSender' && r.address === ADDRESS))
    assert.equal(guard.stats['bad-signature'], 2)
  })

  it('does not deliver an entry again that it accepted lately or that the log has (a replay)', async () => {
    const validate = await build()
    const bytes = await entryBytes(writer, 'once')
    assert.equal(await validate(bytes), TopicValidatorResult.Accept)
    assert.equal(await validate(bytes), TopicValidatorResult.Ignore)
    const older = await Entry.create(writer, ADDRESS, 'older', undefined, { id: writer.publicKey, time: 1 }, [], [])
    const { hash, bytes: olderBytes } = await Entry.encode(older)
    inLog.add(hash)
    assert.equal(await validate(olderBytes), TopicValidatorResult.Ignore)
    assert.deepEqual(rejected, [], 'not counted as refused')
  })

  it('looks an identity up once: a verified one and a refused one are answered from the cache', async () => {
    const validate = await build()
    await validate(await entryBytes(writer, 1))
    await validate(await entryBytes(writer, 2))
    const t0 = Date.now()
    await validate(await entryBytes(stranger, 1))
    assert.ok(Date.now() - t0 >= 40, 'the first lookup of the stranger ran to its time limit')
    const t1 = Date.now()
    assert.equal(await validate(await entryBytes(stranger, 2)), TopicValidatorResult.Ignore)
    assert.ok(Date.now() - t1 < 40, 'the second is refused from the cache')
    assert.deepEqual(store.asked, [writer.hash, stranger.hash])
  })

  it('drops an entry whose identity is slow to come, and finds it for the next one (the fetch goes on)', async () => {
    const late = await identities.createIdentity({ id: 'late' })
    const get = store.get
    // the fetch answers only once the first entry has given up waiting for it
    let release = (): void => {}
    const released = new Promise<void>(resolve => { release = resolve })
    let answered = (): void => {}
    const fetched = new Promise<void>(resolve => { answered = resolve })
    store.get = async (hash, signal) => {
      if (hash !== late.hash) return await get(hash, signal)
      store.asked.push(hash)
      await released
      setImmediate(answered)
      return late.bytes
    }
    const write = await build({ identityTimeout: 50, fetchTimeout: 5_000 }, [late.id])
    assert.equal(await write(await entryBytes(late, 1)), TopicValidatorResult.Ignore)
    assert.equal(rejected.at(-1)?.reason, 'unknown-identity')
    release()
    await fetched
    // the fetched identity is verified and cached a few ticks later: the next entry finds it
    let result = await write(await entryBytes(late, 2))
    for (const until = Date.now() + 2000; result !== TopicValidatorResult.Accept && Date.now() < until;) {
      await new Promise(resolve => setImmediate(resolve))
      result = await write(await entryBytes(late, 2))
    }
    assert.equal(result, TopicValidatorResult.Accept)
    assert.deepEqual(store.asked, [late.hash], 'fetched once')
  })

  it('looks up no more than `maxLookupsPerPeer` identities for the entries of one peer', async () => {
    await build({ maxLookupsPerPeer: 1, identityTimeout: 20, fetchTimeout: 10_000 })
    const validator = libp2p.services.pubsub.topicValidators.get(ADDRESS)
    const from = (id: string): any => ({ toString: () => id })
    const a = await identities.createIdentity({ id: 'a' })
    const b = await identities.createIdentity({ id: 'b' })
    assert.equal(await validator(from('flooder'), { data: await entryBytes(a) }), TopicValidatorResult.Ignore)
    assert.equal(await validator(from('flooder'), { data: await entryBytes(b) }), TopicValidatorResult.Ignore)
    assert.deepEqual(rejected.map(r => r.reason), ['unknown-identity', 'busy'], 'its second fetch waits for its first')
    assert.equal(await validator(from('honest'), { data: await entryBytes(writer) }), TopicValidatorResult.Accept, 'another peer\'s entries are checked')
  })

  it('looks up no more than `maxLookups` identities at once, and drops entries of one database beyond `maxPending` unchecked', async () => {
    const validate = await build({ maxLookups: 1, identityTimeout: 10_000, fetchTimeout: 10_000 })
    const a = await identities.createIdentity({ id: 'a' })
    const b = await identities.createIdentity({ id: 'b' })
    const first = validate(await entryBytes(a))
    assert.equal(await validate(await entryBytes(b)), TopicValidatorResult.Ignore)
    assert.equal(rejected.at(-1)?.reason, 'busy')
    await guard.stop()
    assert.equal(await first, TopicValidatorResult.Ignore, 'stop() ends the lookup at once')

    const validate2 = await build({ maxPending: 2, identityTimeout: 10_000, fetchTimeout: 10_000 })
    const waiting = [validate2(await entryBytes(stranger, 1)), validate2(await entryBytes(stranger, 2))]
    assert.equal(await validate2(await entryBytes(writer)), TopicValidatorResult.Ignore)
    assert.equal(rejected.at(-1)?.reason, 'busy')
    closing.abort()
    assert.deepEqual(await Promise.all(waiting), [TopicValidatorResult.Ignore, TopicValidatorResult.Ignore], 'the database closing ends its checks')
    assert.equal(libp2p.services.pubsub.topicValidators.has(ADDRESS), false, 'and removes its validator')
  })

  it('is the access controller\'s check: own appends pass from the cache, a refused remote entry is counted', async () => {
    libp2p = fakeLibp2p()
    guard = new EntryGuard({ ipfs: {} as any, identities, libp2p, storage: store, identity: writer }, { identityTimeout: 50 })
    const db = fakeDb([writer.id])
    guard.guard(db, new AbortController().signal)
    const own = await Entry.create(writer, ADDRESS, 'mine', undefined, null, [], [])
    assert.equal(await db.access.canAppend(own), true)
    assert.deepEqual(store.asked, [], 'our own identity is never looked up')
    const theirs = await Entry.decode(await entryBytes(other))
    assert.equal(await db.access.canAppend(theirs), false)
    assert.equal(guard.stats['not-a-writer'], 1)
  })

  describe('heads exchanges', () => {
    const protocol = `/orbitdb/heads${ADDRESS}`
    const muxers: Array<{ abort: (err: Error) => void }> = []

    afterEach(() => {
      for (const muxer of muxers.splice(0)) muxer.abort(new Error('the test is over'))
    })

    /** Two ends of one yamux stream over an in-memory connection: `sender` (the peer), `receiver` (ours). */
    async function yamuxStream (): Promise<{ sender: Stream, receiver: Stream }> {
      const [outbound, inbound] = multiaddrConnectionPair()
      // no keep-alive: no round-trip time measured, so the receive window stays at its initial 256 KiB
      const dialer = yamux({ enableKeepAlive: false })().createStreamMuxer(outbound)
      const listener = yamux({ enableKeepAlive: false })().createStreamMuxer(inbound)
      muxers.push(dialer, listener)
      const accepted = raceEvent<CustomEvent<Stream>>(listener, 'stream', AbortSignal.timeout(5_000))
      // announced to the other side by a window update, at once
      const sender = await dialer.createStream({ protocol })
      return { sender, receiver: (await accepted).detail }
    }

    /** Serve the guarded handler with `receiver` and read it as OrbitDB's Sync does; resolves once the exchange is over (rejects after 10 s). */
    async function exchange (receiver: Stream): Promise<{ received: Uint8Array[], failed?: Error }> {
      const out: { received: Uint8Array[], failed?: Error } = { received: [] }
      await libp2p.handle(protocol, async (stream: Stream) => {
        try {
          for await (const chunk of stream) out.received.push(chunk.subarray())
        } catch (err: any) {
          out.failed = err
        }
      })
      // bounded: an exchange that never ends fails here rather than hanging the file
      await raceSignal(libp2p.handlers.get(protocol)(receiver, { remotePeer: peer }), AbortSignal.timeout(10_000))
      return out
    }

    async function send (stream: Stream, chunks: Uint8Array[]): Promise<void> {
      for (const chunk of chunks) {
        if (!stream.send(chunk)) await raceEvent(stream, 'drain', AbortSignal.timeout(5_000), { errorEvent: 'close' })
      }
      await stream.close()
    }

    it('takes the heads that pass, in order, and cuts the exchange at the first one refused', async () => {
      await build()
      const { sender, receiver } = await yamuxStream()
      const [one, two, bad, three] = [await entryBytes(writer, 1), await entryBytes(writer, 2), await entryBytes(other), await entryBytes(writer, 3)]
      const reset = raceEvent(sender, 'close', AbortSignal.timeout(5_000))
      void send(sender, [one, two, bad, three]).catch(() => {})
      const { received, failed } = await exchange(receiver)
      assert.deepEqual(received, [one, two])
      assert.equal(failed?.name, 'HeadsExchangeCutError', 'the exchange fails rather than ending as if complete')
      await reset
      assert.equal(sender.status, 'reset', 'the peer\'s stream is reset')
      assert.deepEqual(rejected.map(r => [r.reason, r.via, r.from]), [['not-a-writer', 'heads', '12D3KooWSender']])
    })

    it('cuts an exchange after `maxRefusedHeads` refused heads', async () => {
      await build({ maxRefusedHeads: 2 })
      const { sender, receiver } = await yamuxStream()
      const good = await entryBytes(writer, 1)
      void send(sender, [await entryBytes(other, 1), good, await entryBytes(other, 2), await entryBytes(writer, 2)]).catch(() => {})
      const { received, failed } = await exchange(receiver)
      assert.deepEqual(received, [good])
      assert.equal(failed?.name, 'HeadsExchangeCutError')
      assert.equal(rejected.length, 2)
    })

    it('cuts heads apart that arrive together and joins a head that arrives in pieces', async () => {
      await build()
      const { sender, receiver } = await yamuxStream()
      const heads = [await entryBytes(writer, 1), await entryBytes(writer, 2), await entryBytes(writer, { op: 'PUT', key: 'big', value: 'x'.repeat(300_000) })]
      const big = heads[2]!
      // two heads in one send; the third (over the receive window) in three
      void send(sender, [concat([heads[0]!, heads[1]!]), big.subarray(0, 10), big.subarray(10, 200_000), big.subarray(200_000)])
      const { received, failed } = await exchange(receiver)
      assert.equal(failed, undefined, 'the exchange ends as complete')
      // not deepEqual: its diff of 300 KB arrays, on failure, takes minutes
      assert.ok(received.length === heads.length && received.every((head, i) => equals(head, heads[i]!)), `received heads of ${received.map(h => h.byteLength).join(', ')} bytes; sent ${heads.map(h => h.byteLength).join(', ')}`)
      assert.deepEqual(rejected, [])
    })

    it('reads with backpressure: while a head is checked, the peer cannot push more than its stream\'s window', async () => {
      // the stranger's identity is published nowhere: each of its heads is checked for `identityTimeout`
      await build({ identityTimeout: 300, fetchTimeout: 300 })
      const { sender, receiver } = await yamuxStream()
      const fat = await entryBytes(stranger, { op: 'PUT', key: 'fat', value: 'x'.repeat(100_000) })
      const refusedOnce = raceEvent(guard, 'entry:rejected', AbortSignal.timeout(5_000))
      const checked = new AbortController()
      void refusedOnce.then(() => { checked.abort() }, () => {})
      const reading = exchange(receiver)
      // as fast as the stream takes them, until the first is refused
      let sent = 0
      try {
        for (let i = 0; i < 200 && !checked.signal.aborted; i++) {
          sent += fat.byteLength
          if (!sender.send(fat)) await raceEvent(sender, 'drain', checked.signal, { errorEvent: 'close' })
        }
      } catch {}
      const delivered = sent - sender.writeBufferLength
      await refusedOnce
      assert.ok(delivered <= 256 * 1024, `${delivered} bytes left the peer while its first head was checked`)
      assert.equal((await reading).failed?.name, 'HeadsExchangeCutError')
    })

    it('cuts an exchange that sends bytes that are not a head, or announces one over the size limit, without reading it', async () => {
      await build()
      const garbage = await yamuxStream()
      void send(garbage.sender, [new Uint8Array([0xff, 0x01, 0x02])]).catch(() => {})
      assert.equal((await exchange(garbage.receiver)).failed?.name, 'HeadsExchangeCutError')
      // the head of a CBOR map holding a byte string of 3 MiB: nothing more is waited for
      const huge = await yamuxStream()
      void huge.sender.send(new Uint8Array([0xa1, 0x61, 0x62, 0x5a, 0x00, 0x30, 0x00, 0x00]))
      const t0 = Date.now()
      assert.equal((await exchange(huge.receiver)).failed?.name, 'HeadsExchangeCutError')
      assert.ok(Date.now() - t0 < 1000)
      assert.deepEqual(rejected.map(r => r.reason), ['not-an-entry', 'not-an-entry'])
    })

    it('cuts an exchange beyond `maxHeads` heads', async () => {
      await build({ maxHeads: 2 })
      const { sender, receiver } = await yamuxStream()
      const heads = [await entryBytes(writer, 1), await entryBytes(writer, 2), await entryBytes(writer, 3)]
      void send(sender, heads).catch(() => {})
      const { received, failed } = await exchange(receiver)
      assert.deepEqual(received, heads.slice(0, 2))
      assert.equal(failed?.name, 'HeadsExchangeCutError')
    })

    it('cuts an exchange whose peer keeps OrbitDB waiting for its next head', async () => {
      await build({ headsIdleTimeout: 50 })
      const { sender, receiver } = await yamuxStream()
      const good = await entryBytes(writer)
      // one head, then nothing, for as long as the stream lives
      sender.send(good)
      const t0 = Date.now()
      const { received, failed } = await exchange(receiver)
      assert.ok(Date.now() - t0 < 1000)
      assert.deepEqual(received, [good])
      assert.equal(failed?.name, 'HeadsExchangeCutError')
    })

    it('registers heads protocols with few streams at once per connection; other protocols as asked', async () => {
      libp2p = fakeLibp2p()
      const options: Record<string, unknown> = {}
      libp2p.handle = async (protocol: string, _handler: unknown, opts: unknown) => { options[protocol] = opts }
      guard = new EntryGuard({ ipfs: {} as any, identities, libp2p, storage: store })
      guard.start()
      await libp2p.handle(protocol, async () => {})
      await libp2p.handle('/orbitdb/heads/orbitdb/zdpuOther', async () => {}, { maxInboundStreams: 2 })
      await libp2p.handle('/other/1.0.0', async () => {}, { maxInboundStreams: 64 })
      assert.deepEqual(options[protocol], { maxInboundStreams: MAX_HEADS_STREAMS, maxOutboundStreams: MAX_HEADS_STREAMS })
      assert.deepEqual(options['/orbitdb/heads/orbitdb/zdpuOther'], { maxInboundStreams: 2, maxOutboundStreams: MAX_HEADS_STREAMS }, 'what the caller asks for wins')
      assert.deepEqual(options['/other/1.0.0'], { maxInboundStreams: 64 })
    })

    it('filters the heads exchanges OrbitDB dials too, off its queue, and passes other protocols and unguarded databases untouched', async () => {
      const good = await entryBytes(writer)
      const bad = await entryBytes(stranger)
      libp2p = fakeLibp2p()
      // the heads that pass a dialed exchange come as updates of the database (as pubsub messages)
      const delivered: Array<{ topic: string, data: Uint8Array }> = []
      let arrived = (): void => {}
      const deliveredOne = new Promise<void>(resolve => { arrived = resolve })
      libp2p.services.pubsub.dispatchEvent = (evt: CustomEvent) => { delivered.push(evt.detail); arrived(); return true }
      const dials: string[] = []
      // the peer answers every dial with a good head, then a bad one
      libp2p.dialProtocol = async (_peer: unknown, dialed: string) => {
        dials.push(dialed)
        const { sender, receiver } = await yamuxStream()
        void send(sender, [good, bad]).catch(() => {})
        return Object.assign(receiver, { protocol: dialed })
      }
      guard = new EntryGuard({ ipfs: {} as any, identities, libp2p, storage: store }, { identityTimeout: 50 })
      guard.start()
      guard.guard(fakeDb([writer.id]), new AbortController().signal)
      const read = async (stream: any): Promise<{ heads: Uint8Array[], failed?: string }> => {
        const heads: Uint8Array[] = []
        try {
          for await (const c of stream) heads.push(c.subarray())
        } catch (err: any) {
          return { heads, failed: err.name }
        }
        return { heads }
      }
      // OrbitDB reads nothing from the exchange it dialed, so its queue goes on at once
      assert.deepEqual(await read(await libp2p.dialProtocol(peer, protocol)), { heads: [] })
      await deliveredOne
      assert.deepEqual(delivered.map(d => [d.topic, d.data]), [[ADDRESS, good]], 'the good head, not the bad one')
      assert.deepEqual(await read(await libp2p.dialProtocol(peer, '/orbitdb/heads/orbitdb/zdpuNotGuarded')), { heads: [good, bad] })
      assert.deepEqual(await read(await libp2p.dialProtocol(peer, '/other/1.0.0')), { heads: [good, bad] })
      assert.equal(dials.length, 3)
      await guard.stop()
      assert.equal(Object.prototype.hasOwnProperty.call(libp2p, 'dialProtocol'), true, 'its own method is put back')
      assert.deepEqual(await read(await libp2p.dialProtocol(peer, protocol)), { heads: [good, bad] }, 'nothing is filtered after stop()')
    })
  })

  it('finds where a CBOR item ends, or how much more it needs, without decoding it', async () => {
    const one = await entryBytes(writer, 1)
    const two = await entryBytes(writer, { op: 'PUT', key: 'k', value: 'x'.repeat(70_000) })
    assert.deepEqual(cborItemEnd(one, MAX_REMOTE_ENTRY_BYTES), { end: one.byteLength })
    assert.deepEqual(cborItemEnd(concat([one, two]), MAX_REMOTE_ENTRY_BYTES), { end: one.byteLength })
    for (const cut of [1, 20, two.byteLength - 1]) {
      const item = cborItemEnd(two.subarray(0, cut), MAX_REMOTE_ENTRY_BYTES)
      assert.ok('need' in item && item.need > cut && item.need <= two.byteLength, `${cut} bytes: ${JSON.stringify(item)}`)
    }
    assert.throws(() => cborItemEnd(two, 1000), { name: 'HeadFramingError' })
    // an indefinite-length map: never in dag-cbor
    assert.throws(() => cborItemEnd(new Uint8Array([0xbf, 0xff]), 1000), { name: 'HeadFramingError' })
    // an array announcing 2^32 items in 5 bytes
    assert.throws(() => cborItemEnd(new Uint8Array([0x9a, 0xff, 0xff, 0xff, 0xff]), 1000), { name: 'HeadFramingError' })
  })
})
