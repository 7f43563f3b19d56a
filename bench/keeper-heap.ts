/**
 * Where a keeper's heap goes: a keeper started from a fixture copy
 * (`<fixture dir>`), every kept user open, then a V8 heap snapshot
 * aggregated by constructor (self size; strings by type) and printed as
 * JSON. Not part of `npm run bench:keeper`; run by hand:
 *
 *   node --conditions=npp-source bench/keeper-heap.ts "$(node -p 'require("os").tmpdir()')/npp-keeper-fixture-v1/u100-p1000" 100
 */
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { writeHeapSnapshot } from 'node:v8'
import { setTimeout as sleep } from 'node:timers/promises'
import { createNewPiecePlease } from '../src/index.ts'

const [fixture, users] = [process.argv[2]!, Number(process.argv[3])]
const work = await mkdtemp(join(tmpdir(), 'npp-keeper-heap-'))
await cp(fixture, join(work, 'k'), { recursive: true })
const k = await createNewPiecePlease({ directory: join(work, 'k'), listen: ['/ip4/127.0.0.1/tcp/0'], keeper: { open: true, maxUsers: users + 16 } })
while ((k.keeperService?.storage().replicas ?? 0) < 3 * users) await sleep(50)
await sleep(2000)
const file = writeHeapSnapshot(join(work, 'heap.heapsnapshot'))
const snap = JSON.parse(await readFile(file, 'utf8'))
const f = snap.snapshot.meta.node_fields as string[]
const types = snap.snapshot.meta.node_types[0] as string[]
const [TYPE, NAME, SIZE] = [f.indexOf('type'), f.indexOf('name'), f.indexOf('self_size')]
const by = new Map<string, { n: number, bytes: number }>()
for (let i = 0; i < snap.nodes.length; i += f.length) {
  const type = types[snap.nodes[i + TYPE]]!
  const key = /string/.test(type) ? type : `${type}:${snap.strings[snap.nodes[i + NAME]]}`.slice(0, 60)
  const e = by.get(key) ?? { n: 0, bytes: 0 }
  e.n++; e.bytes += snap.nodes[i + SIZE]
  by.set(key, e)
}
let total = 0
for (const e of by.values()) total += e.bytes
const top = [...by].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 40)
console.log(JSON.stringify({ total, top }, null, 0).replace(/\],\[/g, '],\n['))
await k.stop()
await rm(work, { recursive: true, force: true })
