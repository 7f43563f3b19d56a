/**
 * The libp2p node's private key, to sign this peer's profile proof
 * (`../companions/proof.ts`). libp2p 3 has no public accessor: the key is
 * the one its components were built with (`libp2p/src/libp2p.ts`,
 * `this.components.privateKey`, checked against libp2p 3.3.11). That also
 * covers a node a caller brings. The key is used only if it is the node's
 * own (its public key is the peer id's).
 */
import type { Libp2p, PrivateKey } from '@libp2p/interface'

export function privateKeyOf (libp2p: Pick<Libp2p, 'peerId'>): PrivateKey | undefined {
  const key: PrivateKey | undefined = (libp2p as unknown as { components?: { privateKey?: PrivateKey } }).components?.privateKey
  if (key == null || libp2p.peerId.publicKey == null || !key.publicKey.equals(libp2p.peerId.publicKey)) return undefined
  return key
}
