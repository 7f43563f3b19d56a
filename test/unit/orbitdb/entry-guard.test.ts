import { describe, it, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { Entry, Identities, KeyStore, MemoryStorage } from '@orbitdb/core'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { EntryGuard, type EntryGuardInit } from '../../../src/orbitdb/entry-guard.ts'
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

  it('takes refused heads out of a heads exchange before OrbitDB reads them, and cuts an exchange that sends too many', async () => {
    await build({ maxRefusedHeads: 3 })
    const protocol = `/orbitdb/heads${ADDRESS}`
    const received: Uint8Array[] = []
    let failed: Error | undefined
    // as OrbitDB's Sync reads them (an exchange that fails is an `error` event there)
    await libp2p.handle(protocol, async (stream: any) => {
      try {
        for await (const chunk of stream) received.push(chunk.subarray())
      } catch (err: any) {
        failed = err
      }
    })
    const good = await entryBytes(writer)
    const bad = await entryBytes(other)
    let aborted: Error | undefined
    const stream = {
      protocol,
      sent: [] as Uint8Array[],
      send (bytes: Uint8Array) { this.sent.push(bytes); return true },
      abort (err: Error) { aborted = err },
      async * [Symbol.asyncIterator] () { for (const chunk of [bad, good, bad, bad, good]) yield { subarray: () => chunk } }
    }
    await libp2p.handlers.get(protocol)(stream, { remotePeer: peer })
    assert.deepEqual(received, [good], 'the good head before the third refused one')
    assert.equal(aborted?.name, 'HeadsExchangeCutError')
    assert.equal(failed, aborted, 'the exchange fails rather than ending as if complete')
    assert.ok(rejected.every(r => r.via === 'heads' && r.from === '12D3KooWSender'))
    // the stream's other methods still reach the stream
    const wrapped: any = []
    await libp2p.handle('/other/1.0.0', async (s: any) => { wrapped.push(s) })
    await libp2p.handlers.get('/other/1.0.0')(stream, { remotePeer: peer })
    assert.equal(wrapped[0], stream, 'other protocols pass untouched')
  })
  it('cuts a heads exchange whose peer keeps OrbitDB waiting for its next head', async () => {
    await build({ headsIdleTimeout: 50 })
    const protocol = `/orbitdb/heads${ADDRESS}`
    let failed: Error | undefined
    const received: unknown[] = []
    await libp2p.handle(protocol, async (stream: any) => {
      try {
        for await (const chunk of stream) received.push(chunk)
      } catch (err: any) {
        failed = err
      }
    })
    const good = await entryBytes(writer)
    let aborted: Error | undefined
    let release = (): void => {}
    const stream = {
      protocol,
      abort (err: Error) { aborted = err; release() },
      async * [Symbol.asyncIterator] () {
        yield { subarray: () => good }
        // then nothing, for as long as the stream lives
        await new Promise<void>(resolve => { release = resolve })
      }
    }
    const t0 = Date.now()
    await libp2p.handlers.get(protocol)(stream, { remotePeer: peer })
    assert.ok(Date.now() - t0 < 1000)
    assert.equal(received.length, 1)
    assert.equal(aborted?.name, 'HeadsExchangeCutError')
    assert.equal(failed?.name, 'HeadsExchangeCutError')
  })

  it('filters the heads exchanges OrbitDB dials too, and passes other protocols and unguarded databases untouched', async () => {
    const good = await entryBytes(writer)
    const bad = await entryBytes(stranger)
    const streamOf = (protocol: string): any => ({
      protocol,
      abort () {},
      async * [Symbol.asyncIterator] () { for (const chunk of [bad, good]) yield { subarray: () => chunk } }
    })
    libp2p = fakeLibp2p()
    const dials: string[] = []
    libp2p.dialProtocol = async (_peer: unknown, protocol: string) => { dials.push(protocol); return streamOf(protocol) }
    guard = new EntryGuard({ ipfs: {} as any, identities, libp2p, storage: store }, { identityTimeout: 50 })
    guard.start()
    guard.guard(fakeDb([writer.id]), new AbortController().signal)
    const read = async (stream: any): Promise<Uint8Array[]> => { const out: Uint8Array[] = []; for await (const c of stream) out.push(c.subarray()); return out }
    assert.deepEqual(await read(await libp2p.dialProtocol(peer, `/orbitdb/heads${ADDRESS}`)), [good])
    assert.deepEqual(await read(await libp2p.dialProtocol(peer, '/orbitdb/heads/orbitdb/zdpuNotGuarded')), [bad, good])
    assert.deepEqual(await read(await libp2p.dialProtocol(peer, '/other/1.0.0')), [bad, good])
    assert.equal(dials.length, 3)
    await guard.stop()
    assert.equal(Object.prototype.hasOwnProperty.call(libp2p, 'dialProtocol'), true, 'its own method is put back')
    assert.deepEqual(await read(await libp2p.dialProtocol(peer, `/orbitdb/heads${ADDRESS}`)), [bad, good], 'nothing is filtered after stop()')
  })
})
