/**
 * `npm run attack` (issue 10): the hostile suite's attacks, longer and bigger
 * than the tests, each against an honest victim V (its own OS process, with
 * `--pieces` pieces) and its honest companion H (this process). Per attack,
 * a markdown table: V's write latency before and during the attack, whether
 * and how fast H sees the pieces V writes during it, V's RSS (VmRSS of its
 * process, polled every second) before, at its peak during and after, and
 * how long V's stop() takes while the attack runs again.
 *
 *   npm run attack                     every attack, ~30 s each, 30 s after
 *   npm run attack -- --quick          ~10 s each, 10 s after (a smoke run)
 *   npm run attack -- --only bitswap   one attack (names below)
 *   npm run attack -- --only bitswap --bitswap '{"maxIncomingMessageSize":1048576}'
 *                                      V built with these @helia/bitswap options
 *
 * Loopback only, OS-chosen ports, temp dirs; every child is killed on exit.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import net from 'node:net'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
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
import { tryGetNetConfig } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import * as Block from 'multiformats/block'
import * as dagCbor from '@ipld/dag-cbor'
import { sha256 } from 'multiformats/hashes/sha2'
import { base58btc } from 'multiformats/bases/base58'
import { fromString } from 'uint8arrays'
import { createNewPiecePlease, type NewPiecePlease } from '../src/index.ts'
import { publishToPeer } from '../src/peering/publish.ts'
import { throwaway, junk } from '../test/helpers/junk.ts'
import { BitswapAttacker } from '../test/helpers/bitswap-flood.ts'
import { within } from './results.ts'

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    pieces: { type: 'string', default: '1000' },
    bitswap: { type: 'string' }
  }
})
const QUICK = args.quick
const ATTACK_MS = QUICK ? 10_000 : 30_000
const AFTER_MS = QUICK ? 10_000 : 30_000
const PIECES = Number(args.pieces)
const WRITE_INTERVAL = 250
const BASELINE_WRITES = 20
const LOOPBACK = ['/ip4/127.0.0.1/tcp/0']

const children = new Set<ChildProcess>()
const dirs: string[] = []
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { process.exit(130) })

const median = (xs: number[]): number => quantile(xs, 0.5)
function quantile (xs: number[], q: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}
const ms = (x: number): string => Number.isNaN(x) ? 'n/a' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`

// --- the victim's process ----------------------------------------------------

interface Victim {
  proc: ChildProcess
  peerId: string
  addr: string
  catalog: string
  request: (method: string, params?: object, limit?: number) => Promise<any>
  rss: () => number
  exited: Promise<void>
}

async function startVictim (bitswap?: Record<string, number>): Promise<Victim> {
  const directory = await mkdtemp(join(tmpdir(), 'npp-attack-'))
  dirs.push(directory)
  const proc = spawn(process.execPath, ['--conditions=npp-source', join(import.meta.dirname, 'attack-victim.ts'), JSON.stringify({ directory, pieces: PIECES, bitswap })], { stdio: ['pipe', 'pipe', 'inherit'] })
  children.add(proc)
  const exited = new Promise<void>(resolve => { proc.on('exit', () => { children.delete(proc); resolve() }) })
  const waiting = new Map<number, (v: any) => void>()
  let ready!: (v: any) => void
  const readyP = new Promise<any>((resolve, reject) => { ready = resolve; setTimeout(() => { reject(new Error('victim not ready within 60 s')) }, 60_000).unref() })
  createInterface({ input: proc.stdout! }).on('line', line => {
    let msg: any
    try { msg = JSON.parse(line) } catch { return }
    if (msg.ready != null) ready(msg.ready)
    else if (msg.id != null) waiting.get(msg.id)?.(msg)
  })
  const r = await readyP
  let nextId = 1
  const request = async (method: string, params: object = {}, limit = 120_000): Promise<any> => {
    const id = nextId++
    const answer = new Promise<any>(resolve => { waiting.set(id, resolve) })
    proc.stdin!.write(JSON.stringify({ id, method, ...params }) + '\n')
    const msg = await within(limit, answer)
    waiting.delete(id)
    if (msg === undefined) throw new Error(`${method}: no answer within ${limit} ms`)
    if (msg.error != null) throw new Error(`${method}: ${msg.error.name as string}: ${msg.error.message as string}`)
    return msg.result
  }
  const rss = (): number => {
    try {
      const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid!}/status`, 'utf8'))?.[1]
      return kb == null ? NaN : Number(kb) / 1024
    } catch {
      return NaN
    }
  }
  return { proc, peerId: r.peerId, addr: r.multiaddrs[0], catalog: r.catalog, request, rss, exited }
}

// --- helpers shared by the attacks ---------------------------------------------

async function peer (username: string): Promise<NewPiecePlease> {
  const directory = await mkdtemp(join(tmpdir(), 'npp-attack-'))
  dirs.push(directory)
  return await createNewPiecePlease({ directory, storage: 'memory', listen: LOOPBACK, username })
}

async function discovered (npp: NewPiecePlease, nodeId: string, limit = 20_000): Promise<void> {
  if ((await npp.getCompanions()).some(c => c.nodeId === nodeId)) return
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { npp.removeEventListener('db:discovered', on); reject(new Error(`${nodeId} not discovered within ${limit} ms`)) }, limit)
    const on = (e: CustomEvent<{ nodeId: string }>): void => {
      if (e.detail.nodeId !== nodeId) return
      clearTimeout(timer)
      npp.removeEventListener('db:discovered', on)
      resolve()
    }
    npp.addEventListener('db:discovered', on)
  })
}

async function seesSubscriber (who: NewPiecePlease, topic: string, subscriber: string, limit = 10_000): Promise<void> {
  const pubsub = who.libp2p.services.pubsub as any
  const deadline = Date.now() + limit
  while (!pubsub.getSubscribers(topic).some((p: any) => p.toString() === subscriber)) {
    if (Date.now() > deadline) throw new Error(`${subscriber} not seen on ${topic}`)
    await sleep(100)
  }
}

/** Three throwaway identities to sign junk entries in turn. */
async function strangers (): Promise<any[]> {
  return await Promise.all([1, 2, 3].map(async i => await throwaway(`stranger-${i}`)))
}

