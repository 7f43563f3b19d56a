import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeQuietly } from '../../../src/orbitdb/quiet-close.ts'

describe('closeQuietly', () => {
  it('diverts aborted reads printed during a close, passes other errors through, and restores console.error', async () => {
    const printed: unknown[][] = []
    const before = console.error
    console.error = (...args: unknown[]) => { printed.push(args) }
    try {
      const abort = new DOMException('This operation was aborted', 'AbortError')
      const allAborted = new AggregateError([abort, Object.assign(new Error('Want was aborted'), { name: 'AbortError' })], 'All promises were rejected')
      const real = new Error('Could not validate signature')
      // two closes overlap: the filter stays until the last one ends
      let finishFirst: () => void = () => {}
      const first = closeQuietly(async () => { await new Promise<void>(resolve => { finishFirst = resolve }) })
      await closeQuietly(async () => {
        console.error(abort)
        console.error(allAborted)
        console.error(real)
        console.error(new AggregateError([abort, real]))
      })
      console.error(abort) // the first close is still running
      finishFirst()
      await first
      console.error(abort) // after every close: printed again
      assert.deepEqual(printed.map(args => (args[0] as Error).message), ['Could not validate signature', '', 'This operation was aborted'])
    } finally {
      console.error = before
    }
    assert.equal(console.error, before)
  })

  it('leaves alone a console.error that someone else installed during the close', async () => {
    const before = console.error
    const theirs = (): void => {}
    await closeQuietly(async () => { console.error = theirs })
    assert.equal(console.error, theirs)
    console.error = before
  })

  it('restores console.error when the close throws', async () => {
    const before = console.error
    await assert.rejects(closeQuietly(async () => { throw new Error('boom') }), /boom/)
    assert.equal(console.error, before)
  })
})
