import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createStack } from '../../src/stack/stack.ts'
import { createNewPiecePlease } from '../../src/index.ts'
import { LOOPBACK, tempDir } from '../helpers/peers.ts'

describe('bring your own stack', () => {
  it('uses a caller\'s Helia node and leaves it running after stop()', async () => {
    const stack = await createStack({ storage: 'memory', directory: await tempDir(), listen: LOOPBACK, pubsubDiscovery: false })
    try {
      const npp = await createNewPiecePlease({ helia: stack.helia, storage: 'memory' })
      assert.equal(npp.peerId, stack.libp2p.peerId.toString())
      await npp.addNewPiece('QmOwn', 'Piano')
      assert.equal((await npp.getAllPieces()).length, 1)
      await npp.stop()
      assert.equal(stack.libp2p.status, 'started', 'the caller\'s libp2p keeps running')
    } finally {
      await stack.close()
    }
  })

  it('uses a caller\'s OrbitDB instance and leaves it open after stop()', async () => {
    const stack = await createStack({ storage: 'memory', directory: await tempDir(), listen: LOOPBACK, pubsubDiscovery: false })
    try {
      const npp = await createNewPiecePlease({ orbitdb: stack.orbitdb })
      assert.equal(npp.orbitdb, stack.orbitdb)
      await npp.addNewPiece('QmOwn', 'Cello')
      await npp.stop()
      const db = await stack.open<any>('still-usable', { type: 'keyvalue' })
      await db.put('k', 'v')
      assert.equal(await db.get('k'), 'v')
    } finally {
      await stack.close()
    }
  })

  it('refuses a libp2p node without a pubsub service', async () => {
    const stack = await createStack({ storage: 'memory', directory: await tempDir(), listen: LOOPBACK, pubsubDiscovery: false })
    try {
      const fake: any = Object.create(stack.helia)
      Object.defineProperty(fake, 'libp2p', { value: { ...stack.libp2p, services: {} } })
      await assert.rejects(createNewPiecePlease({ helia: fake, storage: 'memory' }), TypeError)
    } finally {
      await stack.close()
    }
  })
})
