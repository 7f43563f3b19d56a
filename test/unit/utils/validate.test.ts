import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import {
  assertHash, assertInstrument, assertExtra, assertProfileKey, assertProfileValue,
  parseMultiaddr, parsePeerId, isOrbitDBAddress, assertMessageObject, isJsonValue, positiveInteger, stringList, iceServerList
} from '../../../src/utils/validate.ts'
import {
  InvalidHashError, InvalidInstrumentError, InvalidPieceError, InvalidProfileFieldError,
  InvalidMultiaddrError, InvalidPeerIdError, InvalidMessageError, InvalidOptionError, NewPiecePleaseError
} from '../../../src/index.ts'

describe('caller input validation', () => {
  it('iceServers: none by default; STUN/TURN entries accepted; anything else refused with the shape expected', () => {
    assert.deepEqual(iceServerList(undefined), [])
    const turn = { urls: ['turn:turn.example.org:3478', 'turns:turn.example.org:5349'], username: 'u', credential: 'c' }
    assert.deepEqual(iceServerList([{ urls: 'stun:stun.example.org:3478' }, turn]), [{ urls: 'stun:stun.example.org:3478' }, turn])
    for (const bad of ['stun:x', [{}], [{ urls: 'http://x' }], [{ urls: [] }], [{ urls: 'stun:x', username: 1 }], [null]]) {
      assert.throws(() => iceServerList(bad), (err: any) => err instanceof InvalidOptionError && /iceServers/.test(err.message), JSON.stringify(bad))
    }
  })

  it('accepts a normal hash and rejects empty, blank, non-string and huge ones with InvalidHashError naming the value', () => {
    assertHash('QmNR2n4zywCV61MeMLB6JwPueAPqheqpfiA4fLPMxouEmQ')
    for (const bad of ['', '   ', 42, null, undefined, {}, ['a'], 'x'.repeat(257)]) {
      assert.throws(() => { assertHash(bad) }, (err: any) => err instanceof InvalidHashError && err.name === 'InvalidHashError' && err instanceof NewPiecePleaseError)
    }
    assert.throws(() => { assertHash(42) }, /got number 42/)
  })

  it('rejects bad instruments with InvalidInstrumentError', () => {
    assertInstrument('Harpsichord')
    for (const bad of ['', ' ', 7, null, 'x'.repeat(129)]) {
      assert.throws(() => { assertInstrument(bad) }, InvalidInstrumentError)
    }
  })

  it('accepts JSON extra fields and rejects reserved keys, non-JSON values and oversized extras', () => {
    assertExtra(undefined)
    assertExtra({ title: 'Gymnopédie No. 1', composer: 'Satie', year: 1888, tags: ['slow'], meta: { difficulty: 3 } })
    assert.throws(() => { assertExtra({ hash: 'other' }) }, InvalidPieceError)
    assert.throws(() => { assertExtra({ owner: 'me' }) }, InvalidPieceError)
    assert.throws(() => { assertExtra({ f: () => 1 }) }, InvalidPieceError)
    assert.throws(() => { assertExtra({ n: Number.NaN }) }, InvalidPieceError)
    assert.throws(() => { assertExtra({ d: new Date() }) }, InvalidPieceError)
    assert.throws(() => { assertExtra('title') }, InvalidPieceError)
    assert.throws(() => { assertExtra({ big: 'x'.repeat(9000) }) }, InvalidPieceError)
  })

  it('guards profile keys and values; library-managed fields are read-only', () => {
    assertProfileKey('username')
    assertProfileKey('favourite.composer')
    for (const bad of ['', 5, null, 'has space', 'ü', '__proto__', 'k'.repeat(65)]) {
      assert.throws(() => { assertProfileKey(bad) }, InvalidProfileFieldError)
    }
    assertProfileValue('username', 'clara')
    assert.throws(() => { assertProfileValue('username', '') }, InvalidProfileFieldError)
    assert.throws(() => { assertProfileValue('username', 12) }, InvalidProfileFieldError)
    for (const key of ['pieces', 'nodeId', 'counters']) {
      assert.throws(() => { assertProfileValue(key, 'x') }, InvalidProfileFieldError)
    }
    assertProfileValue('instruments', ['piano', 'cello'])
    assert.throws(() => { assertProfileValue('when', new Date()) }, InvalidProfileFieldError)
    assert.throws(() => { assertProfileValue('nothing', undefined) }, InvalidProfileFieldError)
    assert.throws(() => { assertProfileValue('bio', 'x'.repeat(5000)) }, InvalidProfileFieldError)
  })

  it('parses multiaddrs and peer ids or throws typed errors', () => {
    assert.equal(parseMultiaddr('/ip4/127.0.0.1/tcp/4001').toString(), '/ip4/127.0.0.1/tcp/4001')
    for (const bad of ['', 'not-a-multiaddr', '/ip4/999.1.1.1/tcp/1', '/tcp/abc', 12]) {
      assert.throws(() => parseMultiaddr(bad), InvalidMultiaddrError)
    }
    assert.equal(parsePeerId('12D3KooWKk87sHnyYXL4fyJucWJ4fGJoou4c3C8YJHcoS69zJcHB').toString(), '12D3KooWKk87sHnyYXL4fyJucWJ4fGJoou4c3C8YJHcoS69zJcHB')
    for (const bad of ['', 'QmNotAPeer', 3]) {
      assert.throws(() => parsePeerId(bad), InvalidPeerIdError)
    }
  })

  it('recognises OrbitDB addresses only', () => {
    assert.equal(isOrbitDBAddress('/orbitdb/zdpuAvP1TvbuWDNQEvET5n4HmNZcGrVMbJPpi6An51qzzHVnL'), true)
    for (const bad of ['/orbitdb/nope', 'zdpuAvP1TvbuWDNQEvET5n4HmNZcGrVMbJPpi6An51qzzHVnL', '/ipfs/zdpuAvP1TvbuWDNQEvET5n4HmNZcGrVMbJPpi6An51qzzHVnL', 5, null, '/orbitdb/' + 'z'.repeat(200)]) {
      assert.equal(isOrbitDBAddress(bad), false, String(bad))
    }
  })

  it('checks outgoing messages are small JSON objects', () => {
    assertMessageObject({ hello: 'world', n: 1 })
    assert.throws(() => { assertMessageObject('text') }, InvalidMessageError)
    assert.throws(() => { assertMessageObject([1]) }, InvalidMessageError)
    assert.throws(() => { assertMessageObject({ big: 'x'.repeat(17 * 1024) }) }, InvalidMessageError)
    const cyclic: any = {}
    cyclic.self = cyclic
    assert.equal(isJsonValue(cyclic), false)
  })

  it('validates numeric and list options with InvalidOptionError', () => {
    assert.equal(positiveInteger('t', undefined, 5), 5)
    assert.equal(positiveInteger('t', 10, 5), 10)
    for (const bad of [0, -1, Number.NaN, '10', Infinity]) {
      assert.throws(() => positiveInteger('t', bad, 5), InvalidOptionError)
    }
    assert.deepEqual(stringList('listen', undefined, ['/ip4/127.0.0.1/tcp/0']), ['/ip4/127.0.0.1/tcp/0'])
    assert.throws(() => stringList('listen', '/ip4/127.0.0.1/tcp/0', []), InvalidOptionError)
    assert.throws(() => stringList('listen', ['nope'], []), InvalidMultiaddrError)
  })
})
