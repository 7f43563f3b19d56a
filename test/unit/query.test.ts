import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { queryCatalogs, toPredicate } from '../../src/query.ts'
import { InvalidOptionError, type Piece } from '../../src/index.ts'

function source (owner: string, pieces: Piece[], delay?: Promise<void>): any {
  return {
    owner,
    address: `/orbitdb/${owner}`,
    online: true,
    db: {
      query: async (fn: (p: Piece) => boolean) => {
        await delay
        return pieces.filter(fn)
      }
    }
  }
}

describe('toPredicate', () => {
  it('matches every field of an object filter and passes functions through', () => {
    const piece = { hash: 'h', instrument: 'Piano', title: 'Clair de lune', tags: ['slow'] }
    assert.equal(toPredicate({ instrument: 'Piano' })(piece), true)
    assert.equal(toPredicate({ instrument: 'Piano', title: 'x' })(piece), false)
    assert.equal(toPredicate({ tags: ['slow'] })(piece), true)
    assert.equal(toPredicate(p => p.hash === 'h')(piece), true)
    assert.equal(toPredicate(undefined)(piece), true)
    assert.throws(() => toPredicate('Piano' as any), InvalidOptionError)
    assert.throws(() => toPredicate(new Map() as any), InvalidOptionError)
  })
})

describe('queryCatalogs', () => {
  it('merges sources with owners and reports a slow source as timed out, on time', async () => {
    const never = new Promise<void>(() => {})
    const sources = [
      source('me', [{ hash: 'a', instrument: 'Piano' }, { hash: 'b', instrument: 'Cello' }]),
      source('fast', [{ hash: 'a', instrument: 'Piano' }]),
      source('slow', [{ hash: 'z', instrument: 'Piano' }], never)
    ]
    const started = Date.now()
    const { results, sources: reports, complete } = await queryCatalogs(sources, { instrument: 'Piano' }, 300)
    const elapsed = Date.now() - started
    assert.ok(elapsed < 2000, `answered on time (${elapsed} ms)`)
    assert.deepEqual(results.map(r => `${r.owner}:${r.hash}`).sort(), ['fast:a', 'me:a'])
    assert.deepEqual(reports.map(r => [r.owner, r.status, r.count]), [['me', 'ok', 1], ['fast', 'ok', 1], ['slow', 'timeout', 0]])
    assert.equal(complete, false)
  })

  it('reports a failing source and a throwing predicate without failing the query', async () => {
    const broken = { owner: 'broken', address: '/orbitdb/broken', online: false, db: { query: async () => { throw new Error('disk on fire') } } }
    const { results, sources } = await queryCatalogs([source('me', [{ hash: 'a', instrument: 'Piano' }]), broken as any], (p) => { if (p.hash === 'boom') throw new Error('x'); return true }, 1000)
    assert.deepEqual(results.map(r => r.hash), ['a'])
    assert.equal(sources[1]?.status, 'error')
    assert.match(sources[1]?.error ?? '', /disk on fire/)
  })

  it('does not duplicate a piece that one owner has in two sources', async () => {
    const { results } = await queryCatalogs([source('me', [{ hash: 'a', instrument: 'Piano' }]), source('me', [{ hash: 'a', instrument: 'Piano' }])], undefined, 1000)
    assert.equal(results.length, 1)
  })

  it('stops at the caller\'s signal and reports the sources as aborted', async () => {
    const controller = new AbortController()
    const pending = queryCatalogs([source('slow', [], new Promise(() => {}))], undefined, 10_000, controller.signal)
    controller.abort()
    const { sources } = await pending
    assert.equal(sources[0]?.status, 'aborted')
  })
})
