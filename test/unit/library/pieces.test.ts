import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Pieces } from '../../../src/library/pieces.ts'
import { Practice } from '../../../src/library/practice.ts'
import { Profile } from '../../../src/library/profile.ts'
import { InvalidHashError, InvalidOptionError, InvalidProfileFieldError, PieceNotFoundError, type Piece } from '../../../src/index.ts'

/** An in-memory stand-in for the catalog database, recording writes. */
function fakeCatalog (): any {
  const docs = new Map<string, Piece>()
  const writes: string[] = []
  return {
    docs,
    writes,
    get: async (key: string) => docs.has(key) ? { key, value: docs.get(key) } : undefined,
    put: async (doc: Piece) => { writes.push(`put ${doc.hash}`); docs.set(doc.hash, doc); return 'h' },
    del: async (key: string) => { writes.push(`del ${key}`); docs.delete(key); return 'h' },
    batch: async ({ put = [], del = [] }: { put?: Piece[], del?: string[] }) => {
      writes.push(`batch ${put.length}+${del.length}`)
      for (const doc of put) docs.set(doc.hash, doc)
      for (const key of del) docs.delete(key)
      return ['h']
    },
    all: async () => [...docs].map(([key, value]) => ({ key, value })),
    getBy: async (field: string, value: unknown) => [...docs.values()].filter(d => d[field] === value)
  }
}

describe('Pieces', () => {
  it('writes a piece once, however often it is added, whatever the order of its fields', async () => {
    const db = fakeCatalog()
    const pieces = new Pieces({ pieces: db })
    await pieces.addNewPiece('QmA', 'Cello', { title: 'Suite', year: 1720 })
    // same fields, other key order: the same piece
    db.docs.set('QmA', { year: 1720, instrument: 'Cello', title: 'Suite', hash: 'QmA' })
    await pieces.addNewPiece('QmA', 'Cello', { year: 1720, title: 'Suite' })
    assert.deepEqual(db.writes, ['put QmA'])
  })

  it('adds many in one batch, skipping unchanged ones, the last occurrence winning', async () => {
    const db = fakeCatalog()
    const pieces = new Pieces({ pieces: db })
    await pieces.addNewPiece('QmA', 'Piano')
    const stored = await pieces.addPieces([{ hash: 'QmA' }, { hash: 'QmB', instrument: 'Flute' }, { hash: 'QmB', instrument: 'Oboe' }])
    assert.deepEqual(db.writes, ['put QmA', 'batch 1+0'])
    assert.deepEqual(stored.map(p => p.instrument), ['Piano', 'Oboe', 'Oboe'])
  })

  it('validates everything before writing anything, naming the bad piece', async () => {
    const db = fakeCatalog()
    const pieces = new Pieces({ pieces: db })
    await assert.rejects(pieces.addPieces([{ hash: 'QmA' }, { hash: '' }]), (err: Error) => err instanceof InvalidHashError && err.message.startsWith('piece 1:'))
    assert.deepEqual(db.writes, [])
  })

  it('updates and deletes only what exists', async () => {
    const db = fakeCatalog()
    const pieces = new Pieces({ pieces: db })
    await assert.rejects(pieces.updatePieceByHash('QmX', 'Harp'), PieceNotFoundError)
    assert.equal(await pieces.deletePieceByHash('QmX'), false)
    await pieces.addNewPiece('QmA')
    assert.equal((await pieces.updatePieceByHash('QmA', 'Harp')).instrument, 'Harp')
    assert.equal(await pieces.deletePieces(['QmA', 'QmA', 'QmX']), 1)
    assert.deepEqual(db.writes, ['put QmA', 'put QmA', 'batch 0+1'])
  })
})

describe('Practice', () => {
  it('refuses increments that are not positive integers up to the limit', async () => {
    const calls: Array<[string, number]> = []
    const practice = new Practice({ counters: { increment: async (k: string, by: number) => { calls.push([k, by]); return by }, value: async () => 0 } as any })
    for (const by of [0, -1, 1.5, 1_000_001, Number.NaN]) {
      await assert.rejects(practice.incrementPracticeCounter('QmA', by), InvalidOptionError)
    }
    assert.equal(await practice.incrementPracticeCounter('QmA', 1_000_000), 1_000_000)
    assert.deepEqual(calls, [['QmA', 1_000_000]])
  })
})

describe('Profile', () => {
  it('keeps library-managed fields and the username', async () => {
    const fields = new Map<string, unknown>([['nodeId', 'me'], ['username', 'ana']])
    const profile = new Profile({ user: { put: async (k: string, v: unknown) => { fields.set(k, v) }, del: async (k: string) => { fields.delete(k) }, get: async (k: string) => fields.get(k), all: async () => [...fields].map(([key, value]) => ({ key, value })) } as any })
    await assert.rejects(profile.updateProfileField('nodeId', 'x'), InvalidProfileFieldError)
    await assert.rejects(profile.deleteProfileField('username'), InvalidProfileFieldError)
    await profile.updateProfileField('city', 'Lyon')
    await profile.deleteProfileField('city')
    assert.deepEqual(await profile.getAllProfileFields(), { nodeId: 'me', username: 'ana' })
  })
})
