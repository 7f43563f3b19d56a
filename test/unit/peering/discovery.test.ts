import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { TypedEventEmitter } from 'main-event'
import { defaultLogger } from '@libp2p/logger'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { fromString } from 'uint8arrays'
import { Discovery } from '../../../src/peering/discovery.ts'
import type { NewPiecePleaseEvents, NppLibp2p } from '../../../src/index.ts'

const USER_DB = '/orbitdb/zdpuAmrcSRUhkQcnRQ6p4bphs7DJWGBkqczSGFYynX6moTcDL'

async function setup (verify: (userDb: string, from: string) => Promise<void>, timeout = 1000): Promise<{ discovery: Discovery, events: TypedEventEmitter<NewPiecePleaseEvents>, deliver(from: unknown, data: Uint8Array | string): void, verified: string[], libp2p: EventTarget, subscribers: unknown[], pubsub: EventTarget }> {
  const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const subscribers: unknown[] = []
  const pubsub = Object.assign(new EventTarget(), { subscribe () {}, unsubscribe () {}, getSubscribers: () => subscribers, publish: async () => ({ recipients: subscribers }) })
  // an announcement that gives up stops listening for subscriptions: tell the test
  const remove = pubsub.removeEventListener.bind(pubsub)
  pubsub.removeEventListener = (type: string, ...rest: any[]) => {
    remove(type, ...rest as [any])
    if (type === 'subscription-change') pubsub.dispatchEvent(new Event('test:gave-up'))
  }
  const libp2p = Object.assign(new EventTarget(), { peerId: self, getPeers: () => [], services: { pubsub } }) as unknown as NppLibp2p
  const events = new TypedEventEmitter<NewPiecePleaseEvents>()
  const verified: string[] = []
  const discovery = new Discovery({ libp2p, events, logger: defaultLogger(), verifier: { verify: async (userDb, from) => { verified.push(from); await verify(userDb, from) } } }, { userDb: USER_DB, timeout })
  await discovery.start()
  const deliver = (from: unknown, data: Uint8Array | string): void => {
    pubsub.dispatchEvent(new CustomEvent('message', { detail: { type: 'signed', topic: self.toString(), from, data: typeof data === 'string' ? fromString(data) : data } }))
  }
  return { discovery, events, deliver, verified, libp2p, subscribers, pubsub }
}

describe('Discovery', () => {
  it('hands a well-formed announcement to the verifier and reports the message', async () => {
    const sender = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const { discovery, events, deliver, verified } = await setup(async () => {})
    const message = new Promise(resolve => { events.addEventListener('message', e => { resolve(e.detail.data) }) })
    deliver(sender, JSON.stringify({ userDb: USER_DB }))
    assert.deepEqual(await message, { userDb: USER_DB })
    await new Promise<void>(resolve => setImmediate(resolve))
    assert.deepEqual(verified, [sender.toString()])
    assert.equal(discovery.stats.discoveriesSucceeded, 1)
    await discovery.stop()
  })

  it('drops what is malformed with a reason on the shared event target, and never verifies it', async () => {
    const sender = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const { discovery, events, deliver, verified } = await setup(async () => {})
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

  it('remembers a failed verification and refuses the same announcement for a while', async () => {
    const sender = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const { discovery, events, deliver } = await setup(async () => { throw new Error('not a catalog') })
    const reasons: string[] = []
    const failed = new Promise<void>(resolve => {
      events.addEventListener('message:dropped', e => { reasons.push(e.detail.reason); if (e.detail.reason === 'invalid-user-db') resolve() })
    })
    deliver(sender, JSON.stringify({ userDb: USER_DB }))
    await failed
    deliver(sender, JSON.stringify({ userDb: USER_DB }))
    assert.deepEqual(reasons, ['invalid-user-db', 'recently-failed'])
    await discovery.stop()
  })

  it('announces again when a direct connection opens after an announcement over a relayed one timed out', async () => {
    const remote = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const { discovery, libp2p, subscribers, pubsub } = await setup(async () => {}, 50)
    const gaveUp = new Promise(resolve => { pubsub.addEventListener('test:gave-up', resolve, { once: true }) })
    // met through a relay: peer:connect on the limited connection, where no subscription arrives in time
    libp2p.dispatchEvent(new CustomEvent('peer:connect', { detail: remote }))
    await gaveUp // the announcement's own 50 ms bound passed
    await new Promise<void>(resolve => setImmediate(resolve)) // and its bookkeeping ran
    assert.equal(discovery.stats.announcementsSent, 0)
    // the WebRTC connection opens, and over it the peer's subscription is known
    subscribers.push(remote)
    libp2p.dispatchEvent(new CustomEvent('connection:open', { detail: { remotePeer: remote, limits: undefined } }))
    // a relayed connection opening is no reason to announce
    libp2p.dispatchEvent(new CustomEvent('connection:open', { detail: { remotePeer: remote, limits: { seconds: 120 } } }))
    await new Promise<void>(resolve => setImmediate(resolve))
    assert.equal(discovery.stats.announcementsSent, 1, 'announced over the direct connection')
    await discovery.stop()
  })
})
