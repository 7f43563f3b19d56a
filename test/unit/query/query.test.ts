import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { queryCatalogs, toPredicate } from '../../../src/query/query.ts'
import { InvalidOptionError, type Piece } from '../../../src/index.ts'

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
    const pending = queryCatalogs([source('slow', [], new Promise(() => {}))], undefined, 10_000, { signal: controller.signal })
    controller.abort()
    const { sources } = await pending
    assert.equal(sources[0]?.status, 'aborted')
  })

  it('reports each source as it answers, before the slowest one, and survives a throwing listener', async () => {
    let releaseSlow: () => void = () => {}
    const slow = new Promise<void>(resolve => { releaseSlow = resolve })
    const events: any[] = []
    const pending = queryCatalogs([
      source('me', [{ hash: 'a', instrument: 'Piano' }]),
      source('slow', [{ hash: 'z', instrument: 'Piano' }], slow),
      source('fast', [{ hash: 'b', instrument: 'Cello' }])
    ], undefined, 5_000, {
      onProgress: (evt) => {
        events.push({ type: evt.type, detail: evt.detail })
        // the caller sees the fast sources while the slow one is still out
        if (evt.type === 'npp:query:source' && evt.detail.answered === 2) releaseSlow()
        throw new Error('a careless listener')
      }
    })
    const { results } = await pending
    assert.equal(events[0].type, 'npp:query:start')
    assert.deepEqual(events[0].detail.sources.map((s: any) => s.owner), ['me', 'slow', 'fast'])
    const answers = events.slice(1)
    assert.deepEqual(answers.map(e => [e.detail.source.owner, e.detail.answered, e.detail.total]), [['me', 1, 3], ['fast', 2, 3], ['slow', 3, 3]])
    assert.deepEqual(answers.map(e => e.detail.results.map((r: any) => `${r.owner}:${r.hash}`)), [['me:a'], ['fast:b'], ['slow:z']])
    assert.equal(answers[2].detail.source.status, 'ok')
    assert.equal(results.length, 3, 'the final result is the same merge')
  })

  it('reports a source that times out as it does', async () => {
    const events: any[] = []
    await queryCatalogs([source('never', [], new Promise(() => {}))], undefined, 100, { onProgress: (evt) => { events.push(evt) } })
    assert.deepEqual(events.map(e => e.type), ['npp:query:start', 'npp:query:source'])
    assert.equal(events[1].detail.source.status, 'timeout')
  })
})

describe('queryCatalogs: sources that cannot answer fully', () => {
  it('a replica that never synced answers `unsynced`; one that could not be opened is an `error` source; neither is complete', async () => {
    const pieces = [{ hash: 'h1', instrument: 'Piano' }]
    const result = await queryCatalogs([
      source('own', pieces),
      { ...source('fresh', []), sync: () => ({ state: 'never' }) },
      { ...source('caught-up', pieces), sync: () => ({ state: 'synced', syncedAt: 1 }) },
      { ...source('away', pieces), online: false, sync: () => ({ state: 'unreachable', syncedAt: 1, unreachableSince: 2 }) },
      { owner: 'broken', address: '/orbitdb/broken', online: false, error: 'its replica could not be opened: Too many open files' }
    ], undefined, 1000)
    const status = Object.fromEntries(result.sources.map(s => [s.owner, s.status]))
    assert.deepEqual(status, { own: 'ok', fresh: 'unsynced', 'caught-up': 'ok', away: 'ok', broken: 'error' })
    assert.equal(result.sources.find(s => s.owner === 'broken')?.error, 'its replica could not be opened: Too many open files')
    assert.deepEqual(result.sources.find(s => s.owner === 'away')?.sync, { state: 'unreachable', syncedAt: 1, unreachableSince: 2 })
    assert.equal(result.complete, false)
    assert.equal(result.results.length, 3)
  })
})
