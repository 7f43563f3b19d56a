import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { compare, opsOf, toBatches, type Op } from '../../../src/catalog/ops.ts'

describe('catalog ops', () => {
  it('reads batches and single Documents-style ops, skipping malformed ones', () => {
    const put = { op: 'PUT', key: 'a', value: { hash: 'a' } }
    assert.deepEqual(opsOf({ payload: put }), [put])
    assert.deepEqual(opsOf({ payload: { op: 'BATCH', ops: [put, { op: 'DEL', key: 'b' }, { op: 'PUT' }, null, { op: 'XX', key: 'c' }, { op: 'DEL', key: '' }] } }), [put, { op: 'DEL', key: 'b' }])
    for (const payload of [null, 'PUT', 42, { op: 'BATCH' }, { op: 'BATCH', ops: 'no' }, { op: 'PUT', key: 7 }, { op: 'PUT', key: {}, value: {} }, { op: 'DEL', key: true }, { op: 'DEL', key: Number.NaN }]) {
      assert.deepEqual(opsOf({ payload }), [], JSON.stringify(payload))
    }
    // keys are what Documents can look up again: non-empty strings and finite numbers
    assert.deepEqual(opsOf({ payload: { op: 'PUT', key: 7, value: { _id: 7 } } }), [{ op: 'PUT', key: 7, value: { _id: 7 } }])
    assert.deepEqual(opsOf({ payload: { op: 'DEL', key: 0, value: null } }), [{ op: 'DEL', key: 0, value: null }])
  })

  it('orders by clock time, then clock id, then entry hash, then position', () => {
    const e = (time: number, id: string, hash: string): { time: number, id: string, hash: string } => ({ time, id, hash })
    assert.ok(compare(e(1, 'z', 'z'), 9, e(2, 'a', 'a'), 0) < 0)
    assert.ok(compare(e(2, 'b', 'a'), 0, e(2, 'a', 'z'), 9) > 0)
    assert.ok(compare(e(2, 'a', 'b'), 0, e(2, 'a', 'c'), 0) < 0)
    assert.ok(compare(e(2, 'a', 'b'), 3, e(2, 'a', 'b'), 1) > 0)
    assert.equal(compare(e(2, 'a', 'b'), 1, e(2, 'a', 'b'), 1), 0)
  })

  it('cuts batches by operation count and by encoded size, keeping order', () => {
    const ops: Op[] = Array.from({ length: 25 }, (_, n) => ({ op: 'PUT', key: `k${n}`, value: { hash: `k${n}` } }))
    const byCount = toBatches(ops, 10)
    assert.deepEqual(byCount.map(b => b.ops.length), [10, 10, 5])
    assert.deepEqual(byCount.flatMap(b => b.ops), ops)
    const big: Op[] = Array.from({ length: 5 }, (_, n) => ({ op: 'PUT', key: `k${n}`, value: { text: 'x'.repeat(400) } }))
    const bySize = toBatches(big, 1000, 1000)
    assert.ok(bySize.length >= 3, `${bySize.length} batches`)
    assert.ok(bySize.every(b => JSON.stringify(b.ops).length <= 1000 || b.ops.length === 1))
    assert.deepEqual(bySize.flatMap(b => b.ops), big)
    // one operation bigger than the limit still gets an entry of its own
    assert.deepEqual(toBatches([{ op: 'PUT', key: 'x', value: { t: 'y'.repeat(2000) } }], 1000, 1000).length, 1)
    assert.deepEqual(toBatches([]), [])
    // what JSON cannot say counts too (bytes, Maps, bigints), as OrbitDB's dag-cbor will encode it
    const bytes: Op[] = [0, 1, 2].map(n => ({ op: 'PUT', key: `b${n}`, value: { data: new Uint8Array(600) } }))
    assert.equal(toBatches(bytes, 1000, 1000).length, 3)
    const maps: Op[] = [0, 1, 2].map(n => ({ op: 'PUT', key: `m${n}`, value: { m: new Map([['x', 'y'.repeat(600)]]), n: 10n } }))
    assert.equal(toBatches(maps, 1000, 1000).length, 3)
  })
})
