import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { LevelStorage, MemoryStorage } from '@orbitdb/core'
import { Catalog } from '../../../src/catalog/catalog.ts'
import { tempDir } from '../../helpers/peers.ts'
import type { DatabaseInit } from '../../../src/orbitdb/types.ts'

const ADDRESS = '/orbitdb/zdpuAmrcSRUhkQcnRQ6p4bphs7DJWGBkqczSGFYynX6moTcDL'

describe('Catalog that fails to open', () => {
  it('closes the index store it opened before OrbitDB\'s Database threw', async () => {
    const directory = await tempDir()
    // Database builds its Log last, after its storages: with the storages
    // given (in memory) and no identity, Log throws 'Identity is required'
    // and nothing but the catalog's own index store was opened on disk
    const init = {
      directory,
      address: ADDRESS,
      name: 'failed-open',
      entryStorage: await MemoryStorage(),
      headsStorage: await MemoryStorage(),
      indexStorage: await MemoryStorage()
    } as unknown as DatabaseInit
    await assert.rejects(Catalog()(init), /Identity is required/)

    // a store still held by this process cannot be opened again (LEVEL_LOCKED)
    const path = join(directory, ADDRESS, '_catalog')
    const again = await LevelStorage({ path }).catch((err: any) => assert.fail(`the index store ${path} is still held: ${String(err?.cause?.code ?? err?.code ?? err)}`))
    await again.close()
  })
})
