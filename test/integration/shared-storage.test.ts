import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readdir } from 'node:fs/promises'
import { KeyValue } from '@orbitdb/core'
import { createStack, type Stack } from '../../src/stack/stack.ts'
import { Catalog, type CatalogDatabase } from '../../src/catalog/catalog.ts'
import { tempDir, LOOPBACK } from '../helpers/peers.ts'
import type { KeyValueDatabase } from '../../src/orbitdb/types.ts'

const openFiles = async (): Promise<number> => (await readdir('/proc/self/fd')).length

/**
 * The stack keeps every database's heads, log index and catalog index in one
 * LevelDB (stack/shared-storage.ts), not two or three stores per database.
 */
describe('shared storage', () => {
  const persistentStack = async (directory: string): Promise<Stack> => await createStack({ storage: 'persistent', directory, listen: LOOPBACK, pubsubDiscovery: false })

  it('open files do not grow with the databases open, and what they hold survives a restart', async () => {
    const directory = await tempDir()
    const COUNT = 40
    let stack = await persistentStack(directory)
    const addresses: string[] = []
    try {
      const before = await openFiles()
      const dbs: Array<CatalogDatabase<any>> = []
      for (let n = 0; n < COUNT; n++) {
        const db = await stack.open<CatalogDatabase<any>>(`catalog-${n}`, { type: Catalog.type, Database: Catalog() })
        await db.batch({ put: [{ hash: `piece-${n}`, instrument: 'Piano' }, { hash: `other-${n}`, instrument: 'Cello' }] })
        dbs.push(db)
        addresses.push(db.address)
      }
      const grown = (await openFiles()) - before
      // with a store per heads, log index and catalog index: 3 x 4 files or more per database (480 here)
      assert.ok(grown < COUNT, `${grown} more open files with ${COUNT} catalogs open`)
      for (const db of dbs) await db.close()
    } finally {
      await stack.close()
    }
    // no store of its own was written for any of them
    const own = (await readdir(`${directory}/orbitdb`)).filter(name => name !== 'shared' && name !== 'keystore')
    assert.deepEqual(own, [], 'only the shared store and the keystore')

    stack = await persistentStack(directory)
    try {
      for (const [n, address] of addresses.entries()) {
        const db = await stack.open<CatalogDatabase<any>>(address, { Database: Catalog() })
        assert.equal((db as unknown as { indexSource: string }).indexSource, 'disk', 'the catalog index is read back from the shared store')
        assert.deepEqual((await db.getBy('instrument', 'Cello')).map(d => d.hash), [`other-${n}`])
        assert.equal((await db.log.heads()).length, 1)
        await db.close()
      }
    } finally {
      await stack.close()
    }
  })

  /** Run `use` on a stack started on `directory`, stopped afterwards whatever happens. */
  const withStack = async <T>(directory: string, use: (stack: Stack) => Promise<T>): Promise<T> => {
    const stack = await persistentStack(directory)
    try {
      return await use(stack)
    } finally {
      await stack.close()
    }
  }

  it('a database written with its own stores (before the shared store) opens with them, its data intact', async () => {
    const directory = await tempDir()
    const address = await withStack(directory, async (stack) => {
      // OrbitDB's own open, not the stack's: the layout of directories written before
      const db = await stack.orbitdb.open('older', { type: 'keyvalue', Database: KeyValue() }) as unknown as KeyValueDatabase
      await db.put('tune', 'Greensleeves')
      await db.close()
      return db.address
    })
    await withStack(directory, async (stack) => {
      const db = await stack.open<KeyValueDatabase>(address, { Database: KeyValue() })
      assert.equal(await db.get('tune'), 'Greensleeves')
      await db.put('next', 'Scarborough Fair')
      await db.close()
    })
    await withStack(directory, async (stack) => {
      const db = await stack.open<KeyValueDatabase>(address, { Database: KeyValue() })
      assert.equal(await db.get('next'), 'Scarborough Fair', 'still written to its own stores')
      assert.equal((await db.log.heads()).length, 1)
      await db.close()
    })
  })

  it('a database of the shared store opened once by OrbitDB alone (its own stores made) still opens from the shared store', async () => {
    const directory = await tempDir()
    const address = await withStack(directory, async (stack) => {
      const db = await stack.open<KeyValueDatabase>('shared-first', { type: 'keyvalue', Database: KeyValue() })
      await db.put('tune', 'Danny Boy')
      await db.close()
      // an app opening it through npp.orbitdb with OrbitDB's defaults: its own (empty) heads store appears
      const direct = await stack.orbitdb.open(db.address) as unknown as KeyValueDatabase
      await direct.close()
      return db.address
    })
    await withStack(directory, async (stack) => {
      const db = await stack.open<KeyValueDatabase>(address, { Database: KeyValue() })
      assert.equal(await db.get('tune'), 'Danny Boy', 'read from the shared store, not the empty store of its own')
      await db.close()
    })
  })
})
