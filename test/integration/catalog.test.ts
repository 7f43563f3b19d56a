import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { Documents, IPFSAccessController, useDatabaseType } from '@orbitdb/core'
import { Level } from 'level'
import { createStack, type Stack } from '../../src/stack/stack.ts'
import { Catalog, CATALOG_TYPE } from '../../src/catalog/catalog.ts'
import { sublevelName } from '../../src/stack/shared-storage.ts'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as dagCbor from '@ipld/dag-cbor'
import { LOOPBACK, tempDir, dbCondition } from '../helpers/peers.ts'
import { sameJson } from '../../src/utils/json.ts'

/**
 * The catalog index of `address` as stored in the node's shared store at
 * `directory` (the node must be stopped: the store is locked while open).
 */
async function catalogIndex (directory: string, address: string, valueEncoding: 'view' | 'utf8' = 'view'): Promise<{ keys(): Promise<string[]>, get(key: string): Promise<any>, put(key: string, value: any): Promise<void>, del(key: string): Promise<void>, clear(): Promise<void>, close(): Promise<void> }> {
  const level = new Level<string, any>(join(directory, 'orbitdb', 'shared'))
  await level.open()
  const sub = level.sublevel<string, any>(sublevelName(address, 'catalog'), { valueEncoding })
  return {
    keys: async () => await sub.keys().all(),
    get: async (key) => await sub.get(key),
    put: async (key, value) => { await sub.put(key, value) },
    del: async (key) => { await sub.del(key) },
    clear: async () => { await sub.clear() },
    close: async () => { await level.close() }
  }
}

const guard = fileURLToPath(new URL('../setup/guard.ts', import.meta.url))
const writer = fileURLToPath(new URL('../fixtures/catalog-writer.ts', import.meta.url))

useDatabaseType(Catalog)

/** Deterministic pseudo-random numbers (mulberry32). */
function random (seed: number): () => number {
  return () => {
    seed |= 0; seed = seed + 0x6D2B79F5 | 0
    let t = Math.imul(seed ^ seed >>> 15, 1 | seed)
    t = t + Math.imul(t ^ t >>> 7, 61 | t) ^ t
    return ((t ^ t >>> 14) >>> 0) / 4294967296
  }
}

type Op = { put: { hash: string, instrument: string, n: number } } | { del: string }
const INSTRUMENTS = ['Piano', 'Cello', 'Flute', 'Harp']

function operations (seed: number, count: number, keys: number): Op[] {
  const rnd = random(seed)
  return Array.from({ length: count }, (_, n) => {
    const hash = `Qm${Math.floor(rnd() * keys)}`
    return rnd() < 0.2 ? { del: hash } : { put: { hash, instrument: INSTRUMENTS[Math.floor(rnd() * INSTRUMENTS.length)]!, n } }
  })
}

/** What a plain key-value interpretation of the operations gives. */
function expected (ops: Op[]): Map<string, unknown> {
  const state = new Map<string, unknown>()
  for (const op of ops) 'put' in op ? state.set(op.put.hash, op.put) : state.delete(op.del)
  return state
}

const sorted = (docs: Array<{ hash: string }>): Array<{ hash: string }> => [...docs].sort((a, b) => a.hash.localeCompare(b.hash))