async function ghost (name: string): Promise<string> {
  const { cid } = await Block.encode({ value: { name, type: 'keyvalue', accessController: '/ipfs/nothing' }, codec: dagCbor, hasher: sha256 })
  return `/orbitdb/${cid.toString(base58btc)}`
}

async function bareNode (pubsub = false): Promise<Libp2p<any>> {
  return await createLibp2p({
    addresses: { listen: LOOPBACK },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: (pubsub ? { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) } : { identify: identify() }) as any
  })
}

/** Run `step` until stopped (each step awaited, errors counted): bounded by the caller's stop. */
function loop (step: (i: number) => Promise<void>, pause = 0): { stop: () => Promise<void>, errors: () => number } {
  const state = { stopped: false, errors: 0 }
  const running = (async () => {
    for (let i = 0; !state.stopped; i++) {
      await step(i).catch(() => { state.errors++ })
      await sleep(pause)
    }
  })()
  return { stop: async () => { state.stopped = true; await within(15_000, running) }, errors: () => state.errors }
}

async function sendAll (stream: Stream, messages: Uint8Array[]): Promise<void> {
  for (const bytes of messages) {
    if (!stream.send(bytes)) await stream.onDrain()
  }
}

// --- the attacks --------------------------------------------------------------

interface Ctx { victim: Victim, honest: NewPiecePlease, attacker: NewPiecePlease, sent: Record<string, number>, cache: Record<string, any> }
interface Attack {
  name: string
  what: string
  /** Prepare (connect, make material); not timed. */
  setup?: (ctx: Ctx) => Promise<void>
  /** Start the attack; resolves with its stop. */
  start: (ctx: Ctx) => Promise<() => Promise<void>>
}

