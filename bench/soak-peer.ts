/**
 * One peer of the churn soak (bench/soak.ts), in its own OS process: a
 * persistent `NewPiecePlease` that meets the others through the relay, writes
 * a piece every `interval` ms and reports each acknowledged write (one whose
 * promise resolved) as it happens. JSON lines on stdout:
 *
 *   {"ready":{"peerId","multiaddrs","startMs"}}     once started
 *   {"ack":"<hash>","ms":12}                        a write resolved
 *   {"writeError":{"name","message"},"hash"}       a write rejected
 *   {"event":"db:discovered","nodeId"}              and companion:online/offline
 *   {"id":1,"result":...} / {"id":1,"error":{...}} answers to requests
 *
 * Requests on stdin, `{"id":1,"method":"view"}`: `own` (the own catalog's
 * soak hashes), `view` (own catalog, every replica's soak hashes by owner,
 * companions, sources, connected peer ids), `stopWriting` (resolves once the write in flight has
 * settled), `stats`, `stop` (then the process must exit by itself).
 *
 * Writes are sequential (one in flight at most), so the parent's set of
 * acknowledged hashes is exact: stdout is a pipe, written synchronously on
 * Linux, so an ack printed before a SIGKILL reaches the parent.
 */
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { createNewPiecePlease, type NewPiecePlease } from '../src/index.ts'

export interface SoakPeerInit {
  directory: string
  /** The relay's multiaddr (with `/p2p/<id>`). */
  relay: string
  username: string
  /** Prefix of this incarnation's hashes; a hash is `${prefix}${seq}`. */
  prefix: string
  /** Pause between two writes (ms). */
  interval: number
  /** Upper bound on writes (a safety net: the parent sends `stopWriting`). */
  maxWrites: number
  /** Time limit of each source of a `view` (ms). */
  viewTimeout: number
}

/** Every soak hash starts with this, so a view ignores anything else in a catalog. */
export const SOAK_HASH_PREFIX = 'soak:'
const INSTRUMENTS = ['Piano', 'Cello', 'Flute', 'Harp']

const init: SoakPeerInit = JSON.parse(process.argv[2] ?? '{}')
const send = (value: unknown): void => { process.stdout.write(JSON.stringify(value) + '\n') }
const errorOf = (err: any): { name: string, message: string } => ({ name: String(err?.name ?? 'Error'), message: String(err?.message ?? err) })

const started = performance.now()
let npp: NewPiecePlease
try {
  npp = await createNewPiecePlease({ directory: init.directory, relay: init.relay, username: init.username, listen: ['/ip4/127.0.0.1/tcp/0'] })
} catch (err: any) {
  process.stderr.write(`soak-peer: start failed: ${err?.name}: ${err?.message}${err?.cause != null ? ` (cause: ${err.cause?.code ?? err.cause?.message ?? err.cause})` : ''}\n`)
  process.exit(3)
}

for (const type of ['db:discovered', 'companion:online', 'companion:offline'] as const) {
  npp.addEventListener(type, (evt) => { send({ event: type, nodeId: evt.detail.nodeId }) })
}

// --- the write loop ---------------------------------------------------------
let writing = true
const pause = new AbortController()
const writer = (async () => {
  for (let seq = 0; seq < init.maxWrites; seq++) {
    if (!writing) break
    const hash = `${init.prefix}${seq}`
    const t0 = performance.now()
    try {
      await npp.addNewPiece(hash, INSTRUMENTS[seq % INSTRUMENTS.length])
      send({ ack: hash, ms: Math.round(performance.now() - t0) })
    } catch (err) {
      send({ writeError: errorOf(err), hash })
    }
    if (!writing) break
    try {
      await sleep(init.interval, undefined, { signal: pause.signal })
    } catch {
      break // stopWriting
    }
  }
})()

const soakHashes = (pieces: Array<{ hash: string }>): string[] => pieces.map(p => p.hash).filter(h => h.startsWith(SOAK_HASH_PREFIX))

const methods: Record<string, () => Promise<unknown>> = {
  async own () {
    return soakHashes(await npp.getAllPieces())
  },
  async view () {
    const own = soakHashes(await npp.getAllPieces())
    const { results, sources } = await npp.queryCatalog((piece) => piece.hash.startsWith(SOAK_HASH_PREFIX), { timeout: init.viewTimeout })
    const byOwner: Record<string, string[]> = {}
    for (const r of results) {
      if (r.owner === npp.peerId) continue
      ;(byOwner[r.owner] ??= []).push(r.hash)
    }
    const companions = (await npp.getCompanions()).map(c => ({ nodeId: c.nodeId, online: c.online }))
    return {
      own,
      byOwner,
      companions,
      sources: sources.filter(s => s.owner !== npp.peerId).map(s => ({ owner: s.owner, status: s.status, online: s.online, count: s.count })),
      peers: npp.getIpfsPeers()
    }
  },
  async stopWriting () {
    writing = false
    pause.abort()
    await writer
    return null
  },
  async stats () {
    return npp.stats
  },
  async stop () {
    writing = false
    pause.abort()
    await writer
    await npp.stop()
    return null
  }
}

const lines = createInterface({ input: process.stdin })
let stopping = false
// the parent is gone (even SIGKILLed): no orphan keeps writing
lines.on('close', () => { if (!stopping) process.exit(4) })
lines.on('line', (line) => {
  void (async () => {
    let id: unknown
    try {
      const request = JSON.parse(line)
      id = request.id
      const method = methods[request.method]
      if (method == null) throw new TypeError(`unknown method ${JSON.stringify(request.method)}`)
      send({ id, result: (await method()) ?? null })
      if (request.method === 'stop') {
        stopping = true
        lines.close()
      }
    } catch (err) {
      send({ id, error: errorOf(err) })
    }
  })()
})

send({ ready: { peerId: npp.peerId, multiaddrs: npp.getMultiaddrs(), startMs: Math.round(performance.now() - started) } })
