import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import * as npp from '../../src/index.ts'

describe('errors', () => {
  it('each error class has its own stable name and code and extends NewPiecePleaseError', () => {
    const classes = Object.entries(npp).filter(([key, value]) => typeof value === 'function' && key.endsWith('Error')) as Array<[string, new (m: string) => Error]>
    assert.ok(classes.length >= 12)
    for (const [exportName, Cls] of classes) {
      const err = new Cls('m') as npp.NewPiecePleaseError
      assert.equal(err.name, exportName)
      assert.equal(err.code, exportName)
      assert.ok(err instanceof npp.NewPiecePleaseError)
      assert.ok(err instanceof Error)
    }
  })

  it('describe() names what was received without dumping it', () => {
    assert.equal(npp.describe('x'.repeat(100)), 'string "' + 'x'.repeat(37) + '..." (100 chars)')
    assert.equal(npp.describe(null), 'null')
    assert.equal(npp.describe([1, 2]), 'array(2)')
    assert.equal(npp.describe(new Map()), 'object Map')
  })
})