const ATTACKS: Attack[] = [
  {
    name: 'entries',
    what: 'signed log entries from throwaway identities (published nowhere), published on V\'s catalog topic as fast as gossipsub takes them',
    setup: async ({ victim, attacker, cache }) => {
      await attacker.connectToPeer(victim.addr)
      await seesSubscriber(attacker, victim.catalog, victim.peerId)
      cache.entries ??= await junk(await strangers(), victim.catalog, QUICK ? 300 : 1000, 'Junk')
    },
    start: async ({ victim, attacker, sent, cache }) => {
      const pubsub = attacker.libp2p.services.pubsub
      const l = loop(async (i) => { await pubsub.publish(victim.catalog, cache.entries[i % cache.entries.length]); sent.entries = (sent.entries ?? 0) + 1 }, 2)
      return l.stop
    }
  },
  {
    name: 'heads',
    what: 'the same junk entries sent as heads over OrbitDB\'s heads protocol, on streams the attacker dials again and again (and answering V\'s dials)',
    setup: async ({ victim, attacker, cache }) => {
      await attacker.connectToPeer(victim.addr)
      cache.heads ??= await junk(await strangers(), victim.catalog, 200, 'Head')
    },
    start: async ({ victim, attacker, sent, cache }) => {
      const protocol = `/orbitdb/heads${victim.catalog}`
      await attacker.libp2p.handle(protocol, async (stream) => { await sendAll(stream, cache.heads).catch(() => {}) }, { force: true })
      attacker.libp2p.services.pubsub.subscribe(victim.catalog)
      const id = peerIdFromString(victim.peerId)
      const l = loop(async () => {
        const stream = await attacker.libp2p.dialProtocol(id, protocol, { signal: AbortSignal.timeout(5000) })
        sent.streams = (sent.streams ?? 0) + 1
        await sendAll(stream, cache.heads)
        sent.heads = (sent.heads ?? 0) + cache.heads.length
      }, 5)
      return async () => {
        await l.stop()
        attacker.libp2p.services.pubsub.unsubscribe(victim.catalog)
        await attacker.libp2p.unhandle(protocol)
      }
    }
  },
  {
    name: 'flood',
    what: 'announcements of never-resolving user dbs, each signed with a fresh key, over one connected neighbour',
    setup: async ({ victim, attacker }) => {
      await attacker.connectToPeer(victim.addr)
      await discovered(attacker, victim.peerId)
    },
    start: async ({ victim, attacker, sent }) => {
      const pubsub = attacker.libp2p.services.pubsub as unknown as { publishConfig: unknown, publish: GossipSub['publish'] }
      const own = pubsub.publishConfig
      const l = loop(async (i) => {
        const privateKey = await generateKeyPair('Ed25519')
        const author = peerIdFromPrivateKey(privateKey)
        pubsub.publishConfig = { type: PublishConfigType.Signing, author, key: publicKeyToProtobuf(privateKey.publicKey), privateKey }
        try {
          await pubsub.publish(victim.peerId, fromString(JSON.stringify({ userDb: await ghost(`flood-${Date.now()}-${i}`) })))
          sent.announcements = (sent.announcements ?? 0) + 1
        } finally {
          pubsub.publishConfig = own
        }
      }, 2)
      return l.stop
    }
  },
  {
    name: 'sybil',
    what: 'bare libp2p nodes, each directly connected, announcing a profile of its own peer id written by the attacker\'s one OrbitDB identity',
    setup: async ({ victim, attacker }) => {
      await attacker.connectToPeer(victim.addr)
      await discovered(attacker, victim.peerId)
    },
    start: async ({ victim, attacker, sent, cache }) => {
      cache.sybils ??= []
      const max = QUICK ? 10 : 40
      const l = loop(async (i) => {
        if ((sent.sybils ?? 0) >= max) { await sleep(200); return }
        const node = await bareNode(true)
        cache.sybils.push(node)
        const profile = await attacker.orbitdb.open<any>(`sybil-${Date.now()}-${i}`, { type: 'keyvalue', Database: KeyValue(), AccessController: IPFSAccessController({ write: [attacker.orbitdb.identity.id] }) })
        await profile.put('nodeId', node.peerId.toString())
        await profile.put('pieces', attacker.databases.pieces.address)
        await node.dial(multiaddr(victim.addr))
        sent.sybils = (sent.sybils ?? 0) + 1
        publishToPeer(node.services.pubsub as GossipSub, victim.peerId, peerIdFromString(victim.peerId), fromString(JSON.stringify({ userDb: profile.address })), { signal: AbortSignal.timeout(10_000), attempts: 20 }).catch(() => {})
      }, 100)
      return async () => {
        await l.stop()
        const sybils: Libp2p[] = cache.sybils.splice(0)
        await Promise.allSettled(sybils.map(async n => { await n.stop() }))
      }
    }
  },
  {
    name: 'slowloris',
    what: '200 raw TCP sockets to V\'s port, each sending one byte and then nothing, reopened as V closes them',
    start: async ({ victim, sent }) => {
      const port = tryGetNetConfig(multiaddr(victim.addr))?.port ?? 0
      const sockets = new Set<net.Socket>()
      const open = (): void => {
        const socket = net.connect({ host: '127.0.0.1', port }, () => { socket.write(Uint8Array.of(0x13)) })
        socket.on('error', () => {})
        socket.on('close', () => { sockets.delete(socket) })
        sockets.add(socket)
        sent.sockets = (sent.sockets ?? 0) + 1
      }
      const l = loop(async () => { while (sockets.size < 200) open() }, 250)
      return async () => {
        await l.stop()
        for (const s of sockets) s.destroy()
      }
    }
  },
  {
    name: 'bitswap',
    what: 'finding 7: a bare libp2p node sends /ipfs/bitswap/1.2.0 wantlists of 1,000 random want-haves (sendDontHave) per message, 4 streams at once, reads V\'s answers, and sends 18 unsolicited 3.9 MB blocks (test/helpers/bitswap-flood.ts)',
    setup: async ({ cache }) => { cache.bitswap ??= await BitswapAttacker.start() },
    start: async ({ victim, sent, cache }) => {
      const attacker: BitswapAttacker = cache.bitswap
      const answered = attacker.presences
      const flood = await attacker.flood(victim.addr, { streams: 4, wantsPerMessage: 1000, blocks: 18, ms: ATTACK_MS + 120_000 })
      return async () => {
        await flood.stop()
        sent.wantHaves = (sent.wantHaves ?? 0) + flood.sent.wantHaves
        sent.blocks = (sent.blocks ?? 0) + flood.sent.blocks
        sent.streamErrors = (sent.streamErrors ?? 0) + flood.sent.errors
        sent.answeredByV = (sent.answeredByV ?? 0) + attacker.presences - answered
        await attacker.libp2p.hangUp(peerIdFromString(victim.peerId)).catch(() => {})
      }
    }
  }
]

