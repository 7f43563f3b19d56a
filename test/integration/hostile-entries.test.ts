/**
 * Log entries from strangers (issue 10, finding 2). Anyone who knows a
 * catalog's address can publish on its gossipsub topic or open OrbitDB's
 * heads protocol for it; OrbitDB looked each entry's identity up over
 * bitswap (30 s) inside the database's one queue, the one the owner's own
 * `addNewPiece` waits in, and that queue had no bound: writes took up to
 * 28 s, nothing completed for 65 s through the heads protocol, memory grew
 * and `stop()` hung. Here the attacker signs entries with a throwaway
 * identity published nowhere, so looking it up can only time out.
 */
import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { Entry } from '@orbitdb/core'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import { peer, befriend, until, nextEvent } from '../helpers/peers.ts'
import { throwaway, junk } from '../helpers/junk.ts'
import type { NewPiecePlease } from '../../src/index.ts'

/** Each write of the owner, whatever strangers send meanwhile (a stall took 28 s). */
const WRITE_BOUND = 2000
/** `stop()` while strangers send (it hung for over 60 s). */
const STOP_BOUND = 5000
const WRITES = 5

/** Resolve once `who`'s gossipsub knows `subscriber` is subscribed to `topic`. */
async function seesSubscriber (who: NewPiecePlease, topic: string, subscriber: string, ms = 10_000): Promise<void> {
  const pubsub = who.libp2p.services.pubsub as any
  const has = (): boolean => pubsub.getSubscribers(topic).some((p: any) => p.toString() === subscriber)
  if (has()) return
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { pubsub.removeEventListener('subscription-change', check); reject(new Error(`${subscriber} not seen on ${topic} within ${ms} ms`)) }, ms)
    const check = (): void => {
      if (!has()) return
      clearTimeout(timer)
      pubsub.removeEventListener('subscription-change', check)
      resolve()
    }
    pubsub.addEventListener('subscription-change', check)
  })
}

