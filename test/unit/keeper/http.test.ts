import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, request, type Server } from 'node:http'
import { keeperHttp, type KeeperAdmin } from '../../../src/keeper/http.ts'
import type { KeptUser } from '../../../src/keeper/keeper.ts'

const TOKEN = 'the-admin-token-0123456789abcdef'
const ID_A = '12D3KooWCesfH97p8D4htZmJuQdZEc1PaZD64HWNwFcqN5BVjDCy'
const ID_B = '12D3KooWNcU1Z2ide4vtwmGBPns2a92jHm3YEN7gqrDdFvcLbkuQ'
const ID_A_AS_CID = 'bafzaajaiaejcakretfyhvl2jaczkpiwmtxf53zgvqvehkqtxmflmaz6hck4cw7dw'

const user = (peerId: string, listed: boolean): KeptUser => ({ peerId, userDb: '/orbitdb/zdpuUser', catalog: '/orbitdb/zdpuCatalog', username: `u-${peerId.slice(-4)}`, listed, pieces: 3, bytes: 1200, lastUpdate: 1_700_000_000_000 })

/** An allowlist in memory, counting the calls that reach it. */
function stubAdmin (): KeeperAdmin & { allowed: Set<string>, calls: string[] } {
  const allowed = new Set<string>()
  const calls: string[] = []
  return {
    allowed,
    calls,
    kept: () => [user(ID_A, true), user(ID_B, false)],
    allow: async (peerId) => {
      calls.push(`allow ${peerId}`)
      const changed = !allowed.has(peerId)
      allowed.add(peerId)
      return { changed }
    },
    deny: async (peerId) => {
      calls.push(`deny ${peerId}`)
      return { changed: allowed.delete(peerId), dropped: peerId === ID_A }
    }
  }
}