describe('npp-catalog behaves exactly like the single-entry documents store', () => {
  const stacks: Stack[] = []
  after(async () => { for (const s of stacks) await s.close() })
  const stack = async (dir?: string): Promise<Stack> => {
    const s = await createStack({ storage: dir == null ? 'memory' : 'persistent', directory: dir ?? await tempDir(), listen: LOOPBACK, pubsubDiscovery: false })
    stacks.push(s)
    return s
  }

  it('same results for the same operations: raw documents, single ops, batches', async () => {
    const s = await stack()
    const ops = operations(42, 250, 60)
    const raw = await s.open<any>('raw', { type: 'documents', Database: Documents({ indexBy: 'hash' }) })
    const single = await s.open<any>('single', { type: CATALOG_TYPE, Database: Catalog({ memory: true }) })
    const batched = await s.open<any>('batched', { type: CATALOG_TYPE, Database: Catalog({ memory: true }) })
    for (const op of ops) {
      if ('put' in op) {
        await raw.put(op.put)
        await single.put(op.put)
      } else {
        // both refuse to delete what is not there
        if (await raw.get(op.del) != null) {
          await raw.del(op.del)
          await single.del(op.del)
        } else {
          await assert.rejects(single.del(op.del), { name: 'DocumentNotFoundError', message: `No document with key '${op.del}' in the database` })
        }
      }
    }
    // the same operations in batches of varying size, order kept
    for (let i = 0; i < ops.length;) {
      const size = 1 + (i % 37)
      await batched.batch(ops.slice(i, i + size).map(op => 'put' in op ? { put: op.put } : { del: op.del }))
      i += size
    }
    const bulk = await s.open<any>('bulk', { type: CATALOG_TYPE, Database: Catalog({ memory: true }) })
    // one call: puts then deletes; equal to the final state when applied as its own set of ops
    const state = expected(ops)
    await bulk.batch({ put: [...state.values()] as any[] })

    const want = sorted([...state.values()] as any[])
    const rawDocs = sorted((await raw.all()).map((d: any) => d.value))
    assert.deepEqual(rawDocs, want, 'the raw store agrees with the plain interpretation')
    for (const db of [single, batched, bulk]) {
      assert.deepEqual(sorted((await db.all()).map((d: any) => d.value)), want)
      for (let k = 0; k < 60; k++) {
        assert.deepEqual((await db.get(`Qm${k}`))?.value, (await raw.get(`Qm${k}`))?.value)
      }
      for (const instrument of INSTRUMENTS) {
        assert.deepEqual(sorted(await db.getBy('instrument', instrument)), sorted(await raw.query((d: any) => d.instrument === instrument)))
      }
      assert.equal(await db.count(), state.size)
    }
    // the same order as Documents: iterator() newest first, all() oldest first
    const keys = (docs: Array<{ key: string }>): string[] => docs.map(d => d.key)
    const iterate = async (db: any, options?: { amount: number }): Promise<string[]> => {
      const out = []
      for await (const doc of db.iterator(options)) out.push(doc.key)
      return out
    }
    for (const db of [single, batched]) {
      assert.deepEqual(keys(await db.all()), keys(await raw.all()))
      assert.deepEqual(await iterate(db), await iterate(raw))
      assert.deepEqual(await iterate(db, { amount: 1 }), await iterate(raw, { amount: 1 }))
      assert.deepEqual(await db.query((d: any) => d.instrument === 'Harp'), await raw.query((d: any) => d.instrument === 'Harp'))
      assert.deepEqual(await db.getBy('instrument', 'Harp'), await raw.query((d: any) => d.instrument === 'Harp'), 'getBy is newest first too')
      // every result names the entry that wrote it
      for (const doc of await db.all()) {
        const entry = await db.log.get(doc.hash)
        const ops = entry.payload.op === 'BATCH' ? entry.payload.ops : [entry.payload]
        assert.ok(ops.some((o: any) => o.op === 'PUT' && o.key === doc.key && sameJson(o.value, doc.value)), `${doc.key} in ${doc.hash}`)
      }
    }
    assert.ok((await batched.log.values()).length < (await single.log.values()).length)
    assert.equal((await bulk.log.values()).length, 1, 'one entry for up to 1,000 puts')
  })

  it('splits big batches into entries of bounded size and replicates them to a new peer', async () => {
    const [a, b] = [await stack(), await stack()]
    const mine = await a.open<any>('big', { type: CATALOG_TYPE, Database: Catalog({ memory: true }) })
    const docs = Array.from({ length: 2500 }, (_, i) => ({ hash: `Qm${i}`, instrument: INSTRUMENTS[i % 4]!, title: `Piece ${i}` }))
    const hashes = await mine.batch({ put: docs })
    assert.equal(hashes.length, 3, '1,000 operations per entry at most')
    await b.libp2p.dial(a.libp2p.getMultiaddrs()[0]!)
    const theirs = await b.open<any>(mine.address, { Database: Catalog({ memory: true }) })
    await dbCondition(theirs, 'update', async () => (await theirs.count()) === 2500)
    assert.deepEqual((await theirs.get('Qm1234'))?.value, docs[1234])
    assert.equal((await theirs.getBy('instrument', 'Harp')).length, 625)
    // live updates, deletes included
    await mine.batch({ put: [{ hash: 'QmNew', instrument: 'Piano' }], del: ['Qm0', 'Qm1'] })
    await dbCondition(theirs, 'update', async () => (await theirs.get('QmNew')) != null)
    assert.equal(await theirs.get('Qm0'), undefined)
    assert.equal(await theirs.count(), 2499)
  })

  it('concurrent writers converge on the same winner on every replica', async () => {
    const [a, b] = [await stack(), await stack()]
    const writers = IPFSAccessController({ write: [a.orbitdb.identity.id, b.orbitdb.identity.id] })
    const one = await a.open<any>('shared', { type: CATALOG_TYPE, Database: Catalog({ memory: true }), AccessController: writers })
    await b.libp2p.dial(a.libp2p.getMultiaddrs()[0]!)
    const two = await b.open<any>(one.address, { Database: Catalog({ memory: true }) })
    // both write at the same moment: neither entry has seen the other
    await Promise.all([
      one.batch({ put: [{ hash: 'QmX', instrument: 'Piano' }, { hash: 'QmY', instrument: 'Piano' }] }),
      two.batch({ put: [{ hash: 'QmX', instrument: 'Cello' }], del: ['QmY'] })
    ])
    const hasBoth = (db: any) => async (): Promise<boolean> => (await db.log.values()).length === 2
    await Promise.all([dbCondition(one, 'update', hasBoth(one)), dbCondition(two, 'update', hasBoth(two))])
    assert.deepEqual(await one.all(), await two.all())
    assert.deepEqual(await one.getBy('instrument', 'Cello'), await two.getBy('instrument', 'Cello'))
    // the winner is the greatest (clock time, clock id, entry hash)
    const entries = await one.log.values()
    const last = [...entries].sort((x: any, y: any) => x.clock.time - y.clock.time || (x.clock.id < y.clock.id ? -1 : x.clock.id > y.clock.id ? 1 : 0) || (x.hash < y.hash ? -1 : 1)).pop()
    const expectedX = last.payload.ops.find((o: any) => o.key === 'QmX').value.instrument
    assert.equal((await one.get('QmX'))?.value.instrument, expectedX)
  })

  it('persists its index, and rebuilds it correctly after an unclean stop', async () => {
    const dir = await tempDir()
    let s = await stack(join(dir, 'n'))
    let db = await s.open<any>('persisted', { type: CATALOG_TYPE, Database: Catalog() })
    const address = db.address
    await db.batch({ put: Array.from({ length: 300 }, (_, i) => ({ hash: `Qm${i}`, instrument: INSTRUMENTS[i % 4]! })) })
    await db.del('Qm7')
    await db.put({ hash: 'Qm8', instrument: 'Harp', edited: true })
    const before = sorted((await db.all()).map((d: any) => d.value))
    await s.close()

    s = await stack(join(dir, 'n'))
    db = await s.open<any>(address, { Database: Catalog() })
    assert.equal(db.indexSource, 'disk', 'the index was loaded, not rebuilt')
    assert.deepEqual(sorted((await db.all()).map((d: any) => d.value)), before, 'loaded from the persisted index')
    assert.equal((await db.get('Qm8'))?.value.edited, true)
    await db.close()

    // an unclean stop: the log moved on but the index did not (stale heads marker, missing pages)
    await s.close()
    const index = await catalogIndex(join(dir, 'n'), address)
    assert.deepEqual(await index.keys(), ['a', 'c/0', 'meta'], 'a clean close leaves one compact snapshot and no change pages')
    const meta = dagCbor.decode<Record<string, unknown>>(await index.get('meta'))
    await index.put('meta', dagCbor.encode({ ...meta, heads: ['stale'] }))
    await index.del('c/0')
    await index.close()
    s = await stack(join(dir, 'n'))
    db = await s.open<any>(address, { Database: Catalog() })
    assert.equal(db.indexSource, 'log', 'an index that does not match the log is rebuilt')
    assert.deepEqual(sorted((await db.all()).map((d: any) => d.value)), before, 'rebuilt from the log')
    assert.equal(await db.get('Qm7'), undefined)
    assert.equal((await db.getBy('instrument', 'Harp')).some((d: any) => d.hash === 'Qm8'), true)
    // changes after the snapshot are kept as they happen, and survive an unclean stop of the index
    await db.put({ hash: 'Qm9', instrument: 'Oud' })
    await db.del('Qm10')
    const later = sorted((await db.all()).map((d: any) => d.value))
    await db.close()
    db = await s.open<any>(address, { Database: Catalog() })
    assert.equal(db.indexSource, 'disk')
    assert.deepEqual(sorted((await db.all()).map((d: any) => d.value)), later)
    assert.deepEqual(await db.getBy('instrument', 'Oud'), [{ hash: 'Qm9', instrument: 'Oud' }])
  })

  it('drop clears the log and both indexes: nothing comes back after a close and a reopen', async () => {
    const dir = await tempDir()
    const s = await stack(join(dir, 'd'))
    let db = await s.open<any>('dropped', { type: CATALOG_TYPE, Database: Catalog() })
    const address = db.address
    await db.batch({ put: Array.from({ length: 20 }, (_, i) => ({ hash: `Qm${i}`, instrument: 'Piano' })) })
    await db.close()
    db = await s.open<any>(address, { Database: Catalog() })
    assert.equal(db.indexSource, 'disk')
    await db.put({ hash: 'QmLate', instrument: 'Harp' }) // a change page too
    await db.drop()
    assert.equal(await db.count(), 0)
    assert.deepEqual(await db.all(), [])
    assert.deepEqual(await db.getBy('instrument', 'Piano'), [])
    await db.close()
    db = await s.open<any>(address, { Database: Catalog() })
    assert.deepEqual(await db.all(), [], 'the dropped documents did not come back')
    assert.equal(await db.get('QmLate'), undefined)
    // and the catalog works again after a drop
    await db.put({ hash: 'QmAgain', instrument: 'Oud' })
    await db.close()
    db = await s.open<any>(address, { Database: Catalog() })
    assert.deepEqual((await db.all()).map((d: any) => d.key), ['QmAgain'])
  })

  it('rebuilds an index saved in the JSON format of version 2 from the log, types and all', async () => {
    const dir = await tempDir()
    let s = await stack(join(dir, 'v2'))
    let db = await s.open<any>('old-format', { type: CATALOG_TYPE, Database: Catalog({ indexBy: '_id' }) })
    const address = db.address
    await db.put({ _id: 1, bytes: new Uint8Array([1, 2, 3]), big: 2n ** 60n })
    await db.put({ _id: '1', instrument: 'Piano' })
    const heads = (await db.log.heads()).map((e: any) => e.hash).sort()
    await db.close()
    await s.close()
    // what version 2 left on disk: utf8 JSON
    const index = await catalogIndex(join(dir, 'v2'), address, 'utf8')
    await index.clear()
    await index.put('a', JSON.stringify([]))
    await index.put('meta', JSON.stringify({ v: 2, heads, chunks: 0 }))
    await index.close()
    s = await stack(join(dir, 'v2'))
    db = await s.open<any>(address, { Database: Catalog({ indexBy: '_id' }) })
    assert.equal(db.indexSource, 'log', 'not read: rebuilt')
    assert.deepEqual((await db.get(1))?.value, { _id: 1, bytes: new Uint8Array([1, 2, 3]), big: 2n ** 60n })
    assert.deepEqual((await db.get('1'))?.value, { _id: '1', instrument: 'Piano' }, "1 and '1' are two keys")
    await db.close()
    db = await s.open<any>(address, { Database: Catalog({ indexBy: '_id' }) })
    assert.equal(db.indexSource, 'disk', 'saved again in the new format')
    assert.deepEqual((await db.get(1))?.value, { _id: 1, bytes: new Uint8Array([1, 2, 3]), big: 2n ** 60n })
    assert.deepEqual((await db.all()).map((d: any) => d.key), [1, '1'])
  })

  it('keeps changes made after the snapshot when the process is killed', async () => {
    const dir = await tempDir()
    let s = await stack(join(dir, 'k'))
    let db = await s.open<any>('killed', { type: CATALOG_TYPE, Database: Catalog() })
    const address = db.address
    await db.batch({ put: Array.from({ length: 50 }, (_, i) => ({ hash: `Qm${i}`, instrument: 'Piano' })) })
    await s.close() // clean: a snapshot
    stacks.splice(stacks.indexOf(s), 1)

    // a writer process changes the catalog and is killed without closing anything
    const child = spawn(process.execPath, ['--conditions=npp-source', '--import', guard, writer, join(dir, 'k'), address], { stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise(resolve => child.on('exit', resolve))
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d) => { if (String(d).includes('written')) resolve() })
      child.on('exit', () => { reject(new Error('writer exited early')) })
    })
    child.kill('SIGKILL')
    await exited

    s = await stack(join(dir, 'k'))
    db = await s.open<any>(address, { Database: Catalog() })
    assert.equal(db.indexSource, 'disk', 'snapshot plus change pages, no rebuild')
    assert.deepEqual((await db.get('Qm0'))?.value, { hash: 'Qm0', instrument: 'Tuba' })
    assert.equal(await db.get('Qm1'), undefined)
    assert.equal(await db.count(), 49)
    assert.deepEqual(await db.getBy('instrument', 'Tuba'), [{ hash: 'Qm0', instrument: 'Tuba' }])
    assert.equal((await db.getBy('instrument', 'Piano')).length, 48)
  })
})
