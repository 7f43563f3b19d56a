/**
 * Log entries from strangers (issue 10, finding 2). Anyone who knows a
 * catalog's address can publish on its gossipsub topic or open OrbitDB's
 * heads protocol for it; OrbitDB looked each entry's identity up over
 * bitswap (30 s) inside the database's one queue, the one the owner's own
 * `addNewPiece` waits in, and that queue had no bound: writes took up to
 * 28 s, nothing completed for 65 s through the heads protocol, memory grew
 * (169 → 430 MB) and `stop()` hung. Here a raw libp2p/Helia/OrbitDB attacker
 * (test/helpers/attacker.ts) signs entries with throwaway identities
 * published nowhere, so looking them up can only time out; the victim runs
 * in its own process (test/helpers/attacker-target.ts), so the memory
 * measured is its own, and its honest companion in this one.
 */
import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { Entry } from '@orbitdb/core'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { raceEvent } from 'race-event'
import { peer, until, nextEvent } from '../helpers/peers.ts'
import { throwaway, junk } from '../helpers/junk.ts'
import { attacker as rawAttacker, seesSubscriber, peerIdOf, type Attacker } from '../helpers/attacker.ts'
import { Target, memoryAcross, describeMemory, assertMemory, type MemoryBounds } from '../helpers/attacker-target.ts'
import type { NewPiecePlease, NppStats, Piece } from '../../src/index.ts'

/** Each write of the owner, whatever strangers send meanwhile (a stall took 28 s). */
const WRITE_BOUND = 2000
/** `stop()` while strangers send (it hung for over 60 s). */
const STOP_BOUND = 5000
const WRITES = 5
/**
 * The topic test's burst: 1,000 junk entries of 100 KB (100 MB), sent as
 * fast as gossipsub takes them. Before the entry guard each one waited in
 * the database's unbounded queue for its identity (30 s): at c49b9f3 the
 * victim's RSS rose by 125-150 MB and it held 96-98 MB more after a GC
 * (finding 2: 169 → 430 MB over 65 s, and stayed). Since: RSS +54-73 MB
 * (buffers in flight while gossipsub checks them), held -2 to +10 MB once
 * the victim has refused the whole burst. The bounds sit between.
 */
const BURST = { entries: 1000, padding: 50_000 }
const BURST_MEMORY: MemoryBounds = { peak: 110, held: 40 }
/**
 * The heads test: fat junk heads (100 KB each, signed by 40 identities
 * published nowhere) over OrbitDB's heads protocol, pushed for `FLOOD_MS` as
 * fast as the victim takes them, over `FLOOD.connections` connections with
 * `FLOOD.streams` exchanges at once on each (libp2p's default limit per
 * protocol), and in the exchange the victim dials itself when it sees the
 * attacker subscribe. At 13a0e34 the attacker pushed 2.3-2.9 GB in 112-138
 * exchanges (libp2p's stream iterator queued whatever arrived while the
 * guard checked a head, and yamux kept granting window): the victim's RSS
 * rose by 1,150-1,380 MB and it held +6 to +239 MB after a GC. Since the
 * guard reads one head at a time with the stream paused, cuts an exchange
 * at its first refused head and takes 4 exchanges at once per connection:
 * 240-445 MB pushed in 7,300-10,300 exchanges (most refused or cut at once,
 * each costing its stream's first window), RSS +45-78 MB, held -3 to -1 MB.
 * The bounds sit between.
 */
const FLOOD = { heads: 40, padding: 50_000, connections: 3, streams: 32 }
const FLOOD_MS = 6000
const HEADS_MEMORY: MemoryBounds = { peak: 120, held: 20 }

/** Run `send` again and again (paced, not waited on) until the returned stop is called; resolves to the sends made. */
function loop (send: (i: number) => Promise<void>): () => Promise<number> {
  const state = { stopped: false, sent: 0 }
  const running = (async () => {
    for (let i = 0; !state.stopped; i++) {
      await send(i).then(() => { state.sent++ }, () => {})
      // a pause that lets the victim's answers in between; the flood is not the point here
      await new Promise(resolve => setTimeout(resolve, 5))
    }
  })()
  return async () => { state.stopped = true; await running; return state.sent }
}

