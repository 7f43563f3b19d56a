/**
 * Reading the peer id at the end of a multiaddr string. Its own module so the
 * relay can use it without loading OrbitDB (which validate.ts imports).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'

/** The peer id a multiaddr ends with (`…/p2p/<peer id>`), or undefined when it ends otherwise or the id does not parse. */
export function trailingPeerId (addr: string): PeerId | undefined {
  const at = addr.lastIndexOf('/p2p/')
  const id = at < 0 ? '' : addr.slice(at + 5)
  if (id === '' || id.includes('/')) return undefined
  try {
    return peerIdFromString(id)
  } catch {
    return undefined
  }
}
