/** What a stranger can send a catalog: entries signed by identities no peer can serve. */
import { Entry, Identities, KeyStore, MemoryStorage } from '@orbitdb/core'

/** An OrbitDB identity whose keys and identity block exist only here: no peer can serve it. */
export async function throwaway (name: string): Promise<any> {
  const keystore = await KeyStore({ storage: await MemoryStorage() })
  const identities = await Identities({ keystore, storage: await MemoryStorage() })
  return await identities.createIdentity({ id: name })
}

/** `count` signed entries of the log `address`, as a writer of the catalog would make them, signed in turn by `identities`. */
export async function junk (identities: any[], address: string, count: number, tag = 'junk'): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    const identity = identities[i % identities.length]
    const value = { hash: `Qm${tag}${i}`, instrument: 'Kazoo' }
    const entry = await Entry.create(identity, address, { op: 'PUT', key: value.hash, value }, undefined, { id: identity.publicKey, time: 1000 + i }, [], [])
    out.push((await Entry.encode(entry)).bytes)
  }
  return out
}
