import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { createServer as createHttpServer } from 'node:http'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createRelay } from '../../src/relay/relay.ts'
import { relay } from '../helpers/relay.ts'
import { RelayConfigError, RelayStartError, RelayUnavailableError, InvalidOptionError } from '../../src/index.ts'
import { peer, tempDir, nextEvent } from '../helpers/peers.ts'

const cli = fileURLToPath(new URL('../../src/relay/cli.ts', import.meta.url))
const guard = fileURLToPath(new URL('../setup/guard.ts', import.meta.url))

describe('the relay', () => {
  const getJson = async (url: string): Promise<any> => {
    const res = await fetch(url)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('access-control-allow-origin'), '*')
    return await res.json()
  }

  it('serves /health, /config and /peers', async () => {
    const r = await relay()
    const health = await getJson(`${r.httpUrl}/health`)
    assert.equal(health.status, 'ok')
    assert.equal(health.peerId, r.peerId)
    assert.equal(health.reservations, 0)
    assert.equal(health.maxReservations, 256, 'room for many browsers (libp2p alone allows 15)')
    assert.equal(health.maxConnections, 1024, 'a connection per reservation and more (libp2p alone allows 300)')
    assert.deepEqual([health.reservationsRefused, health.reservationsReleased, health.inboundRefused, health.inboundDropped], [0, 0, 0, 0])
    const config = await getJson(`${r.httpUrl}/config`)
    assert.equal(config.peerId, r.peerId)
    assert.ok(config.websocket.length > 0 && config.websocket.every((m: string) => m.startsWith('/ip4/127.0.0.1/tcp/') && m.includes('/ws/p2p/')))
    assert.ok(config.multiaddrs.some((m: string) => !m.includes('/ws')), 'a TCP address for Node peers')
    assert.equal(config.discoveryTopic, '_peer-discovery._p2p._pubsub')
    assert.deepEqual(await getJson(`${r.httpUrl}/peers`), [])
    const npp = await peer({ bootstrap: [config.multiaddrs.find((m: string) => !m.includes('/ws'))] })
    if (!npp.getIpfsPeers().includes(r.peerId)) await nextEvent(npp, 'peer:connect', p => p.peerId === r.peerId)
    const peers = await getJson(`${r.httpUrl}/peers`)
    assert.deepEqual(peers.map((p: any) => p.peerId), [npp.peerId])
    assert.equal((await fetch(`${r.httpUrl}/nope`)).status, 404)
  })

  it('keeps its peer id in its key file, and says clearly what is wrong with a bad one or a busy port', async () => {
    const dir = await tempDir()
    const keyFile = join(dir, 'keys', 'relay.key')
    const first = await relay({ keyFile })
    const id = first.peerId
    await first.stop()
    const second = await relay({ keyFile })
    assert.equal(second.peerId, id)

    const bad = join(dir, 'bad.key')
    await writeFile(bad, 'not a key')
    await assert.rejects(createRelay({ keyFile: bad }), RelayConfigError)
    await assert.rejects(createRelay({ listen: ['nonsense'] }), RelayConfigError)
    await assert.rejects(createRelay({ httpPort: 70000 }), RelayConfigError)
    await assert.rejects(createRelay({ maxReservations: 0 }), RelayConfigError)

    const busy = createServer()
    await new Promise<void>(resolve => busy.listen(0, '127.0.0.1', resolve))
    const port = (busy.address() as any).port
    try {
      await assert.rejects(createRelay({ httpPort: port }), (err: any) => err instanceof RelayStartError && err.message.includes(String(port)))
    } finally {
      busy.close()
    }
  })

  it('keeps its trusted peers connected and hands them out: a peer with only the /config URL reaches them, without pubsub discovery', async () => {
    const archive = await peer({ username: 'archive' })
    await archive.addNewPiece('QmArchived', 'Organ')
    const archiveAddr = archive.getMultiaddrs()[0]!
    await assert.rejects(createRelay({ trusted: [archiveAddr.slice(0, archiveAddr.indexOf('/p2p/'))] }), (err: any) => err instanceof RelayConfigError && /\/p2p\/<peer id>/.test(err.message))
    const r = await relay({ trusted: [archiveAddr], trustedRedialInterval: 100 })
    const connected = async (): Promise<boolean> => (await getJson(`${r.httpUrl}/peers`)).some((p: any) => p.peerId === archive.peerId)
    if (!await connected()) await nextEvent(archive, 'peer:connect', p => p.peerId === r.peerId)
    assert.deepEqual((await getJson(`${r.httpUrl}/config`)).trusted, [archiveAddr])
    // dropped: the relay dials it again by itself
    await archive.libp2p.hangUp(r.libp2p.peerId)
    await nextEvent(archive, 'peer:connect', p => p.peerId === r.peerId, 10_000)

    const visitor = await peer({ relay: `${r.httpUrl}/config`, pubsubDiscovery: false })
    const found = await nextEvent(visitor, 'db:discovered', c => c.nodeId === archive.peerId, 20_000)
    assert.equal(found.username, 'archive')
    const { results } = await visitor.queryCatalog({ instrument: 'Organ' })
    assert.deepEqual(results.map(p => [p.hash, p.owner]), [['QmArchived', archive.peerId]])

    // a config with broken trusted entries (whoever serves it): they are left out, never fatal
    const bogus = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ ...r.config(), trusted: ['/ip4/127.0.0.1/tcp/1/p2p/not-a-peer-id', 42, 'nonsense', `${archiveAddr}/extra`, archiveAddr] }))
    })
    await new Promise<void>(resolve => bogus.listen(0, '127.0.0.1', resolve))
    try {
      const second = await peer({ relay: `http://127.0.0.1:${(bogus.address() as any).port}/config`, pubsubDiscovery: false })
      await nextEvent(second, 'db:discovered', c => c.nodeId === archive.peerId, 20_000)
    } finally {
      bogus.close()
    }
  })

  it('lets peers that only know the relay find each other and become companions', async () => {
    const r = await relay()
    const tcpAddr = r.config().multiaddrs.find(m => !m.includes('/ws'))!
    const [a, b] = await Promise.all([
      peer({ pubsubDiscovery: true, bootstrap: [tcpAddr] }),
      peer({ pubsubDiscovery: true, bootstrap: [tcpAddr] })
    ])
    await Promise.all([
      nextEvent(a, 'db:discovered', c => c.nodeId === b.peerId, 20_000),
      nextEvent(b, 'db:discovered', c => c.nodeId === a.peerId, 20_000)
    ])
    assert.ok(a.getIpfsPeers().includes(b.peerId), 'a direct connection')
  })

  it('init.relay takes the relay\'s /config URL (or a multiaddr); requireRelay fails clearly when it is unreachable', async () => {
    const r = await relay()
    const [a, b] = await Promise.all([
      peer({ relay: `${r.httpUrl}/config` }),
      peer({ relay: r.config().multiaddrs.find(m => !m.includes('/ws'))! })
    ])
    await Promise.all([
      nextEvent(a, 'db:discovered', c => c.nodeId === b.peerId, 20_000),
      nextEvent(b, 'db:discovered', c => c.nodeId === a.peerId, 20_000)
    ])
    // Node peers with a relay hold a reservation on it and offer WebRTC through
    // it (for browsers), yet link to each other over plain TCP
    for (const p of [a, b]) {
      const reachable = (): boolean => p.libp2p.getMultiaddrs().some(m => m.toString().includes(`/p2p/${r.peerId}/p2p-circuit/webrtc/p2p/${p.peerId}`))
      if (!reachable()) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => { reject(new Error(`no WebRTC address through the relay: ${p.libp2p.getMultiaddrs().join(', ')}`)) }, 20_000)
          const check = (): void => { if (reachable()) { clearTimeout(timer); p.libp2p.removeEventListener('self:peer:update', check); resolve() } }
          p.libp2p.addEventListener('self:peer:update', check)
        })
      }
    }
    assert.equal((await getJson(`${r.httpUrl}/health`)).reservations, 2, 'the relay reports both reservations')
    const links = a.libp2p.getConnections().filter(c => c.remotePeer.toString() === b.peerId)
    assert.ok(links.some(c => c.limits == null && /^\/ip4\/127\.0\.0\.1\/tcp\/\d+/.test(c.remoteAddr.toString()) && !c.remoteAddr.toString().includes('p2p-circuit')),
      `a direct TCP connection: ${links.map(c => c.remoteAddr.toString()).join(', ')}`)
    // a port that nobody listens on (just freed), and a server that is not a relay
    const free = createServer()
    await new Promise<void>(resolve => free.listen(0, '127.0.0.1', resolve))
    const port = (free.address() as any).port
    await new Promise(resolve => free.close(resolve))
    await assert.rejects(peer({ relay: `http://127.0.0.1:${port}/config`, requireRelay: true }), RelayUnavailableError)
    await assert.rejects(peer({ relay: `${r.httpUrl}/health`, requireRelay: true }), (err: any) => err instanceof RelayUnavailableError && /multiaddr/.test(err.message))
    // by default a peer starts anyway, and says why its relay is not linked
    const offline = await peer({ relay: `${r.httpUrl}/health` })
    assert.deepEqual(offline.hubs().map(h => [h.kind, h.configured, h.connected]), [['relay', `${r.httpUrl}/health`, false]])
    await assert.rejects(peer({ relay: 'not a relay' }), InvalidOptionError)
  })

  it('runs from the command line, and stops on SIGTERM', async () => {
    const dir = await tempDir()
    const child = spawn(process.execPath, ['--import', guard, cli, 'relay', '--http-port', '0', '--key-file', join(dir, 'k')], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', d => { out += String(d) })
    const exited = new Promise<number | null>(resolve => child.on('exit', resolve))
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', () => { if (out.includes('HTTP API')) resolve() })
      child.on('exit', () => { reject(new Error(`relay exited: ${out}`)) })
    })
    const url = /HTTP API: (\S+)\/config/.exec(out)?.[1]
    const health = await (await fetch(`${url}/health`)).json()
    assert.equal(health.status, 'ok')
    child.kill('SIGTERM')
    assert.equal(await exited, 0)
    assert.match(out, /SIGTERM: stopping/)
  })

  it('exits with a clear message for a bad config file', async () => {
    const dir = await tempDir()
    const config = join(dir, 'relay.json')
    await writeFile(config, JSON.stringify({ listen: ['/ip4/127.0.0.1/tcp/0'], colour: 'blue' }))
    const child = spawn(process.execPath, ['--import', guard, cli, '--config', config, '--http-port', '0', '--key-file', join(dir, 'k')], { stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    child.stderr.on('data', d => { err += String(d) })
    const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
    assert.equal(code, 2)
    assert.match(err, /RelayConfigError: .*unknown key\(s\) colour/)
  })
})
