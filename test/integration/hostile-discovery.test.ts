import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import * as Block from 'multiformats/block'
import * as dagCbor from '@ipld/dag-cbor'
import { sha256 } from 'multiformats/hashes/sha2'
import { base58btc } from 'multiformats/bases/base58'
import { join } from 'node:path'
import { createNewPiecePlease, type NewPiecePlease, type Companion } from '../../src/index.ts'
import { peer, nextEvent, tempDir, LOOPBACK } from '../helpers/peers.ts'
import { attacker as rawAttacker, announcement, publishAs, publishTo, seesSubscriber, type Attacker } from '../helpers/attacker.ts'
import { Target, memoryAcross, describeMemory, assertMemory, type MemoryBounds } from '../helpers/attacker-target.ts'

/** A well-formed user-db address whose blocks nobody has: verifying it stalls until the time limit. */
async function ghost (name: string): Promise<string> {
  const { cid } = await Block.encode({ value: { name, type: 'keyvalue', accessController: '/ipfs/nothing' }, codec: dagCbor, hasher: sha256 })
  return `/orbitdb/${cid.toString(base58btc)}`
}

/**
 * Finding 3: how far the victim's RSS may rise while it refuses 4 sybils
 * (each a verification: a user db opened, read and closed), and how much
 * more it may hold after (heap and buffers, after a GC). Measured: RSS
 * +0-1 MB, held +0-2 MB. The bounds guard against refused profiles whose
 * databases stay open (before the fix each sybil became a companion with a
 * replica and a redial), with room for a GC's timing.
 */
const SYBIL_MEMORY: MemoryBounds = { peak: 40, held: 15 }
/**
 * Finding 4: 400 announcements of stalling user dbs signed with 400 fresh
 * keys over one connection, each dropped before any work (rate-limited or
 * forwarded). Measured: RSS +1 MB, held +3 MB. Before the fix each could
 * become a verification waiting `discoveryTimeout` on a bitswap want.
 */
const FLOOD_MEMORY: MemoryBounds = { peak: 40, held: 15 }

/**
 * Discovery under attack (issue 10, findings 3 and 4): limits keyed on what
 * an attacker cannot choose cheaply (the neighbour that delivered a message,
 * the OrbitDB identity behind a profile), not on the key that signed it. The
 * attacker is raw libp2p/Helia/OrbitDB (test/helpers/attacker.ts), the
 * victim an honest peer in its own process (test/helpers/attacker-target.ts).
 */
