import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { KeyValue, IPFSAccessController } from '@orbitdb/core'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { PublishConfigType } from '@libp2p/gossipsub/types'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import * as Block from 'multiformats/block'
import * as dagCbor from '@ipld/dag-cbor'
import { sha256 } from 'multiformats/hashes/sha2'
import { base58btc } from 'multiformats/bases/base58'
import { fromString } from 'uint8arrays'
import { join } from 'node:path'
import { createNewPiecePlease, type NewPiecePlease } from '../../src/index.ts'
import { publishToPeer } from '../../src/peering/publish.ts'
import { peer, befriend, nextEvent, until, tempDir, LOOPBACK } from '../helpers/peers.ts'

/** A well-formed user-db address whose blocks nobody has: verifying it stalls until the time limit. */
async function ghost (name: string): Promise<string> {
  const { cid } = await Block.encode({ value: { name, type: 'keyvalue', accessController: '/ipfs/nothing' }, codec: dagCbor, hasher: sha256 })
  return `/orbitdb/${cid.toString(base58btc)}`
}

/**
 * Discovery under attack (issue 10, findings 3 and 4): limits keyed on what
 * an attacker cannot choose cheaply (the neighbour that delivered a message,
 * the OrbitDB identity behind a profile), not on the key that signed it.
 */
