import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { TypedEventEmitter } from 'main-event'
import { EventEmitter } from 'node:events'
import { defaultLogger } from '@libp2p/logger'
import { Replicas } from '../../../src/companions/replicas.ts'
import type { CompanionRecord, NewPiecePleaseEvents } from '../../../src/index.ts'

const record: CompanionRecord = { nodeId: '12D3KooWPeer', pieces: '/orbitdb/zdpuPieces', username: 'bo', multiaddrs: [], lastSeen: 0 }

function fakeDb (): any {
  return { address: record.pieces, events: new EventEmitter(), close: async () => {} }
}

describe('Replicas', () => {
  it('two opens of one companion at once (saved-companion loader and discovery at a restart) open it once and share the replica', async () => {
    const opens: Array<(db: any) => void> = []
    const open = async (): Promise<any> => await new Promise(resolve => { opens.push(resolve) })
    const replicas = new Replicas({ helia: {} as any, open: open as any, events: new TypedEventEmitter<NewPiecePleaseEvents>(), logger: defaultLogger() }, { memory: true })
    const signal = new AbortController().signal
    const loader = replicas.open('/orbitdb/zdpuUser', record, signal, 'npp-catalog')
    const discovery = replicas.open('/orbitdb/zdpuUser', record, signal, 'npp-catalog')
    await new Promise(resolve => setImmediate(resolve))
    assert.equal(opens.length, 1, 'one open of the catalog')
    opens[0]!(fakeDb())
    const [a, b] = await Promise.all([loader, discovery])
    assert.equal(a, b)
    assert.deepEqual(replicas.list(), [a])
  })

  it('when the first open fails (its caller gave up), the one waiting opens with its own signal', async () => {
    let calls = 0
    const open = async (): Promise<any> => {
      if (++calls === 1) throw new Error('the first caller gave up')
      return fakeDb()
    }
    const replicas = new Replicas({ helia: {} as any, open: open as any, events: new TypedEventEmitter<NewPiecePleaseEvents>(), logger: defaultLogger() }, { memory: true })
    const signal = new AbortController().signal
    const first = replicas.open('/orbitdb/zdpuUser', record, signal, 'npp-catalog')
    const second = replicas.open('/orbitdb/zdpuUser', record, signal, 'npp-catalog')
    await assert.rejects(first, /gave up/)
    assert.equal((await second).address, record.pieces)
    assert.equal(calls, 2)
  })
})
