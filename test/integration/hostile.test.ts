import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { KeyValue, Events, IPFSAccessController } from '@orbitdb/core'
import * as Block from 'multiformats/block'
import * as dagCbor from '@ipld/dag-cbor'
import { sha256 } from 'multiformats/hashes/sha2'
import { base58btc } from 'multiformats/bases/base58'
import { fromString } from 'uint8arrays'
import { peerIdFromString } from '@libp2p/peer-id'
import type { NewPiecePlease, DropReason } from '../../src/index.ts'
import { publishToPeer } from '../../src/peering/publish.ts'
import { peer, befriend, nextEvent } from '../helpers/peers.ts'

/** Bad input from the network: each is dropped, counted and logged; nothing crashes, blocks or is lost. */
describe('hostile and broken peers', () => {
  let victim: NewPiecePlease, attacker: NewPiecePlease, bystander: NewPiecePlease

  async function send (data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === 'string' ? fromString(data) : data
    await publishToPeer(attacker.libp2p.services.pubsub, victim.peerId, peerIdFromString(victim.peerId), bytes, { signal: AbortSignal.timeout(5000), attempts: 9 })
  }

  async function expectDrop (reason: DropReason, data: Uint8Array | string, ms = 15_000): Promise<void> {
    const before = victim.stats.messagesDropped[reason]
    const dropped = nextEvent(victim, 'message:dropped', d => d.reason === reason && d.from === attacker.peerId, ms)
    await send(data)
    await dropped
    assert.equal(victim.stats.messagesDropped[reason], before + 1)
  }

  before(async () => {
    [victim, attacker, bystander] = await Promise.all([
      peer({ username: 'victim', discoveryTimeout: 1500 }),
      peer({ username: 'attacker' }),
      peer({ username: 'bystander' })
    ])
    await victim.addNewPiece('QmPrecious', 'Lute', { title: 'Greensleeves' })
    await befriend(victim, attacker)
  })

  it('drops non-JSON, oversized and wrong-shape messages', async () => {
    await expectDrop('not-json', '{not json')
    await expectDrop('not-json', new Uint8Array([0xff, 0xfe, 0x00, 0x01]))
    await expectDrop('oversized', JSON.stringify({ pad: 'x'.repeat(17 * 1024) }))
    await expectDrop('wrong-shape', '[1,2,3]')
    await expectDrop('wrong-shape', '"just a string"')
    await expectDrop('wrong-shape', 'null')
    await expectDrop('wrong-shape', JSON.stringify({ userDb: attacker.databases.user.address, extra: true }))
    await expectDrop('wrong-shape', JSON.stringify({ userDb: 'not an address' }))
    await expectDrop('wrong-shape', JSON.stringify({ userDb: 42 }))
  })

  it('a user db that never resolves does not block other peers\' discovery, and is not taken for invalid data', async () => {
    const { cid } = await Block.encode({ value: { name: 'ghost', type: 'keyvalue', accessController: '/ipfs/nothing' }, codec: dagCbor, hasher: sha256 })
    const ghost = `/orbitdb/${cid.toString(base58btc)}`
    const invalid = victim.stats.messagesDropped['invalid-user-db']
    await send(JSON.stringify({ userDb: ghost }))
    // meanwhile a real peer connects and is discovered as usual
    await befriend(victim, bystander)
    assert.ok((await victim.getCompanions()).some(c => c.nodeId === bystander.peerId))
    // a time-out may pass (a busy honest peer looks the same): the ghost is
    // tried again with back-off while the attacker is connected, not dropped
    // as invalid (the retries: test/unit/peering/discovery.test.ts)
    assert.equal(victim.stats.messagesDropped['invalid-user-db'], invalid, 'and not taken for invalid data')
  })

  it('rejects a database of the wrong type', async () => {
    const events = await attacker.orbitdb.open<any>('not-a-profile', { type: 'events', Database: Events() })
    await events.add('hello')
    await expectDrop('invalid-user-db', JSON.stringify({ userDb: events.address }))
    // a failure that would repeat: the same address again is refused for a while
    await expectDrop('recently-failed', JSON.stringify({ userDb: events.address }))
  })

  it('rejects a user db whose nodeId is not the sender', async () => {
    // the bystander's real profile, sent by the attacker
    await expectDrop('invalid-user-db', JSON.stringify({ userDb: bystander.databases.user.address }))
    const forged = await attacker.orbitdb.open<any>('forged-profile', { type: 'keyvalue', Database: KeyValue(), AccessController: IPFSAccessController({ write: [attacker.orbitdb.identity.id] }) })
    await forged.put('nodeId', bystander.peerId)
    await forged.put('pieces', bystander.databases.pieces.address)
    await expectDrop('invalid-user-db', JSON.stringify({ userDb: forged.address }))
  })

  it('rejects a profile that claims someone else\'s catalog as its own', async () => {
    const claim = await attacker.orbitdb.open<any>('claiming-profile', { type: 'keyvalue', Database: KeyValue(), AccessController: IPFSAccessController({ write: [attacker.orbitdb.identity.id] }) })
    await claim.put('nodeId', attacker.peerId)
    await claim.put('pieces', bystander.databases.pieces.address)
    await expectDrop('invalid-user-db', JSON.stringify({ userDb: claim.address }))
    const companion = (await victim.getCompanions()).find(c => c.nodeId === attacker.peerId)
    assert.equal(companion?.pieces, attacker.databases.pieces.address, 'the attacker\'s real record is untouched')
  })

  it('rejecting a profile that claims a companion\'s catalog leaves the replica of that catalog open and live', async () => {
    // the victim replicates the bystander's catalog
    if (!(await victim.getCompanions()).some(c => c.nodeId === bystander.peerId)) await befriend(victim, bystander)
    const catalog = bystander.databases.pieces.address
    // a forged profile pointing at it: verification opens that catalog (OrbitDB
    // hands back the open replica) and must not close it when it rejects
    const claim = await attacker.orbitdb.open<any>('claiming-a-companion', { type: 'keyvalue', Database: KeyValue(), AccessController: IPFSAccessController({ write: [attacker.orbitdb.identity.id] }) })
    await claim.put('nodeId', attacker.peerId)
    await claim.put('pieces', catalog)
    await expectDrop('invalid-user-db', JSON.stringify({ userDb: claim.address }))
    // the replica still follows its owner
    const arrived = nextEvent(victim, 'catalog:update', d => d.address === catalog, 10_000)
    await bystander.addNewPiece('QmAfterTheForgery', 'Viol')
    await arrived
    const { results, sources } = await victim.queryCatalog({ hash: 'QmAfterTheForgery' })
    assert.deepEqual(results.map(r => r.owner), [bystander.peerId])
    assert.equal(sources.find(s => s.owner === bystander.peerId)?.status, 'ok')
  })

  it('rate-limits a flooding peer with bounded memory, and keeps working', async () => {
    const before = victim.stats.messagesDropped['rate-limited']
    const limited = nextEvent(victim, 'message:dropped', d => d.reason === 'rate-limited')
    for (let i = 0; i < 200; i++) {
      await attacker.libp2p.services.pubsub.publish(victim.peerId, fromString(JSON.stringify({ spam: i })))
    }
    await limited
    assert.ok(victim.stats.messagesDropped['rate-limited'] > before)
    // still alive and intact
    assert.deepEqual(await victim.getPieceByHash('QmPrecious'), { hash: 'QmPrecious', instrument: 'Lute', title: 'Greensleeves' })
    const { results } = await bystander.queryCatalog({ instrument: 'Lute' })
    assert.deepEqual(results.map(r => r.owner), [victim.peerId])
    assert.deepEqual((await victim.getCompanions()).map(c => c.nodeId).sort(), [attacker.peerId, bystander.peerId].sort())
  })
})