describe('hostile discovery', () => {
  describe('sybil companions: one OrbitDB identity behind many peer ids', () => {
    let victim: NewPiecePlease, attacker: NewPiecePlease
    const sybils: Libp2p[] = []

    before(async () => {
      [victim, attacker] = await Promise.all([
        peer({ username: 'victim' }),
        peer({ username: 'attacker' })
      ])
      await befriend(victim, attacker)
    })

    after(async () => {
      await Promise.all(sybils.map(async node => { await node.stop() }))
    })

    it('records one companion per identity, whatever number of peers announce it', async () => {
      // lightweight nodes, each directly connected to the victim and announcing
      // a profile of its own peer id, all written by the attacker's identity and
      // pointing at the attacker's catalog
      const count = 4
      for (let i = 0; i < count; i++) {
        sybils.push(await createLibp2p({
          addresses: { listen: LOOPBACK },
          transports: [tcp()],
          connectionEncrypters: [noise()],
          streamMuxers: [yamux()],
          services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
        }))
      }
      const ids = sybils.map(node => node.peerId.toString())
      // each sybil's outcome: recorded, or dropped with a reason
      const outcome = new Map<string, string>()
      let timer: ReturnType<typeof setTimeout> | undefined
      let onRecorded!: (e: CustomEvent<{ nodeId: string }>) => void
      let onDropped!: (e: CustomEvent<{ from: string, reason: string }>) => void
      const allSettled = new Promise<void>((resolve, reject) => {
        const note = (id: string, what: string): void => {
          if (!ids.includes(id)) return
          outcome.set(id, what)
          if (outcome.size === ids.length) resolve()
        }
        onRecorded = e => { note(e.detail.nodeId, 'recorded') }
        onDropped = e => { note(e.detail.from, e.detail.reason) }
        timer = setTimeout(() => { reject(new Error(`${outcome.size} of ${ids.length} sybils recorded or dropped within 15 s`)) }, 15_000)
      })
      victim.addEventListener('db:discovered', onRecorded)
      victim.addEventListener('message:dropped', onDropped)
      try {
        await Promise.all(sybils.map(async (node, i) => {
          const profile = await attacker.orbitdb.open<any>(`sybil-${i}`, { type: 'keyvalue', Database: KeyValue(), AccessController: IPFSAccessController({ write: [attacker.orbitdb.identity.id] }) })
          await profile.put('nodeId', node.peerId.toString())
          await profile.put('pieces', attacker.databases.pieces.address)
          await node.dial(multiaddr(victim.getMultiaddrs()[0]!))
          await publishToPeer(node.services.pubsub as GossipSub, victim.peerId, peerIdFromString(victim.peerId), fromString(JSON.stringify({ userDb: profile.address })), { signal: AbortSignal.timeout(10_000), attempts: 60 })
        }))
        await allSettled
      } finally {
        clearTimeout(timer)
        victim.removeEventListener('db:discovered', onRecorded)
        victim.removeEventListener('message:dropped', onDropped)
      }
      const outcomes = ids.map(id => outcome.get(id))
      const same = (await victim.getCompanions()).filter(c => c.pieces === attacker.databases.pieces.address)
      assert.deepEqual(same.map(c => c.nodeId), [attacker.peerId], `one companion for the attacker's identity (sybils: ${outcomes.join(', ')})`)
      assert.deepEqual(outcomes, ids.map(() => 'duplicate-identity'))
      assert.equal(victim.stats.messagesDropped['duplicate-identity'], count)
    })

    it('a register that already holds several companions of one identity keeps one of them at the next start', async () => {
      const dir = join(await tempDir(), 'victim')
      let npp = await createNewPiecePlease({ directory: dir, listen: LOOPBACK, username: 'victim' })
      try {
        await befriend(npp, attacker)
        // as an older version recorded them: peer ids of the finding's kind, all
        // with the attacker's catalog, seen long ago
        for (let i = 0; i < 3; i++) {
          const nodeId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
          await npp.databases.companions.put(await ghost(`old-sybil-${i}`), { nodeId, pieces: attacker.databases.pieces.address, username: 'sybil', multiaddrs: [], lastSeen: i + 1 })
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
    let victim: NewPiecePlease, flooder: NewPiecePlease, honest: NewPiecePlease

    before(async () => {
      [victim, flooder, honest] = await Promise.all([
        // each stalling user db holds a verification slot for 5 s
        peer({ username: 'victim', discoveryTimeout: 5000 }),
        peer({ username: 'flooder' }),
        peer({ username: 'honest' })
      ])
      await befriend(victim, flooder)
    })

    /** Publish one announcement of a stalling user db per fresh key, signed with that key, over the flooder's connection. */
    async function flood (count: number, offset: number): Promise<string[]> {
      const pubsub = flooder.libp2p.services.pubsub as unknown as { publishConfig: unknown, publish: GossipSub['publish'] }
      const own = pubsub.publishConfig
      const signers: string[] = []
      try {
        for (let i = 0; i < count; i++) {
          const privateKey = await generateKeyPair('Ed25519')
          const author = peerIdFromPrivateKey(privateKey)
          signers.push(author.toString())
          pubsub.publishConfig = { type: PublishConfigType.Signing, author, key: publicKeyToProtobuf(privateKey.publicKey), privateKey }
          await pubsub.publish(victim.peerId, fromString(JSON.stringify({ userDb: await ghost(`flood-${offset + i}`) })))
        }
      } finally {
        pubsub.publishConfig = own
      }
      return signers
    }

    it('an honest peer connecting during the flood becomes a companion, and the flood is charged to the flooder\'s connection', async () => {
      const received = victim.stats.messagesReceived
      const first = await flood(100, 0)
      // the honest peer connects and its announcement reaches the victim mid-flood
      const announced = nextEvent(victim, 'message', d => d.from === honest.peerId && 'userDb' in d.data, 10_000)
      const recorded = nextEvent(victim, 'db:discovered', c => c.nodeId === honest.peerId, 12_000)
      await honest.connectToPeer(victim.getMultiaddrs()[0]!)
      await announced
      const second = await flood(300, 100)
      await recorded
      // every flood message arrived and none became a verification of its own
      await until(victim, 'message:dropped', () => victim.stats.messagesReceived >= received + first.length + second.length + 1, 10_000)
      const signers = new Set([...first, ...second])
      assert.ok(!(await victim.getCompanions()).some(c => signers.has(c.nodeId)), 'no forged key is a companion')
      const { 'rate-limited': limited, forwarded } = victim.stats.messagesDropped
      assert.equal(limited + forwarded, signers.size, 'every forged announcement dropped as rate-limited or forwarded')
      assert.ok(limited >= signers.size / 2, `the flooder's connection is rate-limited (${limited} of ${signers.size})`)
      assert.ok(victim.stats.discoveriesStarted <= 3, `no verification for a forged key (${victim.stats.discoveriesStarted} started)`)
    })
  })
})
