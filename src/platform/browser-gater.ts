/**
 * The browser's connection gater. libp2p's browser default refuses private
 * addresses and insecure WebSockets, which also refuses a relay on the LAN or
 * on localhost, where ours usually runs. This one makes an exception for the
 * addresses the user configured (the relay, bootstrap peers) and for
 * addresses that go through them (`<relay>/p2p-circuit/...`, WebRTC
 * signalling); everything else keeps the default, so an address announced by
 * a stranger cannot make the page dial into the user's LAN.
 */
import type { ConnectionGater } from '@libp2p/interface'
import { isPrivate } from '@libp2p/utils'
import { WebSockets } from '@multiformats/multiaddr-matcher'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'

/** The transport part of a configured address (without its `/p2p/<id>`), with its peer id when given. */
function prefix (addr: string): { transport: string, peer?: string } {
  const at = addr.indexOf('/p2p/')
  if (at < 0) return { transport: addr }
  return { transport: addr.slice(0, at), peer: addr.slice(at + 5).split('/')[0] }
}

/**
 * `allowed` is read on every dial: addresses added to it later (the relay's,
 * once its `/config` has been read) are allowed from then on.
 */
export function browserGater (allowed: readonly string[]): ConnectionGater {
  // compared as strings: the canonical form, as libp2p prints the dialed ones
  let seen = -1
  let trusted: Array<{ transport: string, peer?: string }> = []
  const isTrusted = (ma: Multiaddr): boolean => {
    if (seen !== allowed.length) {
      trusted = allowed.map(a => prefix(multiaddr(a).toString()))
      seen = allowed.length
    }
    const s = ma.toString()
    return trusted.some(({ transport, peer }) => {
      if (s === transport) return true
      if (peer != null) return s.startsWith(`${transport}/p2p/${peer}`)
      return s.startsWith(`${transport}/p2p/`)
    })
  }
  return {
    denyDialMultiaddr: async (ma: Multiaddr) => {
      if (isTrusted(ma)) return false
      // libp2p's browser default for everything else
      if (WebSockets.matches(ma)) return true
      return isPrivate(ma)
    }
  }
}
