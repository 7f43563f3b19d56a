import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { DocumentIndex } from '../../../src/catalog/doc-index.ts'
import { SMALL_ENTRY_OPS } from '../../../src/catalog/ops.ts'

const entry = (hash: string, time: number, payload: unknown, id = 'w1'): { hash: string, clock: { id: string, time: number }, payload: unknown } => ({ hash, clock: { id, time }, payload })
const put = (key: string, instrument = 'Piano'): unknown => ({ op: 'PUT', key, value: { hash: key, instrument } })

describe('DocumentIndex', () => {
  it('the greatest write wins whatever order entries are applied in', () => {
    const entries = [
      entry('h1', 1, put('a', 'Piano')),
      entry('h2', 2, put('a', 'Cello')),
      entry('h3', 3, { op: 'DEL', key: 'a' }),
      entry('h4', 3, put('b'), 'w2'),
      entry('h5', 4, { op: 'BATCH', ops: [put('c'), { op: 'DEL', key: 'c' }, put('d', 'Harp')] })
    ]
    const forward = new DocumentIndex(['instrument'])
    const backward = new DocumentIndex(['instrument'])
    for (const e of entries) forward.apply(e, new Set())
    for (const e of [...entries].reverse()) backward.apply(e, new Set())
    for (const index of [forward, backward]) {
      assert.equal(index.get('a'), undefined)
      assert.deepEqual(index.get('b'), { hash: 'b', instrument: 'Piano' })
      assert.equal(index.get('c'), undefined, 'a later operation in the same entry wins')
      assert.equal(index.count(), 2)
      assert.deepEqual(index.getBy('instrument', 'Harp'), [{ hash: 'd', instrument: 'Harp' }])
      assert.deepEqual(index.getBy('instrument', 'Cello'), [], 'the field index forgets overwritten values')
      assert.deepEqual([...index.values()].map(([k]) => k).sort(), ['b', 'd'])
    }
  })

  it('reports the keys whose winner changed, and applies an entry once', () => {
    const index = new DocumentIndex(['instrument'])
    const changed = new Set<string>()
    index.apply(entry('h2', 2, put('a')), changed)
    assert.deepEqual([...changed], ['a'])
    changed.clear()
    index.apply(entry('h1', 1, put('a', 'Cello')), changed)
    assert.deepEqual([...changed], [], 'an older write changes nothing')
    index.apply(entry('h2', 2, put('z')), changed)
    assert.equal(index.get('z'), undefined, 'an entry already applied is skipped')
    assert.ok(index.has('h1') && index.has('h2'))
  })

  it('reads newest first (by each key\'s winning write), whatever order entries are applied in', () => {
    const entries = [
      entry('h1', 1, { op: 'BATCH', ops: [put('a'), put('b'), put('c', 'Harp')] }),
      entry('h2', 2, put('d', 'Harp')),
      entry('h3', 2, { op: 'BATCH', ops: [put('a', 'Harp'), { op: 'DEL', key: 'b' }] }, 'w2'),
      entry('h4', 3, put('e'))
    ]
    const orders = [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]]
    for (const order of orders) {
      const index = new DocumentIndex(['instrument'])
      for (const n of order) index.apply(entries[n]!, new Set())
      assert.deepEqual(index.newestFirst().map(s => [s.k, s.e.hash]), [['e', 'h4'], ['a', 'h3'], ['d', 'h2'], ['c', 'h1']], `applied in order ${order.join()}`)
      assert.deepEqual(index.getBy('instrument', 'Harp').map(d => d.hash), ['a', 'd', 'c'], 'getBy too')
      assert.deepEqual(index.read('a'), { hash: 'h3', key: 'a', value: { hash: 'a', instrument: 'Harp' } })
      assert.equal(index.read('b'), undefined)
      assert.equal(index.count(), 4)
      // a later write moves a key to the front
      index.apply(entry('h5', 9, put('c', 'Cello')), new Set())
      assert.deepEqual([...index.values()].map(([k]) => k), ['c', 'e', 'a', 'd'])
      assert.deepEqual(index.getBy('instrument', 'Harp').map(d => d.hash), ['a', 'd'])
    }
  })

  it('keeps string and number keys apart', () => {
    const index = new DocumentIndex([])
    index.apply(entry('h1', 1, { op: 'BATCH', ops: [{ op: 'PUT', key: 1, value: { _id: 1 } }, { op: 'PUT', key: '1', value: { _id: '1' } }] }), new Set())
    assert.deepEqual(index.get(1), { _id: 1 })
    assert.deepEqual(index.get('1'), { _id: '1' })
    assert.equal(index.count(), 2)
  })

  it('refuses lookups by a field it does not index', () => {
    const index = new DocumentIndex(['instrument'])
    assert.throws(() => index.getBy('composer', 'Bach'), /'composer' is not an indexed field/)
  })

  it('counts the run of recent small entries', () => {
    const index = new DocumentIndex([])
    index.apply(entry('s1', 1, put('a')), new Set())
    index.apply(entry('s2', 2, put('b')), new Set())
    assert.equal(index.smallStreak, 2)
    const big = { op: 'BATCH', ops: Array.from({ length: SMALL_ENTRY_OPS + 1 }, (_, n) => put(`k${n}`)) }
    index.apply(entry('b1', 3, big), new Set())
    assert.equal(index.smallStreak, 0)
    index.clear()
    assert.equal(index.count(), 0)
    assert.equal(index.has('s1'), false)
  })
})
