/**
 * OrbitDB's own replication test of its Documents database, run against
 * OrbitDB's `Documents` (to check this port) and against `npp-catalog`.
 *
 * Ported from orbitdb/orbitdb `test/databases/replication/documents.test.js`,
 * commit 31597d708420703bc921da02662c594ead446570 (tested against
 * `src/databases/documents.js` as shipped in @orbitdb/core 4.0.0).
 * Copyright (c) 2015-2018 Protocol Labs Inc., (c) 2018 Haja Networks Oy; MIT
 * License, whose full text ships with the dependency
 * (node_modules/@orbitdb/core/LICENSE).
 *
 * Changed from upstream, and only this: mocha's hooks and `this.timeout` are
 * node:test's; the Helia nodes, keystore, directories, `connectPeers` and
 * `waitFor` come from `./harness.ts` (loopback, temporary directories, no
 * fixed sleep: see there); the suite runs once per subject, so
 * `Documents()` reads `subject.Database()`. The test and its assertion are
 * upstream's.
 */
import { describe, it, before, after, beforeEach, afterEach } from 'node:test'
import { deepStrictEqual } from 'node:assert'
import { join } from 'node:path'
import { KeyStore, Identities } from '@orbitdb/core'
import { SUBJECTS, createHelia, connectPeers, waitFor, tempDir, cleanup } from './harness.ts'

for (const subject of SUBJECTS) {
  describe(`Documents Database Replication: ${subject.name}`, { timeout: 30000 }, () => {
    let ipfs1: any, ipfs2: any
    let keystore: any
    let identities: any
    let testIdentity1: any, testIdentity2: any
    let db1: any, db2: any
    let directory1: string, directory2: string

    const databaseId = 'documents-AAA'

    const accessController = {
      canAppend: async (entry: any) => {
        const identity1 = await identities.getIdentity(entry.identity)
        const identity2 = await identities.getIdentity(entry.identity)
        return identity1.id === testIdentity1.id || identity2.id === testIdentity2.id
      }
    }

    before(async () => {
      [ipfs1, ipfs2] = await Promise.all([createHelia(), createHelia()])
      await connectPeers(ipfs1, ipfs2)

      keystore = await KeyStore({ path: join(await tempDir(), 'testkeys') })
      identities = await Identities({ keystore })
      testIdentity1 = await identities.createIdentity({ id: 'userA' })
      testIdentity2 = await identities.createIdentity({ id: 'userB' })
      directory1 = join(await tempDir(), 'orbitdb1')
      directory2 = join(await tempDir(), 'orbitdb2')
    })

    after(async () => {
      if (keystore != null) {
        await keystore.close()
      }

      await cleanup()
    })

    beforeEach(async () => {
      db1 = await subject.Database()({ ipfs: ipfs1, identity: testIdentity1, address: databaseId, accessController, directory: directory1 })
      db2 = await subject.Database()({ ipfs: ipfs2, identity: testIdentity2, address: databaseId, accessController, directory: directory2 })
    })

    afterEach(async () => {
      if (db1 != null) {
        await db1.drop()
        await db1.close()
      }
      if (db2 != null) {
        await db2.drop()
        await db2.close()
      }
    })

    it('replicates documents across two peers', async () => {
      let connected1 = false
      let connected2 = false

      const onConnected1 = async (): Promise<void> => {
        connected1 = true
      }

      const onConnected2 = async (): Promise<void> => {
        connected2 = true
      }

      db1.events.on('join', onConnected1)
      db2.events.on('join', onConnected2)

      await db1.put({ _id: 1, msg: 'record 1 on db 1' })
      await db2.put({ _id: 2, msg: 'record 2 on db 2' })
      await db1.put({ _id: 3, msg: 'record 3 on db 1' })
      await db2.put({ _id: 4, msg: 'record 4 on db 2' })

      await waitFor(() => connected1, () => true)
      await waitFor(() => connected2, () => true)

      const all1 = []
      for await (const item of db1.iterator()) {
        all1.unshift(item)
      }

      const all2 = []
      for await (const item of db2.iterator()) {
        all2.unshift(item)
      }

      deepStrictEqual(all1, all2)
    })
  })
}
