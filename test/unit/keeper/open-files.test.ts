import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { FILES_BESIDE_CONNECTIONS, openFilesWanted } from '../../../src/keeper/server.ts'

describe('openFilesWanted', () => {
  it('counts the relay\'s and the keeper node\'s connections and pending ones at their caps, and the files beside them', () => {
    // relay 1,024 + 1,024 pending, keeper node 300 + 256 pending (as its doc says)
    assert.equal(openFilesWanted(), 1024 + 1024 + 300 + 256 + FILES_BESIDE_CONNECTIONS)
    assert.equal(openFilesWanted({}), openFilesWanted())
  })

  it('grows with the relay\'s reservations and the peers expected per address', () => {
    // four connections per reservation
    assert.equal(openFilesWanted({ maxReservations: 1000 }), openFilesWanted() - 1024 + 4000)
    assert.ok(openFilesWanted({ peersPerAddress: 2000 }) > openFilesWanted())
  })
})
