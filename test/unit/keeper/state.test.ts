import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { StateFile, bearerMatches, canonicalPeerId, loadToken, readState, readToken, writeState } from '../../../src/keeper/state.ts'
import { KeeperConfigError } from '../../../src/keeper/errors.ts'
import { InvalidPeerIdError } from '../../../src/errors.ts'

const ID_A = '12D3KooWCesfH97p8D4htZmJuQdZEc1PaZD64HWNwFcqN5BVjDCy'
const ID_B = '12D3KooWNcU1Z2ide4vtwmGBPns2a92jHm3YEN7gqrDdFvcLbkuQ'
/** ID_A as a CIDv1 (libp2p-key, base32): another spelling of the same peer id. */
const ID_A_AS_CID = 'bafzaajaiaejcakretfyhvl2jaczkpiwmtxf53zgvqvehkqtxmflmaz6hck4cw7dw'

const dirs: string[] = []
after(async () => { await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) })) })
async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'npp-keeper-state-'))
  dirs.push(dir)
  return dir
}

describe('keeper state', () => {
  it('canonicalPeerId: one spelling per peer, InvalidPeerIdError naming what was received', () => {
    assert.equal(canonicalPeerId(ID_A), ID_A)
    assert.equal(canonicalPeerId(ID_A_AS_CID), ID_A)
    for (const bad of ['', 'nope', 42, null, 'x'.repeat(200), `/p2p/${ID_A}`]) {
      assert.throws(() => canonicalPeerId(bad), InvalidPeerIdError, String(bad))
    }
  })

  it('a missing keeper.json is an empty state; what is written is read back; nothing temporary is left', async () => {
    const dir = await tempDir()
    const file = join(dir, 'keeper.json')
    assert.deepEqual(await readState(file), { allow: [], unlisted: [] })
    await writeState(file, { allow: [ID_A, ID_B], unlisted: [ID_B] })
    assert.deepEqual(await readState(file), { allow: [ID_A, ID_B], unlisted: [ID_B] })
    await writeState(file, { allow: [ID_A], unlisted: [], deny: [ID_B] })
    assert.deepEqual(await readState(file), { allow: [ID_A], unlisted: [], deny: [ID_B] }, 'the denied peers too')
    assert.deepEqual(await readdir(dir), ['keeper.json'])
    assert.equal(JSON.parse(await readFile(file, 'utf8')).version, 1)
    if (process.platform !== 'win32') assert.equal((await stat(file)).mode & 0o777, 0o600)
  })

  it('a keeper.json that cannot be used is refused with KeeperConfigError, never half-read', async () => {
    const dir = await tempDir()
    const file = join(dir, 'keeper.json')
    const cases: Array<[string, RegExp]> = [
      ['{ "allow": [', /is not JSON/],
      ['[]', /must hold a JSON object/],
      ['{ "version": 2, "allow": [] }', /has version number 2/],
      ['{ "allow": "everyone" }', /expected "allow" to be an array of peer ids/],
      [`{ "allow": ["${ID_A}", "mallory"] }`, /"allow": string "mallory" is not a peer id/]
    ]
    for (const [text, message] of cases) {
      await writeFile(file, text)
      await assert.rejects(readState(file), (err: any) => err instanceof KeeperConfigError && message.test(err.message), text)
    }
    // duplicates and other spellings fold into one entry
    await writeFile(file, JSON.stringify({ allow: [ID_A, ID_A_AS_CID, ID_B] }))
    assert.deepEqual(await readState(file), { allow: [ID_A, ID_B], unlisted: [] })
  })

  it('StateFile writes what its source says at the time of writing, folding calls made during a write into one more', async () => {
    const dir = await tempDir()
    const file = join(dir, 'keeper.json')
    let allow: string[] = []
    let reads = 0
    const state = new StateFile(file, () => { reads++; return { allow: [...allow], unlisted: [] } })
    allow = [ID_A]
    const first = state.save()
    // while the first write is under way: two more changes, one more write
    allow = [ID_A, ID_B]
    const second = state.save()
    allow = [ID_B]
    const third = state.save()
    await Promise.all([first, second, third])
    assert.equal(reads, 2)
    assert.deepEqual((await readState(file)).allow, [ID_B])
    await state.flush()
    await state.save()
    assert.equal(reads, 3)
  })

  it('StateFile.save rejects with KeeperConfigError when the file cannot be written', async () => {
    const dir = await tempDir()
    const state = new StateFile(join(dir, 'missing-dir', 'keeper.json'), () => ({ allow: [], unlisted: [] }))
    await assert.rejects(state.save(), KeeperConfigError)
    await state.flush()
  })

  it('the admin token is made once (0600), then read back; one readable by others is made private', async () => {
    const dir = await tempDir()
    const file = join(dir, 'admin-token')
    const made = await loadToken(file)
    assert.equal(made.created, true)
    assert.match(made.token, /^[\w-]{43}$/)
    if (process.platform !== 'win32') assert.equal((await stat(file)).mode & 0o777, 0o600)
    const again = await loadToken(file)
    assert.deepEqual(again, { token: made.token, created: false })
    assert.equal(await readToken(file), made.token)
    if (process.platform !== 'win32') {
      await chmod(file, 0o644)
      await loadToken(file)
      assert.equal((await stat(file)).mode & 0o777, 0o600)
    }
    await writeFile(file, 'short\n')
    await assert.rejects(readToken(file), KeeperConfigError)
    await assert.rejects(readToken(join(dir, 'none')), (err: any) => err instanceof KeeperConfigError && /no admin token at/.test(err.message))
  })

  it('bearerMatches takes only "Bearer <the token>"', () => {
    const token = 'a-token-of-some-length_0123456789'
    assert.equal(bearerMatches(`Bearer ${token}`, token), true)
    assert.equal(bearerMatches(`bearer  ${token} `, token), true)
    for (const header of [undefined, '', token, `Basic ${token}`, `Bearer ${token}x`, `Bearer ${token.slice(1)}`, 'Bearer ', `Bearer ${token} extra`]) {
      assert.equal(bearerMatches(header, token), false, String(header))
    }
  })
})
