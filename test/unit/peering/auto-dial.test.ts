import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { defaultLogger } from '@libp2p/logger'
import { AutoDial, WEBRTC_ATTEMPTS, type AutoDialInit } from '../../../src/peering/auto-dial.ts'
import { platform as nodePlatform } from '../../../src/platform/node.ts'
import { platform as browserPlatform } from '../../../src/platform/browser.ts'

const newPeerId = async (): Promise<any> => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))

/**
 * A stand-in for libp2p's dialer: `behaviour(n)` decides what the n-th dial
 * does ('hang' until its signal aborts, 'fail' at once, or 'ok'). What is
 * dialed, and with which time limit, is recorded.
 */
async function fakeLibp2p (behaviour: (n: number, target: string) => 'hang' | 'fail' | 'deny' | 'ok'): Promise<any> {
  const self = await newPeerId()
  const connections: any[] = []
  const dials: Array<{ target: string, aborted: Promise<number> }> = []
  let settled: () => void = () => {}
  const done = new Promise<void>(resolve => { settled = resolve })
  return {
    peerId: self,
    dials,
    connections,
    done,
    addEventListener () {},
    removeEventListener () {},
    getConnections: (peer?: any) => connections.filter(c => peer == null || c.remotePeer.equals(peer)),
    async dial (target: any, { signal }: { signal: AbortSignal }) {
      const n = dials.length + 1
      const started = Date.now()
      const what = behaviour(n, Array.isArray(target) ? target.map(String).join(' ') : String(target))
      const aborted = new Promise<number>(resolve => { signal.addEventListener('abort', () => { resolve(Date.now() - started) }, { once: true }) })
      dials.push({ target: Array.isArray(target) ? target.map(String).join(' ') : String(target), aborted })
      if (what === 'ok') {
        const remotePeer = Array.isArray(target) ? String(target[0]).split('/p2p/').pop() : String(target)
        connections.push({ remotePeer: { equals: (p: any) => p.toString() === remotePeer }, limits: undefined })
        settled()
        return
      }
      if (what === 'fail') { settled(); throw new Error('connection refused') }
      if (what === 'deny') { settled(); throw Object.assign(new Error('the gater refused'), { name: 'DialDeniedError' }) }
      await aborted
      if (n === WEBRTC_ATTEMPTS) settled()
      throw signal.reason
    }
  }
}

