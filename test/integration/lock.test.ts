import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createNewPiecePlease, StorageLockedError } from '../../src/index.ts'
import { platform } from '../../src/platform/node.ts'
import { tempDir, LOOPBACK } from '../helpers/peers.ts'

/** The storage lock within one process: a restart waits for the instance stopping; a second running instance is refused, saying so. */
describe('the storage lock in one process', () => {
  it('a start right after stop() (not awaited) on the same directory waits for the stop, then starts with the same peer', async () => {
    const dir = await tempDir()
    const first = await createNewPiecePlease({ directory: dir, listen: LOOPBACK })
    await first.addNewPiece('QmKept', 'Viola')
    const stopped = first.stop()
    const second = await createNewPiecePlease({ directory: dir, listen: LOOPBACK })
    try {
      await stopped
      assert.equal(second.peerId, first.peerId)
      assert.equal((await second.getPieceByHash('QmKept'))?.instrument, 'Viola')
    } finally {
      await second.stop()
    }
  })

  it('while the holder runs, a second lock in this process is refused, naming this process, after a bounded wait', async () => {
    const dir = await tempDir()
    const held = await platform.lockStorage(dir)
    try {
      const t0 = Date.now()
      await assert.rejects(platform.lockStorage(dir, { wait: 200 }), (err: any) => err instanceof StorageLockedError && /another instance in this process/.test(err.message) && err.message.includes(dir))
      assert.ok(Date.now() - t0 < 5_000)
      // released while a second one waits: it gets the lock
      const waiting = platform.lockStorage(dir, { wait: 10_000 })
      await held.release()
      const next = await waiting
      await next.release()
    } finally {
      await held.release()
    }
  })
})
