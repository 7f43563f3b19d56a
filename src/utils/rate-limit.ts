/**
 * Per-key token buckets in a bounded map: a flooding peer spends its own
 * budget and nothing else, and the map never grows past `maxKeys` (the least
 * recently seen key is forgotten first).
 */
export interface RateLimiterInit {
  /** Tokens a key starts with and can save up. */
  burst: number
  /** Tokens added per second. */
  ratePerSecond: number
  /** Keys remembered at most. */
  maxKeys: number
  /** Clock, for tests. @default Date.now */
  now?: () => number
}

interface Bucket { tokens: number, updated: number }

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>()
  private readonly init: Required<RateLimiterInit>

  constructor (init: RateLimiterInit) {
    this.init = { now: Date.now, ...init }
  }

  /** Spend one token of `key`; false when it has none left. */
  take (key: string): boolean {
    const now = this.init.now()
    let bucket = this.buckets.get(key)
    if (bucket == null) {
      bucket = { tokens: this.init.burst, updated: now }
      if (this.buckets.size >= this.init.maxKeys) {
        const oldest = this.buckets.keys().next().value
        if (oldest !== undefined) this.buckets.delete(oldest)
      }
    } else {
      this.buckets.delete(key) // re-inserted below: Map order is recency order
      const refill = (now - bucket.updated) / 1000 * this.init.ratePerSecond
      bucket.tokens = Math.min(this.init.burst, bucket.tokens + refill)
      bucket.updated = now
    }
    this.buckets.set(key, bucket)
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }

  get size (): number {
    return this.buckets.size
  }
}

/** A map whose entries expire after `ttl` ms and which holds at most `max` entries. */
export class ExpiringSet {
  private readonly entries = new Map<string, number>()
  private readonly ttl: number
  private readonly max: number
  private readonly now: () => number

  constructor (ttl: number, max: number, now: () => number = Date.now) {
    this.ttl = ttl
    this.max = max
    this.now = now
  }

  add (key: string): void {
    this.entries.delete(key)
    if (this.entries.size >= this.max) {
      const oldest = this.entries.keys().next().value
      if (oldest !== undefined) this.entries.delete(oldest)
    }
    this.entries.set(key, this.now() + this.ttl)
  }

  has (key: string): boolean {
    const expires = this.entries.get(key)
    if (expires == null) return false
    if (expires <= this.now()) {
      this.entries.delete(key)
      return false
    }
    return true
  }

  get size (): number {
    return this.entries.size
  }
}