describe('hostile discovery', () => {
  describe('sybil companions: one OrbitDB identity behind many peer ids', () => {
    let victim: Target, attacker: Attacker

    before(async () => {
      [victim, attacker] = await Promise.all([Target.start({ username: 'victim' }), rawAttacker()])
      // the attacker is a companion first, by hand: catalog, profile, announcement
      const recorded = await victim.watch('db:discovered', { nodeId: attacker.peerId })
      await attacker.dial(victim.addr)
      await attacker.announce(victim.peerId)
      await recorded.event
    })

    it('records one companion per identity, whatever number of peers announce it (finding 3)', async (t) => {
      const { catalog } = await attacker.companionDbs()
      // lightweight nodes, each directly connected to the victim and announcing
      // a profile of its own peer id (with a proof signed by its own key), all
      // written by the attacker's identity and pointing at the attacker's catalog
      const count = 4
      const sybils = await Promise.all(Array.from({ length: count }, async () => await attacker.node()))
      const ids = sybils.map(s => s.libp2p.peerId.toString())
      const before = (await victim.stats()).messagesDropped['duplicate-identity']
      const memory = await memoryAcross(victim, async () => {
        // each sybil's outcome: recorded, or dropped with a reason
        const outcomes = await Promise.all(sybils.map(async ({ libp2p: node, privateKey }, i) => {
          const id = node.peerId.toString()
          const recorded = await victim.watch('db:discovered', { nodeId: id })
          const dropped = await victim.watch('message:dropped', { from: id })
          const profile = await attacker.profile(`sybil-${i}`, { nodeId: id, pieces: catalog.address, key: privateKey })
          await node.dial(multiaddr(victim.addr))
          await publishTo(node.services.pubsub, victim.peerId, victim.peerId, announcement(profile.address))
          return await Promise.race([recorded.event.then(() => 'recorded'), dropped.event.then(d => d.reason)])
        }))
        return outcomes
      })
      t.diagnostic(describeMemory(memory))
      const outcomes = memory.result
      const same = (await victim.call<Companion[]>('getCompanions')).filter(c => c.pieces === catalog.address)
      assert.deepEqual(same.map(c => c.nodeId), [attacker.peerId], `one companion for the attacker's identity (sybils: ${outcomes.join(', ')})`)
      assert.deepEqual(outcomes, ids.map(() => 'duplicate-identity'))
      assert.equal((await victim.stats()).messagesDropped['duplicate-identity'], before + count)
      assertMemory(memory, SYBIL_MEMORY)
    })

    it('a register that already holds several companions of one identity keeps one of them at the next start', async () => {
      const { catalog } = await attacker.companionDbs()
      const dir = join(await tempDir(), 'victim')
      let npp = await createNewPiecePlease({ directory: dir, listen: LOOPBACK, username: 'victim' })
      try {
        const recorded = nextEvent(npp, 'db:discovered', c => c.nodeId === attacker.peerId)
        await attacker.dial(npp.getMultiaddrs()[0]!)
        await attacker.announce(npp.peerId)
        await recorded
        // as an older version recorded them: peer ids of the finding's kind, all
        // with the attacker's catalog, seen long ago
        for (let i = 0; i < 3; i++) {
          const nodeId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
          await npp.databases.companions.put(await ghost(`old-sybil-${i}`), { nodeId, pieces: catalog.address, username: 'sybil', multiaddrs: [], lastSeen: i + 1 })
        }
      } finally {
        await npp.stop()
      }
      npp = await createNewPiecePlease({ directory: dir, listen: LOOPBACK })
      try {
        assert.deepEqual((await npp.getCompanions()).map(c => c.nodeId), [attacker.peerId])
      } finally {
        await npp.stop()
      }
      npp = await createNewPiecePlease({ directory: dir, listen: LOOPBACK })
      try {
        assert.deepEqual((await npp.getCompanions()).map(c => c.nodeId), [attacker.peerId], 'and forgotten on disk')
      } finally {
        await npp.stop()
      }
    })
  })

  describe('discovery starvation: a flood of announcements from one neighbour', () => {
    let victim: Target, flooder: Attacker, honest: NewPiecePlease

    before(async () => {
      [victim, flooder, honest] = await Promise.all([
        // each stalling user db holds a verification slot for 5 s
        Target.start({ username: 'victim', discoveryTimeout: 5000 }),
        rawAttacker({ username: 'flooder' }),
        peer({ username: 'honest' })
      ])
      // a neighbour of the victim, nothing more: connected and seeing its topic
      await flooder.dial(victim.addr)
      await seesSubscriber(flooder.pubsub, victim.peerId, victim.peerId)
    })

    /** Publish one announcement of a stalling user db per fresh key, signed with that key, over the flooder's connection. */
    async function flood (count: number, offset: number): Promise<string[]> {
      const signers: string[] = []
      for (let i = 0; i < count; i++) {
        const privateKey = await generateKeyPair('Ed25519')
        signers.push(peerIdFromPrivateKey(privateKey).toString())
        await publishAs(flooder.pubsub, privateKey, victim.peerId, announcement(await ghost(`flood-${offset + i}`)))
      }
      return signers
    }

    it('an honest peer connecting during the flood becomes a companion, and the flood is charged to the flooder\'s connection (finding 4)', async (t) => {
      const received = (await victim.stats()).messagesReceived
      const memory = await memoryAcross(victim, async () => {
        const first = await flood(100, 0)
        // the honest peer connects and its announcement reaches the victim mid-flood
        const announced = await victim.watch('message', { from: honest.peerId }, 10_000)
        const recorded = await victim.watch('db:discovered', { nodeId: honest.peerId }, 12_000)
        await honest.connectToPeer(victim.addr)
        await announced.event
        const second = await flood(300, 100)
        await recorded.event
        // every flood message arrived and none became a verification of its own
        const total = received + first.length + second.length + 1
        await victim.until('message:dropped', async () => (await victim.stats()).messagesReceived >= total, 10_000)
        return new Set([...first, ...second])
      })
      t.diagnostic(describeMemory(memory))
      const signers = memory.result
      assert.ok(!(await victim.call<Companion[]>('getCompanions')).some(c => signers.has(c.nodeId)), 'no forged key is a companion')
      const stats = await victim.stats()
      const { 'rate-limited': limited, forwarded } = stats.messagesDropped
      assert.equal(limited + forwarded, signers.size, 'every forged announcement dropped as rate-limited or forwarded')
      assert.ok(limited >= signers.size / 2, `the flooder's connection is rate-limited (${limited} of ${signers.size})`)
      assert.ok(stats.discoveriesStarted <= 3, `no verification for a forged key (${stats.discoveriesStarted} started)`)
      assertMemory(memory, FLOOD_MEMORY)
    })
  })
})
