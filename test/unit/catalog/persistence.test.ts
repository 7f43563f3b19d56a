import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStorage } from '@orbitdb/core'
import { CID } from 'multiformats/cid'
import { DocumentIndex } from '../../../src/catalog/doc-index.ts'
import { IndexPersistence } from '../../../src/catalog/persistence.ts'
import type { OrbitDBStorage } from '../../../src/orbitdb/types.ts'

const entry = (hash: string, time: number, payload: unknown): { hash: string, clock: { id: string, time: number }, payload: unknown } => ({ hash, clock: { id: 'w', time }, payload })
const put = (key: string, instrument = 'Piano'): unknown => ({ op: 'PUT', key, value: { hash: key, instrument } })

async function saved (): Promise<{ storage: OrbitDBStorage, source: DocumentIndex, disk: IndexPersistence }> {
  const storage: OrbitDBStorage = await MemoryStorage()
  const source = new DocumentIndex(['instrument'])
  const disk = new IndexPersistence(storage, source)
  const changed = new Set<string>()
  source.apply(entry('h1', 1, { op: 'BATCH', ops: [put('a'), put('b', 'Cello')] }), changed)
  await disk.snapshot(['h1'])
  changed.clear()
  source.apply(entry('h2', 2, { op: 'BATCH', ops: [{ op: 'DEL', key: 'a' }, put('c', 'Harp')] }), changed)
  await disk.persist(changed, ['h2'], ['h2'])
  return { storage, source, disk }
}

describe('IndexPersistence', () => {
  it('keeps what a log entry can carry, in the snapshot and in the changes after it', async () => {
    // what dag-cbor (OrbitDB's entry encoding) carries and JSON does not
    const doc = (key: string | number): Record<string, unknown> => ({ _id: key, bytes: new Uint8Array([0, 255]), big: 2n ** 64n - 1n, nested: { list: [1.5, null, true] }, link: CID.parse('bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku') })
    const storage: OrbitDBStorage = await MemoryStorage()
    const source = new DocumentIndex([])
    const disk = new IndexPersistence(storage, source)
    source.apply(entry('h1', 1, { op: 'BATCH', ops: [{ op: 'PUT', key: 1, value: doc(1) }, { op: 'PUT', key: 'a', value: doc('a') }] }), new Set())
    await disk.snapshot(['h1'])
    const changed = new Set<string | number>()
    source.apply(entry('h2', 2, { op: 'BATCH', ops: [{ op: 'PUT', key: '1', value: doc('1') }, { op: 'DEL', key: 'a' }] }), changed)
    await disk.persist(changed, ['h2'], ['h2'])
    const loaded = new DocumentIndex([])
    assert.equal(await new IndexPersistence(storage, loaded).load(['h2']), true)
    assert.deepEqual(loaded.get(1), doc(1), 'from the snapshot')
    assert.deepEqual(loaded.get('1'), doc('1'), 'from a change page, and not the number key')
    assert.equal(loaded.get('a'), undefined)
    assert.deepEqual(loaded.newestFirst().map(s => s.k), ['1', 1], 'in the same order')
  })

  it('loads the snapshot plus the changes written after it', async () => {
    const { storage, source } = await saved()
    const loaded = new DocumentIndex(['instrument'])
    assert.equal(await new IndexPersistence(storage, loaded).load(['h2']), true)
    const sorted = (index: DocumentIndex): unknown[] => [...index.values()].sort(([a], [b]) => String(a).localeCompare(String(b)))
    assert.deepEqual(sorted(loaded), sorted(source))
    assert.equal(loaded.get('a'), undefined)
    assert.deepEqual(loaded.getBy('instrument', 'Harp'), [{ hash: 'c', instrument: 'Harp' }])
    assert.ok(loaded.has('h1') && loaded.has('h2'))
    // the deletion's slot was kept: an older write to 'a' must not resurrect it
    loaded.apply(entry('h0', 0, put('a')), new Set())
    assert.equal(loaded.get('a'), undefined)
  })

  it('writes one page per update; later pages win, and a reloaded index numbers on', async () => {
    const { storage, source, disk } = await saved()
    const changed = new Set<string | number>()
    source.apply(entry('h3', 3, put('b', 'Harp')), changed)
    await disk.persist(changed, ['h3'], ['h3'])
    changed.clear()
    source.apply(entry('h4', 4, put('b', 'Oud')), changed)
    await disk.persist(changed, ['h4'], ['h4'])
    const pages = async (): Promise<string[]> => {
      const keys = []
      for await (const [key] of storage.iterator()) if (key.startsWith('x/')) keys.push(key)
      return keys.sort()
    }
    assert.deepEqual(await pages(), ['x/0', 'x/1', 'x/2'], 'one value per update, not one per key')
    const loaded = new DocumentIndex(['instrument'])
    const reopened = new IndexPersistence(storage, loaded)
    assert.equal(await reopened.load(['h4']), true)
    assert.deepEqual(loaded.get('b'), { hash: 'b', instrument: 'Oud' }, 'the later page wins')
    assert.deepEqual(loaded.getBy('instrument', 'Harp').map(d => d.hash), ['c'])
    changed.clear()
    loaded.apply(entry('h5', 5, put('e')), changed)
    await reopened.persist(changed, ['h5'], ['h5'])
    assert.deepEqual(await pages(), ['x/0', 'x/1', 'x/2', 'x/3'], 'numbering goes on after a load')
    const again = new DocumentIndex(['instrument'])
    assert.equal(await new IndexPersistence(storage, again).load(['h5']), true)
    assert.deepEqual(again.newestFirst().map(s => s.k), ['e', 'b', 'c'])
  })

  it('a new snapshot replaces the changes and loads the same index', async () => {
    const { storage, source, disk } = await saved()
    await disk.snapshot(['h2'])
    const keys = []
    for await (const [key] of storage.iterator()) keys.push(key)
    assert.deepEqual(keys.filter(k => k.startsWith('x/')), [])
    const loaded = new DocumentIndex(['instrument'])
    assert.equal(await new IndexPersistence(storage, loaded).load(['h2']), true)
    assert.equal(loaded.count(), source.count())
  })

  it('refuses an index that does not reflect the log heads, or is unreadable', async () => {
    const { storage } = await saved()
    assert.equal(await new IndexPersistence(storage, new DocumentIndex([])).load(['h1']), false, 'other heads: an unclean stop')
    assert.equal(await new IndexPersistence(await MemoryStorage(), new DocumentIndex([])).load([]), false, 'nothing saved')
    await storage.put('meta', '{not json')
    assert.equal(await new IndexPersistence(storage, new DocumentIndex([])).load(['h2']), false, 'corrupt meta')
    await storage.put('meta', JSON.stringify({ v: 1, heads: ['h2'] }))
    assert.equal(await new IndexPersistence(storage, new DocumentIndex([])).load(['h2']), false, 'an older format')
    await storage.put('meta', new TextEncoder().encode(JSON.stringify({ v: 2, heads: ['h2'], chunks: 1 })))
    assert.equal(await new IndexPersistence(storage, new DocumentIndex([])).load(['h2']), false, 'version 2: JSON as bytes')
  })
})
