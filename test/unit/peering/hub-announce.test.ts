import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { defaultLogger } from '@libp2p/logger'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { TOPIC } from '@libp2p/pubsub-peer-discovery'
import { HubAnnouncer } from '../../../src/peering/hub-announce.ts'
import type { NppLibp2p } from '../../../src/types.ts'

async function setup (): Promise<{ announcer: HubAnnouncer, libp2p: NppLibp2p, pubsub: EventTarget, published: string[] }> {
  const published: string[] = []
  const pubsub = Object.assign(new EventTarget(), {
    getSubscribers: () => ['hub'],
    publish: async (topic: string) => { published.push(topic) }
  })
  const libp2p = Object.assign(new EventTarget(), { services: { pubsub } }) as unknown as NppLibp2p
  const announcer = new HubAnnouncer()
  announcer.discovery({
    peerId: peerIdFromPrivateKey(await generateKeyPair('Ed25519')),
    pubsub,
    addressManager: { getAddresses: () => [] },
    logger: defaultLogger()
  } as any)
  return { announcer, libp2p, pubsub, published }
}

describe('HubAnnouncer', () => {
  it('announces when the hub subscribes to the discovery topic, joins the mesh, or our addresses change', async () => {
    const { announcer, libp2p, pubsub, published } = await setup()
    announcer.start(libp2p)
    announcer.start(libp2p)
    pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { subscriptions: [{ topic: 'other', subscribe: true }] } }))
    pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { subscriptions: [{ topic: TOPIC, subscribe: false }] } }))
    assert.equal(published.length, 0, 'other topics and unsubscriptions are not worth it')
    pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { subscriptions: [{ topic: TOPIC, subscribe: true }] } }))
    pubsub.dispatchEvent(new CustomEvent('gossipsub:graft', { detail: { topic: TOPIC } }))
    pubsub.dispatchEvent(new CustomEvent('gossipsub:graft', { detail: { topic: 'other' } }))
    libp2p.dispatchEvent(new CustomEvent('self:peer:update'))
    assert.deepEqual(published, [TOPIC, TOPIC, TOPIC], 'once per event, even after starting twice')
    announcer.stop()
    announcer.stop()
    libp2p.dispatchEvent(new CustomEvent('transport:listening'))
    assert.equal(published.length, 3, 'stopped: no more announcements')
  })

  it('an announcement that throws is logged, not thrown', async () => {
    const { announcer, libp2p, pubsub } = await setup()
    ;(pubsub as any).getSubscribers = () => { throw new Error('not started') }
    announcer.start(libp2p)
    assert.doesNotThrow(() => { libp2p.dispatchEvent(new CustomEvent('self:peer:update')) })
    announcer.stop()
  })
})
