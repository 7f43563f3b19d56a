/**
 * Hostile connections (issue 10, findings 5 and 6): sockets that open and
 * then stall (a slowloris) must not lock honest peers out, not even those
 * behind the same address, and a crowd behind one address still gets in;
 * relay reservations taken by throwaway peers are given back when they
 * leave, and refusals are counted in `/health`. The attackers are raw
 * sockets and bare libp2p nodes; the victim peer runs in its own process
 * (test/helpers/attacker-target.ts), so its memory is measured alone.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { tryGetNetConfig } from '@libp2p/utils'
import type { NewPiecePlease } from '../../src/index.ts'
import { relay, tcpOf } from '../helpers/relay.ts'
import { peer } from '../helpers/peers.ts'
import { Target, memoryAcross, ownMemoryAcross, describeMemory, assertMemory, type MemoryBounds } from '../helpers/attacker-target.ts'

/**
 * Finding 5: how far the victim's RSS may rise while 200 sockets stall on
 * it, or 20 peers from one address take what connections they can, and how
 * much more it may hold after (heap and buffers, after a GC). A pending
 * upgrade costs a socket and a handshake state, a connection its muxer and
 * a few streams: measured RSS +1-3 MB, held +1-2 MB. The bounds guard
 * against connections or upgrades whose state is kept after they close.
 */
const SLOWLORIS_MEMORY: MemoryBounds = { peak: 60, held: 20 }
const CONNECTIONS_MEMORY: MemoryBounds = { peak: 100, held: 30 }
/**
 * Finding 6 runs the relay in this process, beside the throwaway peers that
 * take its reservations: how far this process's RSS may rise while 5 peers
 * reserve, leave and reserve again. A reservation is a record and a
 * connection: measured +7-16 MB, most of it the throwaways' own libp2p
 * nodes. A generous bound, for a process that holds the attackers too.
 */
const RESERVATIONS_PEAK_MB = 60

/** The TCP port of a listen address. */
function portOf (addr: Multiaddr): number {
  return tryGetNetConfig(addr)?.port ?? 0
}

/**
 * `count` raw TCP sockets to 127.0.0.1:`port` from `localAddress`, each
 * sending one byte (the start of a multistream-select header) and then
 * nothing. Resolves once each is connected or closed; `open()` says how
 * many the victim has not closed.
 */
async function slowloris (port: number, count: number, localAddress = '127.0.0.1'): Promise<{ open(): number, destroy(): void }> {
  const sockets: net.Socket[] = []
  const connect = async (): Promise<void> => await new Promise<void>(resolve => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress }, () => { socket.write(Uint8Array.of(0x13)); resolve() })
    socket.on('error', () => {})
    socket.on('close', () => { resolve() })
    sockets.push(socket)
  })
  await Promise.all(Array.from({ length: count }, connect))
  return {
    open: () => sockets.filter(s => !s.destroyed && s.readyState === 'open').length,
    destroy: () => { for (const s of sockets) s.destroy() }
  }
}

/**
 * Dial `addr` from `p` until it connects or `ms` have passed; resolves with
 * the time it took and the attempts made. A refused inbound connection fails
 * at once (the victim resets it), so failed attempts are spaced by a short
 * pause, as a peer redialing would: no event says a slot is free again.
 */
async function dialWithin (p: NewPiecePlease, addr: string, ms: number): Promise<{ ms: number, attempts: number }> {
  const start = Date.now()
  let attempts = 0
  let last: unknown
  while (Date.now() - start < ms) {
    attempts++
    try {
      await p.libp2p.dial(multiaddr(addr), { signal: AbortSignal.timeout(Math.max(1, ms - (Date.now() - start))) })
      return { ms: Date.now() - start, attempts }
    } catch (err) {
      last = err
      await delay(200)
    }
  }
  throw new Error(`no connection within ${ms} ms (${attempts} attempts): ${String((last as any)?.message ?? last)}`)
}