// --- one run ------------------------------------------------------------------

interface Result { attack: Attack, rows: Array<[string, string]> }

async function haveAll (honest: NewPiecePlease, owner: string, tag: string, count: number, limit: number): Promise<{ seen: number, ms: number }> {
  const t0 = Date.now()
  let seen = 0
  while (Date.now() - t0 < limit) {
    const { results } = await honest.queryCatalog({ instrument: 'Hurdy-gurdy' }, { timeout: 2000 })
    seen = results.filter(r => r.owner === owner && r.hash.startsWith(`Qm${tag}`)).length
    if (seen >= count) break
    await sleep(100)
  }
  return { seen, ms: Date.now() - t0 }
}

async function run (attack: Attack, attacker: NewPiecePlease, cache: Record<string, any>): Promise<Result> {
  const bitswap = args.bitswap != null ? JSON.parse(args.bitswap) : undefined
  const victim = await startVictim(bitswap)
  const honest = await peer('honest')
  const samples: Array<{ t: number, phase: string, mb: number }> = []
  let phase = 'before'
  const sampler = setInterval(() => { samples.push({ t: Date.now(), phase, mb: victim.rss() }) }, 1000)
  const sent: Record<string, number> = {}
  const ctx: Ctx = { victim, honest, attacker, sent, cache }
  const rows: Array<[string, string]> = []
  try {
    await honest.connectToPeer(victim.addr)
    await discovered(honest, victim.peerId)
    await attack.setup?.(ctx)
    const before = await victim.request('write', { count: BASELINE_WRITES, tag: 'Before', interval: 50 })
    const seenBefore = await haveAll(honest, victim.peerId, 'Before', BASELINE_WRITES, 15_000)
    const rssBefore = victim.rss()

    phase = 'during'
    const t0 = Date.now()
    const stopAttack = await attack.start(ctx)
    const count = Math.ceil(ATTACK_MS / WRITE_INTERVAL)
    let during: number[] = []
    let writeError = ''
    try {
      during = await victim.request('write', { count, tag: 'During', interval: WRITE_INTERVAL }, ATTACK_MS + 60_000)
    } catch (err: any) {
      writeError = String(err.message)
    }
    const seenDuring = await haveAll(honest, victim.peerId, 'During', count, 30_000)
    const left = ATTACK_MS - (Date.now() - t0)
    if (left > 0) await sleep(left)
    const statsDuring = await victim.request('stats', {}, 10_000).catch(() => undefined)
    await stopAttack()
    const attackMs = Date.now() - t0
    const peak = Math.max(...samples.filter(s => s.phase === 'during').map(s => s.mb), victim.rss())

    phase = 'after'
    await sleep(AFTER_MS)
    const rssAfter = victim.rss()

    // stop() while the attack runs again
    phase = 'stop'
    const stopAgain = await attack.start(ctx)
    await sleep(3000)
    let stopMs: string
    try {
      stopMs = ms(await victim.request('stop', {}, 30_000))
      const exited = await within(10_000, victim.exited.then(() => true))
      stopMs += exited === true ? ', process exited by itself' : ', process still alive 10 s later (killed)'
    } catch (err: any) {
      stopMs = `did not complete: ${String(err.message)}`
    }
    await stopAgain()

    const refused = (rec: Record<string, number> | undefined): string => Object.entries(rec ?? {}).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'
    rows.push(
      ['attack ran', `${(attackMs / 1000).toFixed(1)} s; sent: ${Object.entries(sent).map(([k, n]) => `${k} ${n.toLocaleString('en-US')}`).join(', ') || 'n/a'}`],
      ['V\'s addNewPiece before (median / p95)', `${ms(median(before))} / ${ms(quantile(before, 0.95))} (${before.length} writes)`],
      ['V\'s addNewPiece during (median / p95, max)', writeError !== '' ? `failed: ${writeError}` : `${ms(median(during))} / ${ms(quantile(during, 0.95))}, max ${ms(Math.max(...during))} (${during.length} writes, one every ${WRITE_INTERVAL} ms)`],
      ['H sees V\'s pieces written before', `${seenBefore.seen}/${BASELINE_WRITES}`],
      ['H sees V\'s pieces written during', `${seenDuring.seen}/${count}, ${seenDuring.seen >= count ? (seenDuring.ms < 100 ? `all there at the first look, ${WRITE_INTERVAL} ms after V's last write` : `all ${ms(seenDuring.ms + WRITE_INTERVAL)} after V's last write`) : 'NOT all within 30 s of V\'s last write'}`],
      ['V\'s RSS before / peak during / after', `${rssBefore.toFixed(0)} / ${peak.toFixed(0)} / ${rssAfter.toFixed(0)} MB (after = ${AFTER_MS / 1000} s after the attack stopped)`],
      ['V\'s stop() with the attack running again', stopMs],
      ['V refused (during)', `messagesDropped: ${refused(statsDuring?.messagesDropped)}; entriesRejected: ${refused(statsDuring?.entriesRejected)}; bitswap wants of a peer over its budget: ${refused(statsDuring?.bitswapWants)}`]
    )
  } finally {
    clearInterval(sampler)
    victim.proc.kill('SIGKILL')
    await honest.stop()
    for (const c of attacker.libp2p.getConnections()) {
      if (c.remotePeer.toString() === victim.peerId) await c.close().catch(() => {})
    }
  }
  return { attack, rows }
}

