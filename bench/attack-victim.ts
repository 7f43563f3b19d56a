/**
 * The victim V of `npm run attack` (bench/attack.ts), in its own OS process
 * so that its RSS is its own. Starts a `NewPiecePlease` on loopback with
 * `pieces` pieces, then answers requests on stdin, one JSON line each:
 *
 *   {"id":1,"method":"write","count":5,"tag":"x","interval":200}  sequential addNewPiece, resolves to each one's ms
 *   {"id":2,"method":"stats"}                                      npp.stats, and the stack's bitswapWants
 *   {"id":3,"method":"stop"}                                       resolves to stop()'s ms, then the process exits
 *
 * Prints `{"ready":{peerId,multiaddrs,catalog}}` once started. `bitswap`
 * (JSON) is merged into the stack's BITSWAP_OPTIONS before start, to measure
 * a proposed limit without editing src/.
 */
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { createNewPiecePlease } from '../src/index.ts'
import { BITSWAP_OPTIONS } from '../src/stack/stack.ts'

interface VictimInit { directory: string, pieces: number, bitswap?: Record<string, number> }

const init: VictimInit = JSON.parse(process.argv[2] ?? '{}')
const send = (value: unknown): void => { process.stdout.write(JSON.stringify(value) + '\n') }

Object.assign(BITSWAP_OPTIONS, init.bitswap ?? {})
const npp = await createNewPiecePlease({ directory: init.directory, storage: 'memory', username: 'victim', listen: ['/ip4/127.0.0.1/tcp/0'] })
const INSTRUMENTS = ['Piano', 'Cello', 'Flute', 'Harp']
for (let i = 0; i < init.pieces; i += 500) {
  await npp.addPieces(Array.from({ length: Math.min(500, init.pieces - i) }, (_, j) => ({ hash: `QmSeed${i + j}`, instrument: INSTRUMENTS[(i + j) % 4]! })))
}
send({ ready: { peerId: npp.peerId, multiaddrs: npp.getMultiaddrs(), catalog: npp.databases.pieces.address } })

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  const req = JSON.parse(line)
  try {
    if (req.method === 'write') {
      const took: number[] = []
      for (let i = 0; i < req.count; i++) {
        const t0 = performance.now()
        await npp.addNewPiece(`Qm${req.tag as string}${i}`, 'Hurdy-gurdy')
        took.push(performance.now() - t0)
        if (req.interval > 0) await sleep(req.interval)
      }
      send({ id: req.id, result: took })
    } else if (req.method === 'stats') {
      // with what the stack's bitswap did with wants over a peer's budget (not in npp.stats)
      send({ id: req.id, result: { ...npp.stats, bitswapWants: { ...(npp as any).stack?.bitswapWants } } })
    } else if (req.method === 'stop') {
      const t0 = performance.now()
      await npp.stop()
      send({ id: req.id, result: performance.now() - t0 })
      lines.close()
      break
    }
  } catch (err: any) {
    send({ id: req.id, error: { name: String(err?.name), message: String(err?.message ?? err) } })
  }
}