/** A bare libp2p node (TCP, noise, yamux) dialing from `localAddress`. */
async function bareNode (localAddress = '127.0.0.1'): Promise<Libp2p> {
  return await createLibp2p({
    // @libp2p/tcp passes dialOpts on to net.connect, which takes a local address
    transports: [tcp({ dialOpts: { localAddress } as any })],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
}

describe('hostile connections', () => {
  it('a slowloris on the victim\'s port, from the honest peer\'s own address, delays an honest dial by seconds at most', async (t) => {
    const [victim, honest] = await Promise.all([Target.start({ pubsubDiscovery: false }), peer({ pubsubDiscovery: false })])
    const addr = victim.addr
    const memory = await memoryAcross(victim, async () => {
      // more than any pending limit: those over it are refused, the rest held half-open
      const attack = await slowloris(portOf(multiaddr(addr)), 200)
      try {
        const held = attack.open()
        assert.ok(held >= 10, `the attack holds slots (${held} sockets open)`)
        // before: refused until libp2p's 10 s upgrade timeout dropped the held sockets
        const { ms } = await dialWithin(honest, addr, 5_000)
        assert.ok(honest.getIpfsPeers().includes(victim.peerId), `connected after ${ms} ms`)
        assert.ok(attack.open() > 0, 'while the attack still holds sockets')
      } finally {
        attack.destroy()
      }
    })
    t.diagnostic(describeMemory(memory))
    assertMemory(memory, SLOWLORIS_MEMORY)
  })

  it('a slowloris from another address takes nothing from a crowd of 20 peers behind one address: all get in at once', async (t) => {
    const victim = await Target.start({ pubsubDiscovery: false })
    const addr = multiaddr(victim.addr)
    // bare libp2p nodes: only getting in is tested (20 catalog peers meeting the victim would also keep the CPU busy for seconds)
    const crowd = await Promise.all(Array.from({ length: 20 }, async () => await bareNode()))
    try {
      const memory = await memoryAcross(victim, async () => {
        const attack = await slowloris(portOf(addr), 200, '127.0.0.2')
        try {
          assert.ok(attack.open() >= 10, `the attack holds slots (${attack.open()} sockets open)`)
          // one attempt each (no retries): nothing here may be refused
          const results = await Promise.allSettled(crowd.map(async p => await p.dial(addr, { signal: AbortSignal.timeout(5_000) })))
          const failed = results.filter(r => r.status === 'rejected').map(r => String((r as PromiseRejectedResult).reason?.message))
          assert.deepEqual(failed, [], `${failed.length} of 20 refused`)
          assert.ok(attack.open() > 0, 'while the attack still holds sockets')
        } finally {
          attack.destroy()
        }
      })
      t.diagnostic(describeMemory(memory))
      assertMemory(memory, SLOWLORIS_MEMORY)
    } finally {
      await Promise.allSettled(crowd.map(async p => { await p.stop() }))
    }
  })

  it('connections from one address cannot take every connection slot: an honest peer still gets in', async (t) => {
    const [victim, honest] = await Promise.all([Target.start({ pubsubDiscovery: false }), peer({ pubsubDiscovery: false })])
    const addr = multiaddr(victim.addr)
    // throwaway peer ids, all dialing from 127.0.0.2
    const attackers = await Promise.all(Array.from({ length: 20 }, async () => await bareNode('127.0.0.2')))
    const memory = await memoryAcross(victim, async () => {
      // each takes as many connections as it can (libp2p's Node cap is 300),
      // paced by the victim's per-address rate limit: a refused dial is
      // retried after a short pause, until 300 are open or none got in for
      // 1.5 s
      const open = (): number => attackers.reduce((n, a) => n + a.getConnections().length, 0)
      const deadline = Date.now() + 10_000
      let lastIn = Date.now()
      const more = async (a: Libp2p): Promise<void> => {
        while (open() < 300 && Date.now() < deadline && Date.now() - lastIn < 1_500) {
          try {
            await a.dial(addr, { force: true, signal: AbortSignal.timeout(2_000) })
            lastIn = Date.now()
          } catch {
            await delay(50)
          }
        }
      }
      await Promise.all(attackers.map(more))
      const held = open()
      try {
        assert.ok(held >= 64, `the attack holds connections (${held})`)
        // before: 300 held, every inbound dial refused
        const { ms } = await dialWithin(honest, addr.toString(), 3_000)
        assert.ok(honest.getIpfsPeers().includes(victim.peerId), `connected after ${ms} ms beside ${held} connections from one address`)
      } finally {
        await Promise.allSettled(attackers.map(async a => { await a.stop() }))
      }
    })
    t.diagnostic(describeMemory(memory))
    assertMemory(memory, CONNECTIONS_MEMORY)
  })

  it('relay reservations of peers that left are given back at once; refusals and releases are counted in /health', async (t) => {
    const r = await relay({ listen: ['/ip4/127.0.0.1/tcp/0'], maxReservations: 4 })
    const relayAddr = tcpOf(r)
    const health = async (): Promise<any> => await (await fetch(`${r.httpUrl}/health`)).json()
    const nodes: Libp2p[] = []
    /** A bare libp2p node that asks the relay for a reservation when it starts (start fails if refused). */
    const reserver = async (): Promise<Libp2p> => {
      const node = await createLibp2p({
        start: false,
        addresses: { listen: [`${relayAddr}/p2p-circuit`] },
        transports: [tcp(), circuitRelayTransport()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        services: { identify: identify() }
      })
      nodes.push(node)
      await node.start()
      return node
    }
    const memory = await ownMemoryAcross(async () => {
      // throwaway peers take every reservation
      const throwaways = await Promise.all(Array.from({ length: 4 }, reserver))
      assert.equal((await health()).reservations, 4)
      const expiry = (r.libp2p.services as any).relay.reservations.get(throwaways[0]!.peerId).expiry.getTime()
      assert.ok(expiry - Date.now() <= 15 * 60_000, `a reservation lasts minutes, not libp2p's 2 h (${Math.round((expiry - Date.now()) / 60_000)} min)`)

      // one more is refused, and counted
      await assert.rejects(reserver(), /RESERVATION_REFUSED/)
      const full = await health()
      assert.equal(full.reservationsRefused, 1)

      // they leave: their reservations go with them
      const gone = new Set(throwaways.map(t => t.peerId.toString()))
      const left = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error(`the relay did not see ${gone.size} throwaway peer(s) leave within 10 s`)) }, 10_000)
        const onDisconnect = (evt: CustomEvent): void => {
          gone.delete(evt.detail.toString())
          if (gone.size > 0) return
          clearTimeout(timer)
          r.libp2p.removeEventListener('peer:disconnect', onDisconnect)
          resolve()
        }
        r.libp2p.addEventListener('peer:disconnect', onDisconnect)
      })
      await Promise.all(throwaways.map(async t => { await t.stop() }))
      await left
      const after = await health()
      assert.equal(after.reservations, 0, 'before: all 4 held for 2 h after their peers left')
      assert.equal(after.reservationsReleased, 4)

      // an honest peer now gets one at once
      const started = Date.now()
      const honest = await reserver()
      assert.ok(honest.getMultiaddrs().some(m => m.toString().includes('/p2p-circuit')), 'reachable through the relay')
      assert.ok(Date.now() - started < 5_000)
      assert.equal((await health()).reservations, 1)
    }).finally(async () => {
      await Promise.allSettled(nodes.map(async n => { await n.stop() }))
    })
    t.diagnostic(`RSS of this process (relay and throwaways) ${memory.baseline.toFixed(0)} → peak ${memory.peak.toFixed(0)} MB`)
    assert.ok(memory.peak - memory.baseline < RESERVATIONS_PEAK_MB, `the relay's process rose by less than ${RESERVATIONS_PEAK_MB} MB: ${memory.baseline.toFixed(0)} → ${memory.peak.toFixed(0)} MB`)
  })
})
