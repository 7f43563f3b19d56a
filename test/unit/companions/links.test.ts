import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { TypedEventEmitter } from 'main-event'
import { defaultLogger } from '@libp2p/logger'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { stubInterface } from 'sinon-ts'
import { CompanionLinks, COMPANION_TAG } from '../../../src/companions/links.ts'
import type { CompanionRegister } from '../../../src/companions/register.ts'
import type { CompanionRecord, NewPiecePleaseEvents, NppLibp2p } from '../../../src/index.ts'

async function setup (dial: (n: number) => Promise<void>): Promise<{ links: CompanionLinks, events: TypedEventEmitter<NewPiecePleaseEvents>, record: CompanionRecord, libp2p: any, connected: Set<string>, merges: any[] }> {
  const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const remote = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const record: CompanionRecord = { nodeId: remote.toString(), pieces: '/orbitdb/x', username: 'bo', multiaddrs: ['/ip4/127.0.0.1/tcp/4001'], lastSeen: 0 }
  const connected = new Set<string>()
  const merges: any[] = []
  const target = new EventTarget()
  let dials = 0
  const libp2p = Object.assign(target, {
    peerId: self,
    getConnections: (peer: any) => connected.has(peer.toString()) ? [{ limits: undefined, remoteAddr: { decapsulateCode: () => '/ip4/127.0.0.1/tcp/4001' } }] : [],
    dial: async () => { await dial(++dials) },
    peerStore: { merge: async (_peer: unknown, data: unknown) => { merges.push(data) } },
    get dials () { return dials }
  }) as unknown as NppLibp2p
  const register = stubInterface<CompanionRegister>()
  register.entries.returns([['/orbitdb/user', record]])
  register.addressOf.returns('/orbitdb/user')
  register.get.returns(record)
  const events = new TypedEventEmitter<NewPiecePleaseEvents>()
  const links = new CompanionLinks({ libp2p, events, logger: defaultLogger(), register }, { reconnectInterval: 20, maxBackoff: 80, dialTimeout: 1000 })
  return { links, events, record, libp2p, connected, merges }
}

describe('CompanionLinks', () => {
  it('tags companions KEEP_ALIVE and redials one that is away, backing off up to the cap', async () => {
    const { links, events, libp2p, merges } = await setup(async () => { throw new Error('connection refused') })
    let offline = 0
    events.addEventListener('companion:offline', () => { offline++ })
    const attempts: number[] = []
    const seen = new Promise<void>(resolve => {
      const origDial = libp2p.dial
      libp2p.dial = async (...args: unknown[]) => {
        attempts.push(Date.now())
        if (attempts.length === 5) resolve()
        return await origDial(...args)
      }
    })
    links.start()
    await seen
    await links.stop()
    assert.ok(merges.some(m => m.tags?.[COMPANION_TAG] != null), 'tagged KEEP_ALIVE')
    assert.equal(offline, 1, 'reported offline once, not at every failure')
    assert.equal(links.redials, 5)
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!)
    // 20, 40, 80, 80 ms (the cap); rounds run every 20 ms, so each gap is at least its back-off
    assert.ok(gaps[1]! >= 35 && gaps[3]! >= 75, `backed off: ${gaps.join(', ')} ms`)
  })

  it('reports a companion online when it connects and stops redialing it', async () => {
    const { links, events, record, libp2p, connected } = await setup(async () => { throw new Error('refused') })
    links.start()
    const online = new Promise<string>(resolve => { events.addEventListener('companion:online', (e) => { resolve(e.detail.nodeId) }) })
    connected.add(record.nodeId)
    libp2p.dispatchEvent(new CustomEvent('peer:connect', { detail: { toString: () => record.nodeId } }))
    assert.equal(await online, record.nodeId)
    const before = links.redials
    await links.redialAll()
    assert.equal(links.redials, before, 'a connected companion is not dialed')
    assert.deepEqual(links.addressesOf(record.nodeId), ['/ip4/127.0.0.1/tcp/4001'])
    await links.stop()
  })

  it('stop() waits for a redial in flight and aborts it', async () => {
    let aborted = false
    const { links } = await setup(async () => { await new Promise<void>(resolve => setTimeout(resolve, 50)); aborted = true })
    links.start()
    await new Promise<void>(resolve => setImmediate(resolve))
    await links.stop()
    assert.equal(aborted, true, 'stop() returned after the running round ended')
  })
})