const addrs = (relay: string, peer: string): Multiaddr[] => [
  multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${peer}`),
  multiaddr(`/ip4/127.0.0.1/tcp/9000/ws/p2p/${relay}/p2p-circuit/p2p/${peer}`),
  multiaddr(`/ip4/127.0.0.1/tcp/9000/ws/p2p/${relay}/p2p-circuit/webrtc/p2p/${peer}`)
]

/** A dialer over a fake libp2p, already asked to dial a peer that offers TCP, a relayed and a WebRTC address. */
async function dialing (behaviour: Parameters<typeof fakeLibp2p>[0], options: Partial<AutoDialInit> & { platform: 'node' | 'browser' }): Promise<{ libp2p: any, dialer: AutoDial, again(): void, remote: any }> {
  const libp2p = await fakeLibp2p(behaviour)
  const { platform, ...rest } = options
  const dialer = new AutoDial({ libp2p, logger: defaultLogger() }, { dialTimeout: 10_000, canDialDirectly: (platform === 'node' ? nodePlatform : browserPlatform).canDialDirectly, ...rest })
  dialer.start()
  const [remote, relay] = [await newPeerId(), await newPeerId()]
  const again = (): void => { dialer.consider(remote, addrs(relay.toString(), remote.toString())) }
  again()
  return { libp2p, dialer, again, remote }
}

describe('AutoDial', () => {
  it('retries a WebRTC dial that stalls on its first attempt, at once and with a longer limit', async () => {
    const started = Date.now()
    const { libp2p, dialer } = await dialing(n => n === 1 ? 'hang' : 'ok', { platform: 'browser', webrtcFirstAttemptTimeout: 50 })
    await libp2p.done
    assert.equal(libp2p.dials.length, 2, 'one retry')
    assert.ok(libp2p.dials.every((d: any) => d.target.includes('/webrtc/') && !d.target.includes('/tcp/4001/')), 'a browser dials the WebRTC address, not TCP')
    const firstLimit = await libp2p.dials[0].aborted
    assert.ok(firstLimit >= 45 && firstLimit < 1000, `the first attempt was bounded by its own limit (${firstLimit} ms)`)
    assert.ok(Date.now() - started < 2000, 'the retry came at once, not after the failure pause')
    await new Promise(resolve => setImmediate(resolve)) // the dialer's own bookkeeping after the dial resolved
    assert.equal(dialer.retriedDials, 1)
    dialer.stop()
  })

  it('gives up after a bounded number of attempts, and leaves the peer alone for a while', async () => {
    const { libp2p, dialer, again } = await dialing(() => 'hang', { platform: 'browser', webrtcFirstAttemptTimeout: 100 })
    await libp2p.done
    const limits = await Promise.all(libp2p.dials.map((d: any) => d.aborted))
    assert.equal(libp2p.dials.length, WEBRTC_ATTEMPTS)
    // timers never fire early, so these bounds hold however loaded the machine is
    assert.ok(limits[1] >= 195 && limits[2] >= 395, `each retry waits twice as long (100, 200, 400 ms): ${limits.join(', ')} ms`)
    await new Promise(resolve => setImmediate(resolve))
    again()
    assert.equal(libp2p.dials.length, WEBRTC_ATTEMPTS, 'not redialed by the next announcement right away')
    dialer.stop()
  })

  it('a Node peer dials another over TCP first, and over WebRTC when that fails (its announced TCP address may be its own loopback)', async () => {
    const { libp2p, dialer, remote } = await dialing((_n, target) => target.includes('/webrtc/') ? 'ok' : 'fail', { platform: 'node' })
    await libp2p.done
    await new Promise(resolve => setImmediate(resolve))
    assert.deepEqual(libp2p.dials.map((d: any) => d.target.includes('/webrtc/') ? 'webrtc' : d.target), [`/ip4/127.0.0.1/tcp/4001/p2p/${remote.toString()}`, 'webrtc'])
    dialer.stop()
  })

  it('a Node peer that links over TCP does not touch WebRTC', async () => {
    const { libp2p, dialer, again, remote } = await dialing(() => 'ok', { platform: 'node' })
    await libp2p.done
    again()
    assert.deepEqual(libp2p.dials.map((d: any) => d.target), [`/ip4/127.0.0.1/tcp/4001/p2p/${remote.toString()}`], 'and a linked peer is not dialed again')
    dialer.stop()
  })

  it('does not retry what would fail the same way again (a gater refusal)', async () => {
    const { libp2p, dialer } = await dialing(() => 'deny', { platform: 'browser', webrtcFirstAttemptTimeout: 50 })
    await libp2p.done
    await new Promise(resolve => setImmediate(resolve))
    assert.equal(libp2p.dials.length, 1)
    dialer.stop()
  })

  it('keeps a kept peer linked: dialed again on its interval until it is', async () => {
    const self = await newPeerId()
    const remote = await newPeerId()
    const connections: any[] = []
    let dials = 0
    let linked: () => void = () => {}
    const done = new Promise<void>(resolve => { linked = resolve })
    // every round looks at the peer's connections first
    let looks = 0
    let onLook: () => void = () => {}
    const libp2p: any = {
      peerId: self,
      addEventListener () {},
      removeEventListener () {},
      getConnections: () => { looks++; onLook(); return connections },
      async dial () {
        if (++dials < 3) throw new Error('not reachable yet')
        connections.push({ remotePeer: remote, limits: undefined })
        linked()
      }
    }
    const dialer = new AutoDial({ libp2p, logger: defaultLogger() }, { dialTimeout: 1000, canDialDirectly: nodePlatform.canDialDirectly, keepInterval: 20, retryAfterFailure: 0, dialDiscovered: false })
    dialer.start()
    dialer.keep(remote, [multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${remote.toString()}`)])
    await done
    assert.equal(dials, 3, 'two failed rounds, then linked')
    const seen = looks
    await new Promise<void>(resolve => { onLook = () => { if (looks >= seen + 5) resolve() } })
    assert.equal(dials, 3, 'five more rounds looked, and none dialed the linked peer')
    dialer.stop()
  })

  it('stops retrying when stopped', async () => {
    const { libp2p, dialer } = await dialing(() => 'hang', { platform: 'browser', webrtcFirstAttemptTimeout: 5_000 })
    dialer.stop()
    assert.ok(await libp2p.dials[0].aborted < 1000, 'the pending attempt is aborted')
    await new Promise(resolve => setImmediate(resolve))
    assert.equal(libp2p.dials.length, 1, 'and not tried again')
  })
})

describe('platform address choice', () => {
  it('Node dials TCP directly, browsers dial WebSockets directly; neither treats relayed or WebRTC addresses as direct', () => {
    const p = '12D3KooWGRUVh7JDKL1Ho8SzuZcy3VvBCe5KgjzdZ8ZJ2o4VvJwN'
    assert.equal(nodePlatform.canDialDirectly(multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${p}`)), true)
    assert.equal(nodePlatform.canDialDirectly(multiaddr('/ip6/::1/tcp/4001')), true)
    assert.equal(nodePlatform.canDialDirectly(multiaddr(`/ip4/127.0.0.1/tcp/4001/ws/p2p/${p}`)), false)
    assert.equal(nodePlatform.canDialDirectly(multiaddr(`/ip4/127.0.0.1/tcp/9000/p2p/${p}/p2p-circuit/p2p/${p}`)), false)
    assert.equal(browserPlatform.canDialDirectly(multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${p}`)), false)
    assert.equal(browserPlatform.canDialDirectly(multiaddr(`/ip4/127.0.0.1/tcp/4001/ws/p2p/${p}`)), true)
    assert.equal(browserPlatform.canDialDirectly(multiaddr('/dns4/example.org/tcp/443/tls/ws')), true)
    assert.equal(browserPlatform.canDialDirectly(multiaddr(`/ip4/127.0.0.1/tcp/9000/ws/p2p/${p}/p2p-circuit/webrtc/p2p/${p}`)), false)
    // a host name that merely contains "ws" is not a WebSocket address (a substring test said it was)
    assert.equal(browserPlatform.canDialDirectly(multiaddr('/dns4/ws.example.org/tcp/4001')), false)
  })
})
