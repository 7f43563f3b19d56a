import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { RateLimiter, ExpiringSet } from '../../../src/utils/rate-limit.ts'

describe('RateLimiter', () => {
  it('allows a burst, then refills at the configured rate', () => {
    let now = 0
    const limiter = new RateLimiter({ burst: 3, ratePerSecond: 2, maxKeys: 10, now: () => now })
    assert.deepEqual([1, 2, 3, 4].map(() => limiter.take('a')), [true, true, true, false])
    now += 500 // one token back
    assert.equal(limiter.take('a'), true)
    assert.equal(limiter.take('a'), false)
    assert.equal(limiter.take('b'), true, 'other keys have their own budget')
  })

  it('never remembers more than maxKeys keys, forgetting the least recently seen', () => {
    const now = 0
    const limiter = new RateLimiter({ burst: 1, ratePerSecond: 0.001, maxKeys: 100, now: () => now })
    for (let i = 0; i < 10_000; i++) limiter.take(`peer-${i}`)
    assert.equal(limiter.size, 100)
    assert.equal(limiter.take('peer-9999'), false, 'a recent key keeps its spent budget')
    assert.equal(limiter.take('peer-0'), true, 'an evicted key starts afresh')
  })
})

describe('ExpiringSet', () => {
  it('expires entries after the ttl and stays bounded', () => {
    let now = 0
    const set = new ExpiringSet(1000, 3, () => now)
    set.add('a')
    assert.equal(set.has('a'), true)
    now = 1000
    assert.equal(set.has('a'), false)
    for (const k of ['b', 'c', 'd', 'e']) set.add(k)
    assert.equal(set.size, 3)
    assert.equal(set.has('b'), false)
    assert.equal(set.has('e'), true)
  })
})