describe('the keeper\'s HTTP API', () => {
  const admin = stubAdmin()
  let server: Server
  let base = ''
  before(async () => {
    const http = keeperHttp(admin, { token: TOKEN, bodyTimeout: 300 })
    server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/'
      http.handle(req, res, path).then(handled => {
        if (!handled) { res.writeHead(404); res.end('not mine') }
      }, () => { res.writeHead(500); res.end() })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const address = server.address()
    base = `http://127.0.0.1:${typeof address === 'object' && address != null ? address.port : 0}`
  })
  after(async () => {
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
  })

  /** POST `body` with `token` (`null`: no Authorization header). */
  const post = async (path: string, body: string, token: string | null = TOKEN): Promise<{ status: number, json: any, headers: Headers }> => {
    const res = await fetch(base + path, { method: 'POST', body, headers: token == null ? {} : { authorization: `Bearer ${token}` } })
    return { status: res.status, json: await res.json(), headers: res.headers }
  }

  it('GET /catalogs: the listed users to anyone (CORS), all of them with the token, 401 with a wrong one', async () => {
    const open = await fetch(`${base}/catalogs`)
    assert.equal(open.status, 200)
    assert.equal(open.headers.get('access-control-allow-origin'), '*')
    assert.deepEqual(await open.json(), [{ peerId: ID_A, username: `u-${ID_A.slice(-4)}`, pieces: 3, bytes: 1200, lastUpdate: 1_700_000_000_000, listed: true }])
    const all = await fetch(`${base}/catalogs`, { headers: { authorization: `Bearer ${TOKEN}` } })
    assert.deepEqual((await all.json()).map((e: any) => [e.peerId, e.listed]), [[ID_A, true], [ID_B, false]])
    const wrong = await fetch(`${base}/catalogs`, { headers: { authorization: 'Bearer guess' } })
    assert.equal(wrong.status, 401)
    assert.equal((await wrong.json()).error, 'unauthorized')
    const posted = await fetch(`${base}/catalogs`, { method: 'POST' })
    assert.equal(posted.status, 405)
    assert.equal(posted.headers.get('allow'), 'GET')
  })

  it('admin calls need the token: 401 (with WWW-Authenticate) before the body is even read', async () => {
    const before = admin.calls.length
    for (const token of [null, 'guess', TOKEN.slice(0, -1), `${TOKEN} `.repeat(2).trim()]) {
      const { status, json, headers } = await post('/admin/allow', JSON.stringify({ peerId: ID_A }), token)
      assert.equal(status, 401, String(token))
      assert.equal(json.error, 'unauthorized')
      assert.match(headers.get('www-authenticate') ?? '', /^Bearer /)
    }
    assert.equal((await post('/admin/deny', 'not even json', null)).status, 401)
    assert.equal(admin.calls.length, before, 'nothing reached the keeper')
  })

  it('allow and deny are idempotent and say whether anything changed; peer ids are taken in any spelling', async () => {
    assert.deepEqual((await post('/admin/allow', JSON.stringify({ peerId: ID_A }))).json, { peerId: ID_A, allowed: true, changed: true })
    assert.deepEqual((await post('/admin/allow', JSON.stringify({ peerId: ID_A_AS_CID }))).json, { peerId: ID_A, allowed: true, changed: false })
    assert.deepEqual([...admin.allowed], [ID_A])
    assert.deepEqual((await post('/admin/deny', JSON.stringify({ peerId: ID_A }))).json, { peerId: ID_A, allowed: false, changed: true, dropped: true })
    assert.deepEqual((await post('/admin/deny', JSON.stringify({ peerId: ID_B }))).json, { peerId: ID_B, allowed: false, changed: false, dropped: false })
    assert.deepEqual([...admin.allowed], [])
  })

  it('bad bodies get a 400 with a stable error code, and never reach the keeper', async () => {
    const before = admin.calls.length
    const cases: Array<[string, string]> = [
      ['', 'bad-request'],
      ['{"peerId":', 'bad-request'],
      ['[1,2]', 'bad-request'],
      ['"12D3KooW"', 'bad-request'],
      ['{}', 'invalid-peer-id'],
      ['{"peerId":42}', 'invalid-peer-id'],
      ['{"peerId":"mallory"}', 'invalid-peer-id'],
      [JSON.stringify({ peerId: 'x'.repeat(500) }), 'invalid-peer-id']
    ]
    for (const [body, error] of cases) {
      const { status, json } = await post('/admin/allow', body)
      assert.deepEqual([status, json.error], [400, error], body)
      assert.equal(typeof json.message, 'string')
    }
    assert.equal(admin.calls.length, before)
  })

  it('413 for a body over 4 KiB (declared or not), 405 for GET, 408 for a body that does not come; the server goes on', async () => {
    const big = JSON.stringify({ peerId: ID_A, padding: 'x'.repeat(8000) })
    assert.deepEqual([(await post('/admin/allow', big)).status, (await post('/admin/allow', big)).json.error], [413, 'too-large'])
    // chunked, so no Content-Length to go by
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = request(`${base}/admin/allow`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } }, res => { res.resume(); resolve(res.statusCode ?? 0) })
      req.on('error', reject)
      for (let i = 0; i < 8; i++) req.write('x'.repeat(1024))
      req.end()
    })
    assert.equal(chunked, 413)
    const get = await fetch(`${base}/admin/deny`)
    assert.deepEqual([get.status, get.headers.get('allow')], [405, 'POST'])
    // a client that sends half a body and stops is answered when bodyTimeout (300 ms here) is up
    const slow = await new Promise<{ status: number, body: string }>((resolve, reject) => {
      const req = request(`${base}/admin/allow`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-length': '100' } }, res => {
        let body = ''
        res.on('data', d => { body += String(d) })
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
      })
      req.on('error', reject)
      req.write('{"peerId":')
    })
    assert.equal(slow.status, 408)
    assert.equal(JSON.parse(slow.body).error, 'timeout')
    assert.equal((await fetch(`${base}/catalogs`)).status, 200, 'still answering')
  })

  it('leaves other paths to the relay', async () => {
    const res = await fetch(`${base}/admin`)
    assert.deepEqual([res.status, await res.text()], [404, 'not mine'])
  })
})