/** Run `send` again and again (paced, not waited on) until the returned stop is called. */
function loop (send: (i: number) => Promise<void>): () => Promise<void> {
  const state = { stopped: false }
  const running = (async () => {
    for (let i = 0; !state.stopped; i++) {
      await send(i).catch(() => {})
      await new Promise(resolve => setTimeout(resolve, 5))
    }
  })()
  return async () => { state.stopped = true; await running }
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
async function writes (owner: NewPiecePlease, tag: string): Promise<number[]> {
  const took: number[] = []
  for (let i = 0; i < WRITES; i++) {
    const t0 = Date.now()
    await within(WRITE_BOUND, `write ${i + 1} of ${WRITES}`, owner.addNewPiece(`Qm${tag}${i}`, 'Hurdy-gurdy'))
    took.push(Date.now() - t0)
  }
  return took
}

/** `who` has every piece `owner` wrote with `tag` in its replica of `owner`'s catalog. */
async function received (who: NewPiecePlease, owner: NewPiecePlease, tag: string): Promise<void> {
  const count = async (): Promise<number> => (await who.queryCatalog({ instrument: 'Hurdy-gurdy' }, { timeout: 2000 })).results.filter(r => r.owner === owner.peerId && r.hash.startsWith(`Qm${tag}`)).length
  await until(who, 'catalog:update', async () => await count() === WRITES, 10_000)
}

async function stopsWithin (npp: NewPiecePlease): Promise<void> {
  const t0 = Date.now()
  await within(STOP_BOUND, 'stop()', npp.stop())
  assert.ok(Date.now() - t0 < STOP_BOUND)
}

function rejected (npp: NewPiecePlease): number {
  return Object.values(npp.stats.entriesRejected ?? {}).reduce((a, b) => a + b, 0)
}

describe('hostile log entries', () => {
  let honest: NewPiecePlease, attacker: NewPiecePlease
  let strangers: any[]

  before(async () => {
    [honest, attacker] = await Promise.all([peer({ username: 'honest' }), peer({ username: 'attacker' })])
    strangers = await Promise.all([throwaway('stranger-1'), throwaway('stranger-2'), throwaway('stranger-3')])
  })

  it('entries from a stranger on the catalog topic are refused before they can block the owner\'s writes, and are not forwarded', async () => {
    const victim = await peer({ username: 'victim' })
    await befriend(victim, honest)
    await attacker.connectToPeer(victim.getMultiaddrs()[0]!)
    const catalog = victim.databases.pieces.address
    await seesSubscriber(attacker, catalog, victim.peerId)
    const entries = await junk(strangers, catalog, 300)
    const pubsub = attacker.libp2p.services.pubsub
    const refused = nextEvent(victim, 'entry:rejected', d => d.address === catalog && d.via === 'pubsub' && d.reason === 'unknown-identity', 10_000)
    refused.catch(() => {})
    const stop = loop(async (i) => { await pubsub.publish(catalog, entries[i % entries.length]!) })
    try {
      const took = await writes(victim, 'Topic')
      assert.ok(took.every(ms => ms < WRITE_BOUND), `writes took ${took.join(', ')} ms`)
      await received(honest, victim, 'Topic')
      await refused
    } finally {
      await stop()
    }
    assert.ok(rejected(victim) > 0, `counted: ${JSON.stringify(victim.stats.entriesRejected)}`)
    assert.equal(rejected(honest), 0, 'nothing was forwarded to the honest companion')
    await stopsWithin(victim)
  })

  it('heads sent over OrbitDB\'s heads protocol, both ways, never stall the owner\'s writes', async () => {
    const victim = await peer({ username: 'victim-2' })
    await befriend(victim, honest)
    await attacker.connectToPeer(victim.getMultiaddrs()[0]!)
    const catalog = victim.databases.pieces.address
    const protocol = `/orbitdb/heads${catalog}`
    const entries = await junk(strangers, catalog, 200, 'head')
    const sendAll = async (stream: Stream): Promise<void> => {
      for (const bytes of entries) {
        if (!stream.send(bytes)) await stream.onDrain()
      }
    }
    // the victim dials us when it sees us subscribe: we answer with junk heads
    await attacker.libp2p.handle(protocol, async (stream) => { await sendAll(stream).catch(() => {}) }, { force: true })
    await attacker.libp2p.services.pubsub.subscribe(catalog)
    // and we dial the victim, again and again, with junk heads
    const victimId = peerIdFromString(victim.peerId)
    const refused = nextEvent(victim, 'entry:rejected', d => d.address === catalog && d.via === 'heads', 10_000)
    refused.catch(() => {})
    const stop = loop(async () => {
      const stream = await attacker.libp2p.dialProtocol(victimId, protocol)
      await sendAll(stream)
    })
    try {
      const took = await writes(victim, 'Heads')
      assert.ok(took.every(ms => ms < WRITE_BOUND), `writes took ${took.join(', ')} ms`)
      await received(honest, victim, 'Heads')
      await refused
    } finally {
      await stop()
      attacker.libp2p.services.pubsub.unsubscribe(catalog)
      await attacker.libp2p.unhandle(protocol)
    }
    assert.ok(rejected(victim) > 0, `counted: ${JSON.stringify(victim.stats.entriesRejected)}`)
    await stopsWithin(victim)
  })

  it('an entry that names the owner\'s identity but is signed with another key is refused', async () => {
    const victim = await peer({ username: 'victim-3' })
    await befriend(victim, honest)
    await attacker.connectToPeer(victim.getMultiaddrs()[0]!)
    const catalog = victim.databases.pieces.address
    await seesSubscriber(attacker, catalog, victim.peerId)
    // OrbitDB checks the identity an entry names and, apart, the signature
    // against the key the entry carries: it never checks that they belong together
    const stranger = strangers[0]
    const value = { hash: 'QmForged', instrument: 'Kazoo' }
    const forged = await Entry.create({ ...stranger, hash: victim.orbitdb.identity.hash }, catalog, { op: 'PUT', key: value.hash, value }, undefined, { id: stranger.publicKey, time: 1 }, [], [])
    const { bytes } = await Entry.encode(forged)
    const refused = nextEvent(victim, 'entry:rejected', d => d.address === catalog && d.reason === 'bad-signature', 10_000)
    const landed = until(victim, 'catalog:update', async () => await victim.getPieceByHash('QmForged') != null, 10_000)
    landed.catch(() => {})
    await attacker.libp2p.services.pubsub.publish(catalog, bytes)
    await Promise.race([refused, landed])
    assert.equal(await victim.getPieceByHash('QmForged'), undefined, 'the forgery is not in the owner\'s own catalog')
    // the owner's own writes still go out
    await victim.addNewPiece('QmAfterForgery', 'Hurdy-gurdy')
    await until(honest, 'catalog:update', async () => (await honest.queryCatalog({ hash: 'QmAfterForgery' })).results.length === 1, 10_000)
    assert.equal((await honest.queryCatalog({ hash: 'QmForged' })).results.length, 0, 'the forgery did not reach the companion')
  })
})
