import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'

describe('network guard (preloaded for every test process)', () => {
  it('is installed', () => {
    const guard = (globalThis as any).__nppNetworkGuard
    assert.ok(guard != null, 'run the tests with --import ./test/setup/guard.ts (npm test does)')
    assert.equal(net.Socket.prototype.connect.name, 'guardedConnect')
  })

  it('treats only the loopback range as allowed', () => {
    const { isLoopback } = (globalThis as any).__nppNetworkGuard
    for (const ok of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopback(ok), true, ok)
    for (const bad of ['10.0.0.1', '192.168.1.1', '172.16.0.1', '8.8.8.8', '::ffff:10.0.0.1', 'example.com', '2001:db8::1', '0.0.0.0']) assert.equal(isLoopback(bad), false, bad)
  })

  it('lets loopback connections through', async () => {
    const server = net.createServer(socket => socket.end())
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as net.AddressInfo
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => { socket.end(); resolve() })
      socket.on('error', reject)
    })
    await new Promise(resolve => server.close(resolve))
  })
})

describe('network guard refusals', () => {
  it('refuses a connection to a non-loopback address before it is made, and records it', () => {
    const guard = (globalThis as any).__nppNetworkGuard
    const before = guard.violations.length
    // 0.0.0.0 is not loopback for the guard; were the guard broken, Linux would
    // still route it to this machine, so this test can never send a packet out
    assert.throws(() => net.connect({ host: '0.0.0.0', port: 9 }), (err: any) => err.code === 'ENETGUARD')
    assert.equal(guard.violations.length, before + 1)
    // this refusal was the test's own doing: do not fail the run for it
    guard.violations.splice(before, 1)
    process.exitCode = 0
  })
})