const chosen = ATTACKS.filter(a => args.only == null || args.only.split(',').includes(a.name))
console.log(`# npm run attack${QUICK ? ' -- --quick' : ''}${args.bitswap != null ? ` (V's bitswap options: ${args.bitswap})` : ''}\n`)
console.log(`V: ${PIECES.toLocaleString('en-US')} pieces, its own process; H and the attacker in this one; each attack ${ATTACK_MS / 1000} s, RSS ${AFTER_MS / 1000} s after; Node ${process.version}.\n`)
const attacker = await peer('attacker')
const cache: Record<string, any> = {}
try {
  for (const attack of chosen) {
    try {
      const { rows } = await run(attack, attacker, cache)
      console.log(`## ${attack.name}: ${attack.what}\n`)
      console.log('| measure | value |\n|---|---|')
      for (const [k, v] of rows) console.log(`| ${k} | ${v} |`)
      console.log('')
    } catch (err: any) {
      console.log(`## ${attack.name}: FAILED TO RUN: ${String(err?.stack ?? err)}\n`)
    }
  }
} finally {
  await within(15_000, attacker.stop())
  if (cache.bitswap != null) await within(5_000, cache.bitswap.stop())
  for (const c of children) c.kill('SIGKILL')
  await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
}
process.exit(0)
