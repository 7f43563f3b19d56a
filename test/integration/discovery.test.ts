import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { CID } from 'multiformats/cid'
import { base58btc } from 'multiformats/bases/base58'
import { parseAddress } from '@orbitdb/core'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { TimeoutError } from '../../src/index.ts'
import { peer, befriend } from '../helpers/peers.ts'

/** Discovery between real nodes on loopback, when the first try fails for a passing reason. */
describe('discovery after a transient failure', () => {
  it('a peer whose first announcement cannot be delivered is found all the same', async () => {
    const [a, b] = await Promise.all([peer({ username: 'ana' }), peer({ username: 'ben' })])
    // b's first publish to a's topic fails, as when gossipsub's stream is reset under load
    const pubsub = b.libp2p.services.pubsub
    const publish = pubsub.publish.bind(pubsub)
    let refused = 0
    pubsub.publish = async (topic, ...rest) => {
      if (topic === a.peerId && refused === 0) {
        refused++
        throw new Error('stream reset')
      }
      return await publish(topic, ...rest)
    }
    await befriend(a, b)
    assert.equal(refused, 1)
    assert.ok(b.stats.announcementsRetried >= 1, 'b announced again')
  })

  it('a user db that could not be read in time is verified again, not refused', async () => {
    const [a, b] = await Promise.all([peer({ username: 'cai' }), peer({ username: 'dee' })])
    // a's first read of b's user db manifest times out, as when b is busy
    const manifest = CID.parse(parseAddress(b.databases.user.address).hash, base58btc)
    const blockstore = a.node.blockstore as any
    const get = blockstore.get.bind(blockstore)
    let timedOut = 0
    blockstore.get = (cid: CID, ...rest: unknown[]) => {
      if (timedOut === 0 && cid.equals(manifest)) {
        timedOut++
        return (async function * () { throw new TimeoutError('reading the manifest did not finish in time') })()
      }
      return get(cid, ...rest)
    }
    await befriend(a, b)
    assert.equal(timedOut, 1)
    assert.equal(a.stats.messagesDropped['invalid-user-db'], 0)
    assert.ok(a.stats.discoveriesRetried >= 1, 'a verified again')
  })

  it('an announcement the receiver dropped after it was delivered is sent again, and the peer found', async () => {
    // b waits 2 x 2 s for a to take its announcement in before sending it again
    const [a, b] = await Promise.all([peer({ username: 'eva' }), peer({ username: 'fox', discoveryTimeout: 2000 })])
    // a drops b's first announcement on arrival, after gossipsub delivered it
    // (as its discovery does when its queue is full or b's rate is spent):
    // b learns nothing of it
    let dropped = 0
    a.libp2p.services.pubsub.topicValidators.set(a.peerId, async (from) => {
      if (from.toString() === b.peerId && dropped === 0) {
        dropped++
        return TopicValidatorResult.Ignore
      }
      return TopicValidatorResult.Accept
    })
    await befriend(a, b)
    assert.equal(dropped, 1)
    assert.ok(b.stats.announcementsUnacknowledged >= 1, 'b sent it again for want of an acknowledgement')
  })
})
