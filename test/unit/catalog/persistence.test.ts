import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStorage } from '@orbitdb/core'
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
  it('loads the snapshot plus the changes written after it', async () => {
    const { storage, source } = await saved()
    const loaded = new DocumentIndex(['instrument'])
    assert.equal(await new IndexPersistence(storage, loaded).load(['h2']), true)
    const sorted = (index: DocumentIndex): unknown[] => [...index.values()].sort(([a], [b]) => a.localeCompare(b))
    assert.deepEqual(sorted(loaded), sorted(source))
    assert.equal(loaded.get('a'), undefined)
    assert.deepEqual(loaded.getBy('instrument', 'Harp'), [{ hash: 'c', instrument: 'Harp' }])
    assert.ok(loaded.has('h1') && loaded.has('h2'))
    // the deletion's slot was kept: an older write to 'a' must not resurrect it
    loaded.apply(entry('h0', 0, put('a')), new Set())
    assert.equal(loaded.get('a'), undefined)
  })

  it('a new snapshot replaces the changes and loads the same index', async () => {
    const { storage, source, disk } = await saved()
    await disk.snapshot(['h2'])
    const keys = []
    for await (const [key] of storage.iterator()) keys.push(key)
    assert.deepEqual(keys.filter(k => k.startsWith('x/') || k.startsWith('y/')), [])
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
  })
})
