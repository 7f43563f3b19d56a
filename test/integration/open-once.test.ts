import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { KeyValue } from '@orbitdb/core'
import { createStack, type Stack } from '../../src/stack/stack.ts'
import { tempDir, LOOPBACK } from '../helpers/peers.ts'
import type { KeyValueDatabase } from '../../src/orbitdb/types.ts'

/** `Stack.open`: one open per database, whoever asks first; each caller closes only its own use. */
describe('one open per database', () => {
  const persistentStack = async (): Promise<Stack> => await createStack({ storage: 'persistent', directory: await tempDir(), listen: LOOPBACK, pubsubDiscovery: false })

  it('two concurrent opens of one address share one database (no LEVEL_LOCKED); a close by one leaves it open for the other', async () => {
    const stack = await persistentStack()
    try {
      const first = await stack.open<KeyValueDatabase>('shared', { type: 'keyvalue', Database: KeyValue() })
      const address = first.address
      await first.put('before', 1)
      await first.close()

      // what discovery and the saved-companion loader do at a restart: open the same replica at once
      const [a, b] = await Promise.all([
        stack.open<KeyValueDatabase>(address, { Database: KeyValue() }),
        stack.open<KeyValueDatabase>(address, { Database: KeyValue() })
      ])
      assert.equal(a.address, address)
      assert.equal(b.address, address)
      await a.put('from-a', 2)
      assert.equal(await b.get('from-a'), 2, 'one database behind both')
      assert.equal(await b.get('before'), 1)

      // a third user while it is open gets it too
      const c = await stack.open<KeyValueDatabase>(address, { Database: KeyValue() })
      assert.equal(await c.get('from-a'), 2)

      await a.close()
      await a.close() // twice by the same user counts once
      await b.put('after-a', 3)
      assert.equal(await c.get('after-a'), 3, 'still open for the others')
      await b.close()
      await c.close()

      // closed for real once the last user let go: it opens again from disk
      const again = await stack.open<KeyValueDatabase>(address, { Database: KeyValue() })
      assert.equal(await again.get('after-a'), 3)
      // and closing while another open of it is in flight leaves a usable database to the newcomer
      const [reopened] = await Promise.all([stack.open<KeyValueDatabase>(address, { Database: KeyValue() }), again.close()])
      assert.equal(await reopened.get('after-a'), 3)
      await reopened.close()
    } finally {
      await stack.close()
    }
  })

  it('an open whose caller gives up does not cancel it for another caller still waiting', async () => {
    const stack = await persistentStack()
    try {
      const db = await stack.open<KeyValueDatabase>('patient', { type: 'keyvalue', Database: KeyValue() })
      const address = db.address
      await db.put('k', 'v')
      await db.close()
      const impatient = new AbortController()
      const gaveUp = stack.open<KeyValueDatabase>(address, { Database: KeyValue(), signal: impatient.signal })
      const waiting = stack.open<KeyValueDatabase>(address, { Database: KeyValue() })
      impatient.abort()
      const late = await gaveUp.catch(() => undefined)
      const other = await waiting
      assert.equal(await other.get('k'), 'v')
      await late?.close()
      assert.equal(await other.get('k'), 'v', 'the late arrival\'s close did not close it')
      await other.close()
    } finally {
      await stack.close()
    }
  })
})
