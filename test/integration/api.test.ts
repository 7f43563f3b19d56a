import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import {
  NewPiecePlease, createNewPiecePlease, InvalidHashError, InvalidInstrumentError, InvalidPieceError,
  InvalidProfileFieldError, InvalidMultiaddrError, InvalidPeerIdError, InvalidMessageError, InvalidOptionError,
  NotStartedError, PieceNotFoundError, TimeoutError
} from '../../src/index.ts'
import { peer, LOOPBACK } from '../helpers/peers.ts'

describe('a single catalog', () => {
  let npp: NewPiecePlease
  before(async () => { npp = await peer({ username: 'clara' }) })

  it('starts with the tutorial profile: username, pieces address and node id', async () => {
    const profile = await npp.getAllProfileFields()
    assert.equal(profile.username, 'clara')
    assert.equal(profile.nodeId, npp.peerId)
    assert.equal(profile.pieces, npp.databases.pieces.address)
    assert.match(String(profile.pieces), /^\/orbitdb\/zdpu/)
    assert.ok(npp.getMultiaddrs().every(a => a.startsWith('/ip4/127.0.0.1/tcp/') && a.endsWith(`/p2p/${npp.peerId}`)))
  })

  it('adds, reads, updates and deletes pieces', async () => {
    const added = await npp.addNewPiece('QmPiano1')
    assert.deepEqual(added, { hash: 'QmPiano1', instrument: 'Piano' })
    await npp.addNewPiece('QmCello1', 'Cello', { title: 'Suite No. 1', composer: 'Bach' })
    assert.deepEqual(await npp.getPieceByHash('QmCello1'), { hash: 'QmCello1', instrument: 'Cello', title: 'Suite No. 1', composer: 'Bach' })
    assert.equal(await npp.getPieceByHash('QmMissing'), undefined)
    assert.deepEqual((await npp.getByInstrument('Piano')).map(p => p.hash), ['QmPiano1'])

    const updated = await npp.updatePieceByHash('QmCello1', 'Viola')
    assert.deepEqual(updated, { hash: 'QmCello1', instrument: 'Viola', title: 'Suite No. 1', composer: 'Bach' })
    assert.deepEqual((await npp.getByInstrument('Viola')).map(p => p.title), ['Suite No. 1'])
    await assert.rejects(npp.updatePieceByHash('QmMissing', 'Oboe'), PieceNotFoundError)

    assert.equal(await npp.deletePieceByHash('QmPiano1'), true)
    assert.equal(await npp.deletePieceByHash('QmPiano1'), false)
    assert.equal(await npp.getPieceByHash('QmPiano1'), undefined)
    assert.deepEqual((await npp.getAllPieces()).map(p => p.hash), ['QmCello1'])
  })

  it('adding an existing hash updates it, and adding the same piece again writes nothing', async () => {
    await npp.addNewPiece('QmSame', 'Flute')
    const entries = (await npp.databases.pieces.log.values()).length
    await npp.addNewPiece('QmSame', 'Flute')
    assert.equal((await npp.databases.pieces.log.values()).length, entries, 'no new log entry')
    await npp.addNewPiece('QmSame', 'Piccolo')
    assert.equal((await npp.getPieceByHash('QmSame'))?.instrument, 'Piccolo')
    assert.equal((await npp.getAllPieces()).filter(p => p.hash === 'QmSame').length, 1)
  })

  it('adds and deletes pieces in bulk, atomically validated and in few entries', async () => {
    const entries = (await npp.databases.pieces.log.values()).length
    const pieces = Array.from({ length: 1500 }, (_, i) => ({ hash: `QmBulk${i}`, instrument: i % 2 === 0 ? 'Organ' : 'Lute', title: `No. ${i}` }))
    const stored = await npp.addPieces([...pieces, { hash: 'QmBulk0', instrument: 'Organ', title: 'last wins' }])
    assert.equal(stored.length, 1501)
    assert.equal(stored[0]?.title, 'last wins')
    assert.equal((await npp.databases.pieces.log.values()).length, entries + 2, '1,500 pieces in two entries')
    assert.equal((await npp.getByInstrument('Organ')).length, 750)
    assert.deepEqual(await npp.getPieceByHash('QmBulk7'), { hash: 'QmBulk7', instrument: 'Lute', title: 'No. 7' })
    // adding them again writes nothing
    await npp.addPieces(pieces.slice(1))
    assert.equal((await npp.databases.pieces.log.values()).length, entries + 2)
    // one bad piece: nothing is written, and the error names it
    await assert.rejects(npp.addPieces([{ hash: 'QmOk', instrument: 'Oud' }, { hash: '', instrument: 'Oud' }]), (err: any) => err.name === 'InvalidHashError' && /piece 1/.test(err.message))
    await assert.rejects(npp.addPieces('nope' as any), InvalidPieceError)
    assert.equal(await npp.getPieceByHash('QmOk'), undefined)
    assert.equal(await npp.deletePieces(pieces.map(p => p.hash).concat('QmNever')), 1500)
    assert.equal((await npp.getByInstrument('Organ')).length, 0)
    assert.equal((await npp.databases.pieces.log.values()).length, entries + 4, 'and 1,500 deletions in two more')
  })

  it('counts practice sessions', async () => {
    assert.equal(await npp.getPracticeCount('QmSame'), 0)
    assert.equal(await npp.incrementPracticeCounter('QmSame'), 1)
    assert.equal(await npp.incrementPracticeCounter('QmSame'), 2)
    assert.equal(await npp.incrementPracticeCounter('QmSame', 3), 5)
    assert.equal(await npp.getPracticeCount('QmSame'), 5)
    assert.equal(await npp.getPracticeCount('QmCello1'), 0)
    await assert.rejects(npp.incrementPracticeCounter('QmSame', 0), InvalidOptionError)
    await assert.rejects(npp.incrementPracticeCounter('QmSame', 1.5), InvalidOptionError)
  })

  it('edits the profile and protects library-managed fields', async () => {
    await npp.updateProfileField('username', 'clara-s')
    await npp.updateProfileField('instruments', ['piano', 'voice'])
    assert.equal(await npp.getProfileField('username'), 'clara-s')
    assert.deepEqual(await npp.getProfileField('instruments'), ['piano', 'voice'])
    await npp.deleteProfileField('instruments')
    assert.equal(await npp.getProfileField('instruments'), undefined)
    await assert.rejects(npp.updateProfileField('pieces', '/orbitdb/zdpuAvP1TvbuWDNQEvET5n4HmNZcGrVMbJPpi6An51qzzHVnL'), InvalidProfileFieldError)
    await assert.rejects(npp.updateProfileField('nodeId', 'someone'), InvalidProfileFieldError)
    await assert.rejects(npp.deleteProfileField('username'), InvalidProfileFieldError)
    await assert.rejects(npp.updateProfileField('bad key', 'v'), InvalidProfileFieldError)
    await assert.rejects(npp.updateProfileField('when', new Date() as any), InvalidProfileFieldError)
    assert.equal(await npp.getProfileField('pieces'), npp.databases.pieces.address)
  })

  it('rejects bad input with typed errors and loses nothing already stored', async () => {
    const before = await npp.getAllPieces()
    await assert.rejects(npp.addNewPiece('' as any), InvalidHashError)
    await assert.rejects(npp.addNewPiece(42 as any), (err: any) => err.name === 'InvalidHashError' && /number 42/.test(err.message))
    await assert.rejects(npp.addNewPiece('QmX', '' as any), InvalidInstrumentError)
    await assert.rejects(npp.addNewPiece('QmX', 'Piano', { hash: 'QmY' } as any), InvalidPieceError)
    await assert.rejects(npp.getByInstrument(null as any), InvalidInstrumentError)
    await assert.rejects(npp.updatePieceByHash(undefined as any, 'Piano'), InvalidHashError)
    await assert.rejects(npp.deletePieceByHash({} as any), InvalidHashError)
    await assert.rejects(npp.connectToPeer('/ip4/nonsense'), InvalidMultiaddrError)
    await assert.rejects(npp.connectToPeer('not-a-peer-id'), InvalidPeerIdError)
    await assert.rejects(npp.sendMessage('not-a-peer-id', {}), InvalidPeerIdError)
    await assert.rejects(npp.sendMessage(npp.peerId, 'hello' as any), InvalidMessageError)
    await assert.rejects(npp.queryCatalog('Piano' as any), InvalidOptionError)
    await assert.rejects(npp.queryCatalog({}, { timeout: -1 }), InvalidOptionError)
    assert.deepEqual(await npp.getAllPieces(), before)
  })

  it('bounds a dial to an address where nobody listens', async () => {
    // a port that was just free on loopback: the dial fails or times out, never hangs
    const started = Date.now()
    await assert.rejects(npp.connectToPeer('/ip4/127.0.0.1/tcp/1/p2p/12D3KooWKk87sHnyYXL4fyJucWJ4fGJoou4c3C8YJHcoS69zJcHB', { signal: AbortSignal.timeout(3000) }))
    assert.ok(Date.now() - started < 5000)
  })

  it('sendMessage to a peer that never subscribes times out with TimeoutError', async () => {
    await assert.rejects(npp.sendMessage('12D3KooWKk87sHnyYXL4fyJucWJ4fGJoou4c3C8YJHcoS69zJcHB', { hi: 1 }, { timeout: 300 }), TimeoutError)
  })
})

