import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { TypedEventEmitter } from 'main-event'
import { defaultLogger } from '@libp2p/logger'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { HubLinks } from '../../../src/peering/hub-links.ts'
import { RelayUnavailableError, type NewPiecePleaseEvents, type HubStatus } from '../../../src/index.ts'

const ADDR = '/ip4/127.0.0.1/tcp/4001'

async function setup (dial: (n: number) => Promise<void>, resolve?: (n: number) => Promise<string[]>): Promise<{ links: HubLinks, events: TypedEventEmitter<NewPiecePleaseEvents>, libp2p: EventTarget & { connected: boolean, dials: number }, relay: ReturnType<typeof peerIdFromPrivateKey> }> {
  const relay = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  let resolves = 0
  const libp2p = Object.assign(new EventTarget(), {
    connected: false,
    dials: 0,
    dial: async () => {
      await dial(++libp2p.dials)
      libp2p.connected = true
      return { remotePeer: relay }
    },
    getConnections: () => libp2p.connected ? [{}] : [],
    peerStore: { merge: async () => {} }
  })
  const events = new TypedEventEmitter<NewPiecePleaseEvents>()
  const links = new HubLinks({ libp2p: libp2p as any, events, logger: defaultLogger() }, {
    hubs: [resolve == null ? { kind: 'relay', configured: ADDR, addrs: [ADDR] } : { kind: 'relay', configured: 'http://relay/config', resolve: async () => await resolve(++resolves) }],
    dialTimeout: 1000,
    minDelay: 5,
    maxDelay: 20
  })
  return { links, events, libp2p, relay }
}

const next = async (events: TypedEventEmitter<NewPiecePleaseEvents>, type: 'hub:connected' | 'hub:disconnected'): Promise<HubStatus> =>
  await new Promise(resolve => { events.addEventListener(type, e => { resolve(e.detail) }, { once: true }) })

describe('HubLinks', () => {
  it('keeps dialing a hub that is away, far beyond libp2p\'s five reconnect attempts, and reports the link', async () => {
    const { links, events, libp2p, relay } = await setup(async (n) => { if (n <= 12) throw new Error('connection refused') })
    const up = next(events, 'hub:connected')
    links.start()
    links.start()
    const status = await up
    assert.equal(libp2p.dials, 13)
    assert.deepEqual([status.kind, status.configured, status.peerId, status.connected, status.failedDials], ['relay', ADDR, relay.toString(), true, 0])
    assert.equal(links.status()[0]?.connected, true)
    links.stop()
  })

  it('dials again when the link drops, and stops when stopped', async () => {
    const { links, events, libp2p, relay } = await setup(async () => {})
    const up = next(events, 'hub:connected')
    links.start()
    await up
    const down = next(events, 'hub:disconnected')
    const upAgain = next(events, 'hub:connected')
    libp2p.connected = false
    libp2p.dispatchEvent(new CustomEvent('peer:disconnect', { detail: relay }))
    assert.equal((await down).connected, false)
    await upAgain
    assert.equal(libp2p.dials, 2)
    links.stop()
    libp2p.connected = false
    libp2p.dispatchEvent(new CustomEvent('peer:disconnect', { detail: relay }))
    assert.equal(links.status()[0]?.connected, true, 'a stopped part reports nothing more')
    assert.equal(libp2p.dials, 2)
  })

  it('reads a relay config until it answers, and records why the last attempt failed', async () => {
    const { links, events } = await setup(async () => {}, async (n) => {
      if (n < 3) throw new RelayUnavailableError('http://relay/config answered HTTP 502')
      return [ADDR]
    })
    const up = next(events, 'hub:connected')
    links.start()
    await up
    links.stop()
  })

  it('require() fails with RelayUnavailableError when the relay cannot be reached', async () => {
    const { links } = await setup(async () => { throw new Error('connection refused') })
    await assert.rejects(links.require(), (err: any) => err instanceof RelayUnavailableError && /connection refused/.test(err.message))
    const { links: failing } = await setup(async () => {}, async () => { throw new RelayUnavailableError('bad config') })
    await assert.rejects(failing.require(), /bad config/)
  })
})
