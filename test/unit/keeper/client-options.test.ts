/**
 * `maxIntroduced` (companions taken from keepers' introductions at most) is
 * checked with the other options, before anything starts.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { resolveOptions } from '../../../src/options.ts'
import { DEFAULT_MAX_INTRODUCED } from '../../../src/constants.ts'
import { InvalidOptionError } from '../../../src/errors.ts'

describe('maxIntroduced option', () => {
  it('defaults to DEFAULT_MAX_INTRODUCED (64)', () => {
    assert.equal(DEFAULT_MAX_INTRODUCED, 64)
    assert.equal(resolveOptions({}).maxIntroduced, DEFAULT_MAX_INTRODUCED)
  })

  it('takes 0 (no introductions taken) and positive integers', () => {
    assert.equal(resolveOptions({ maxIntroduced: 0 }).maxIntroduced, 0)
    assert.equal(resolveOptions({ maxIntroduced: 2 }).maxIntroduced, 2)
  })

  it('refuses what is not a count, naming what it got', () => {
    for (const bad of [-1, 1.5, Number.NaN, '2', null, 1e9]) {
      assert.throws(() => resolveOptions({ maxIntroduced: bad as any }), InvalidOptionError)
    }
  })
})