describe('lifecycle', () => {
  it('start and stop are idempotent; calls after stop throw NotStartedError', async () => {
    const npp = new NewPiecePlease({ storage: 'memory', listen: LOOPBACK })
    let ready = 0
    npp.onready = () => { ready++ }
    npp.addEventListener('ready', () => { ready++ })
    assert.throws(() => npp.peerId, NotStartedError)
    await Promise.all([npp.start(), npp.start()])
    await npp.start()
    assert.equal(ready, 2, 'one ready event, heard by both the listener and the callback')
    await npp.addNewPiece('QmA')
    await Promise.all([npp.stop(), npp.stop()])
    await npp.stop()
    await assert.rejects(npp.addNewPiece('QmB'), NotStartedError)
    await assert.rejects(npp.getAllPieces(), NotStartedError)
    await assert.rejects(npp.queryCatalog(), NotStartedError)
    assert.throws(() => npp.getIpfsPeers(), NotStartedError)
    assert.throws(() => npp.libp2p, NotStartedError)
  })

  it('rejects invalid options eagerly', async () => {
    await assert.rejects(createNewPiecePlease({ storage: 'disk' as any }), InvalidOptionError)
    await assert.rejects(createNewPiecePlease({ reconnectInterval: 0 }), InvalidOptionError)
    await assert.rejects(createNewPiecePlease({ listen: ['garbage'] }), InvalidMultiaddrError)
    await assert.rejects(createNewPiecePlease({ username: '' }), InvalidProfileFieldError)
    await assert.rejects(createNewPiecePlease({ directory: '' }), InvalidOptionError)
    await assert.rejects(createNewPiecePlease({ announce: ['not a multiaddr'] }), InvalidMultiaddrError)
  })

  it('announces the addresses given instead of where it listens (a keeper behind NAT)', async () => {
    // a documentation address (TEST-NET-1): announced, never dialed
    const npp = await createNewPiecePlease({ storage: 'memory', listen: LOOPBACK, announce: ['/ip4/192.0.2.7/tcp/4002'] })
    try {
      assert.deepEqual(npp.getMultiaddrs().map(String), [`/ip4/192.0.2.7/tcp/4002/p2p/${npp.peerId}`])
    } finally {
      await npp.stop()
    }
  })
})