async function within<T> (ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([work, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what} took over ${ms} ms`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/** The owner writes `WRITES` pieces, each within `WRITE_BOUND`; resolves with their durations. */
async function writes (owner: Target, tag: string): Promise<number[]> {
  const took: number[] = []
  for (let i = 0; i < WRITES; i++) {
    const t0 = Date.now()
    await within(WRITE_BOUND, `write ${i + 1} of ${WRITES}`, owner.call('addNewPiece', `Qm${tag}${i}`, 'Hurdy-gurdy'))
    took.push(Date.now() - t0)
  }
  return took
}

/** `who` has every piece `owner` wrote with `tag` in its replica of `owner`'s catalog. */
async function received (who: NewPiecePlease, owner: Target, tag: string): Promise<void> {
  const count = async (): Promise<number> => (await who.queryCatalog({ instrument: 'Hurdy-gurdy' }, { timeout: 2000 })).results.filter(r => r.owner === owner.peerId && r.hash.startsWith(`Qm${tag}`)).length
  await until(who, 'catalog:update', async () => await count() === WRITES, 10_000)
}

async function stopsWithin (target: Target): Promise<void> {
  const took = await target.stop(STOP_BOUND)
  assert.ok(took < STOP_BOUND, `stop() took ${took} ms`)
}

function rejected (stats: NppStats): number {
  return Object.values(stats.entriesRejected ?? {}).reduce((a, b) => a + b, 0)
}

describe('hostile log entries', () => {
  let honest: NewPiecePlease, attacker: Attacker
  let strangers: any[]

  before(async () => {
    [honest, attacker] = await Promise.all([peer({ username: 'honest' }), rawAttacker()])
    strangers = await Promise.all([throwaway('stranger-1'), throwaway('stranger-2'), throwaway('stranger-3')])
  })

  /** A fresh victim, the honest peer's companion, with the attacker connected to it; resolves to its catalog's address. */
  async function victimOf (username: string): Promise<{ victim: Target, catalog: string }> {
    const victim = await Target.start({ username })
    const victimSees = await victim.watch('db:discovered', { nodeId: honest.peerId })
    const honestSees = nextEvent(honest, 'db:discovered', c => c.nodeId === victim.peerId)
    await honest.connectToPeer(victim.addr)
    await Promise.all([victimSees.event, honestSees])
    await attacker.dial(victim.addr)
    return { victim, catalog: await victim.prop<string>('databases.pieces.address') }
  }

  it('entries from a stranger on the catalog topic are refused before they can block the owner\'s writes or hold its memory, and are not forwarded', async (t) => {
    const { victim, catalog } = await victimOf('victim')
    await seesSubscriber(attacker.pubsub, catalog, victim.peerId)
    // a burst of fat entries, as fast as gossipsub takes them
    const burst = await junk(strangers, catalog, BURST.entries, 'x'.repeat(BURST.padding))
    // the victim refuses each entry once (unknown identity, or busy): when it has, it is through
    const through = await victim.watch('entry:rejected', { address: catalog, via: 'pubsub' }, 15_000, burst.length)
    const memory = await memoryAcross(victim, async () => {
      for (const bytes of burst) await attacker.pubsub.publish(catalog, bytes)
      // not fatal here: before the guard nothing is refused, and memory is measured all the same
      return await through.event.then(() => true, () => false)
    })
    t.diagnostic(`${burst.length} junk entries of ${burst[0]!.byteLength} bytes: ${describeMemory(memory)}`)
    assertMemory(memory, BURST_MEMORY)
    assert.ok(memory.result, `the victim refused each of the ${burst.length} entries of the burst`)

    // then small ones, paced, while the owner writes
    const entries = await junk(strangers, catalog, 300)
    const refused = await victim.watch('entry:rejected', { address: catalog, via: 'pubsub', reason: 'unknown-identity' }, 10_000)
    const stop = loop(async (i) => { await attacker.pubsub.publish(catalog, entries[i % entries.length]!) })
    try {
      const took = await writes(victim, 'Topic')
      assert.ok(took.every(ms => ms < WRITE_BOUND), `writes took ${took.join(', ')} ms`)
      await received(honest, victim, 'Topic')
      await refused.event
    } finally {
      t.diagnostic(`${await stop()} junk entries published while the owner wrote`)
    }
    assert.ok(rejected(await victim.stats()) > 0, `counted: ${JSON.stringify((await victim.stats()).entriesRejected)}`)
    assert.equal(rejected(honest.stats), 0, 'nothing was forwarded to the honest companion')
    await stopsWithin(victim)
  })

  it('fat heads pushed over OrbitDB\'s heads protocol, both ways and many at once, never stall the owner\'s writes or hold its memory', async (t) => {
    const { victim, catalog } = await victimOf('victim-2')
    const protocol = `/orbitdb/heads${catalog}`
    const signers = await Promise.all(Array.from({ length: FLOOD.heads }, async (_, i) => await throwaway(`flooder-${i}`)))
    const heads = await junk(signers, catalog, FLOOD.heads, 'x'.repeat(FLOOD.padding))
    const pushed = { exchanges: 0, heads: 0 }
    const flooding = new AbortController()
    // the flood's end: `FLOOD_MS` after it starts, or a failure
    let over = flooding.signal
    /** Push the fat heads into `stream` until the victim ends it or the flood is over. */
    const push = async (stream: Stream): Promise<void> => {
      pushed.exchanges++
      try {
        for (let i = 0; !over.aborted && stream.status === 'open'; i = (i + 1) % heads.length) {
          // not `onDrain()`: in @libp2p/utils 7.4 it resolves at once after the first drain (its promise is never renewed)
          if (!stream.send(heads[i]!)) await raceEvent(stream, 'drain', over, { errorEvent: 'close' })
          pushed.heads++
        }
      } catch {
        // the victim cut the exchange, or the flood is over
      } finally {
        if (stream.status === 'open') stream.abort(new Error('the flood is over'))
      }
    }
    // the victim dials us when it sees us subscribe: we answer with fat heads
    await attacker.libp2p.handle(protocol, push, { force: true })
    // and we dial the victim, from several connections, several exchanges at once on each
    const nodes = [attacker.libp2p, ...(await Promise.all(Array.from({ length: FLOOD.connections - 1 }, async () => (await attacker.node()).libp2p)))]
    await Promise.all(nodes.map(async node => await node.dial(multiaddr(victim.addr))))
    const victimId = peerIdOf(victim.peerId)
    // the same writes, on the same machine at the same moment, before the flood
    const calm = await writes(victim, 'Calm')
    const refused = await victim.watch('entry:rejected', { address: catalog, via: 'heads' }, 10_000)
    const memory = await memoryAcross(victim, async () => {
      over = AbortSignal.any([flooding.signal, AbortSignal.timeout(FLOOD_MS)])
      const flood = Promise.all(nodes.flatMap(node => Array.from({ length: FLOOD.streams }, async () => {
        while (!over.aborted) {
          const stream = await node.dialProtocol(victimId, protocol, { signal: over }).catch(() => undefined)
          if (stream != null) await push(stream)
          // a dial refused at once must not become a loop that never yields
          else await new Promise(resolve => setImmediate(resolve))
        }
      })))
      attacker.pubsub.subscribe(catalog)
      try {
        await refused.event
        const took = await writes(victim, 'Heads')
        t.diagnostic(`the owner's writes took ${took.join(', ')} ms under the flood, ${calm.join(', ')} ms before it`)
        assert.ok(took.every(ms => ms < WRITE_BOUND), `writes took ${took.join(', ')} ms`)
        await received(honest, victim, 'Heads')
      } catch (err) {
        flooding.abort()
        throw err
      } finally {
        await flood
        attacker.pubsub.unsubscribe(catalog)
        await attacker.libp2p.unhandle(protocol)
        t.diagnostic(`${pushed.heads} heads of ${heads[0]!.byteLength} bytes (${(pushed.heads * heads[0]!.byteLength / 1024 / 1024).toFixed(0)} MB) handed to ${pushed.exchanges} exchanges over ${nodes.length} connections`)
      }
    })
    t.diagnostic(describeMemory(memory))
    assert.ok(rejected(await victim.stats()) > 0, `counted: ${JSON.stringify((await victim.stats()).entriesRejected)}`)
    assertMemory(memory, HEADS_MEMORY)
    await stopsWithin(victim)
  })

  it('an entry that names the owner\'s identity but is signed with another key is refused', async () => {
    const { victim, catalog } = await victimOf('victim-3')
    await seesSubscriber(attacker.pubsub, catalog, victim.peerId)
    // OrbitDB checks the identity an entry names and, apart, the signature
    // against the key the entry carries: it never checks that they belong together
    const stranger = strangers[0]
    const value = { hash: 'QmForged', instrument: 'Kazoo' }
    const ownerIdentity = await victim.prop<string>('orbitdb.identity.hash')
    const forged = await Entry.create({ ...stranger, hash: ownerIdentity }, catalog, { op: 'PUT', key: value.hash, value }, undefined, { id: stranger.publicKey, time: 1 }, [], [])
    const { bytes } = await Entry.encode(forged)
    const refused = await victim.watch('entry:rejected', { address: catalog, reason: 'bad-signature' }, 10_000)
    await attacker.pubsub.publish(catalog, bytes)
    const refusal = await refused.event.then(() => 'refused as bad-signature', (err: Error) => err.message)
    assert.equal(await victim.call<Piece | undefined>('getPieceByHash', 'QmForged'), null, 'the forgery is not in the owner\'s own catalog')
    assert.equal(refusal, 'refused as bad-signature')
    // the owner's own writes still go out
    await victim.call('addNewPiece', 'QmAfterForgery', 'Hurdy-gurdy')
    await until(honest, 'catalog:update', async () => (await honest.queryCatalog({ hash: 'QmAfterForgery' })).results.length === 1, 10_000)
    assert.equal((await honest.queryCatalog({ hash: 'QmForged' })).results.length, 0, 'the forgery did not reach the companion')
  })
})
