import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { multiaddr } from '@multiformats/multiaddr'
import { browserGater } from '../../../src/platform/browser-gater.ts'

const relay = '12D3KooWJR8Pmx3gpvfWt66C3oE5nm1fUDLTkuUEnkjQWYXCS4kT'
const peer = '12D3KooWQ83jj8CsKs7smBxF9RUXReMo8dfxN1iRFRyE1YwbzyFG'
const relayWs = `/ip4/127.0.0.1/tcp/9091/ws/p2p/${relay}`

describe('browser connection gater', () => {
  const gater = browserGater([relayWs])
  const refuses = async (addr: string): Promise<boolean> => await gater.denyDialMultiaddr!(multiaddr(addr)) as boolean

  it('lets the configured relay be dialed on ws:// and a private address, and what goes through it', async () => {
    assert.equal(await refuses(relayWs), false)
    assert.equal(await refuses('/ip4/127.0.0.1/tcp/9091/ws'), false, 'the relay\'s address without its peer id')
    assert.equal(await refuses(`${relayWs}/p2p-circuit/webrtc/p2p/${peer}`), false, 'WebRTC signalled through the relay')
    assert.equal(await refuses(`${relayWs}/p2p-circuit/p2p/${peer}`), false, 'a relayed address')
  })

  it('refuses what a stranger may announce: LAN and loopback addresses, insecure WebSockets, other relays there', async () => {
    assert.equal(await refuses(`/ip4/192.168.1.1/tcp/80/ws/p2p/${peer}`), true, 'a LAN host')
    assert.equal(await refuses(`/ip4/127.0.0.1/tcp/22/ws/p2p/${peer}`), true, 'another port on this machine')
    assert.equal(await refuses(`/ip4/10.0.0.5/tcp/443/tls/ws/p2p/${peer}`), true, 'a private address, even over TLS')
    assert.equal(await refuses(`/ip4/93.184.216.34/tcp/80/ws/p2p/${peer}`), true, 'insecure WebSockets anywhere')
    assert.equal(await refuses(`/ip4/127.0.0.1/tcp/9091/ws/p2p/${peer}/p2p-circuit/webrtc/p2p/${relay}`), true, 'the relay\'s port with another peer id')
    assert.equal(await refuses(`/ip4/127.0.0.1/tcp/9092/ws/p2p/${relay}`), true, 'another port, same claimed id')
  })

  it('compares configured addresses in their canonical form', async () => {
    const v6 = browserGater([`/ip6/0:0:0:0:0:0:0:1/tcp/9091/ws/p2p/${relay}`])
    assert.equal(await v6.denyDialMultiaddr!(multiaddr(`/ip6/::1/tcp/9091/ws/p2p/${relay}/p2p-circuit/webrtc/p2p/${peer}`)), false)
  })

  it('leaves public secure addresses alone', async () => {
    assert.equal(await refuses(`/dns4/relay.example.org/tcp/443/tls/ws/p2p/${peer}`), false)
    assert.equal(await refuses(`/ip4/93.184.216.34/tcp/443/tls/ws/p2p/${peer}`), false)
  })
})
