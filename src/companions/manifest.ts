/**
 * Reads an OrbitDB manifest (`{ name, type, accessController }`) by address,
 * bounded by a signal, so a peer's database can be checked before it is opened.
 */
import { CID } from 'multiformats/cid'
import { base58btc } from 'multiformats/bases/base58'
import * as dagCbor from '@ipld/dag-cbor'
import { concat } from 'uint8arrays'
import { parseAddress } from '@orbitdb/core'
import { InvalidRemoteDataError } from '../errors.ts'
import { isPlainObject } from '../utils/validate.ts'
import type { NppHelia } from '../types.ts'

export interface Manifest {
  name: string
  type: string
  accessController: string
}

/** Largest manifest block accepted (a real one is under 200 bytes). */
const MAX_MANIFEST_BYTES = 4096

export async function readManifest (helia: NppHelia, address: string, signal: AbortSignal): Promise<Manifest> {
  const cid = CID.parse(parseAddress(address).hash, base58btc)
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of (helia.blockstore as any).get(cid, { signal }) as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength
    if (size > MAX_MANIFEST_BYTES) throw new InvalidRemoteDataError(`manifest of ${address} is larger than ${MAX_MANIFEST_BYTES} bytes`)
    chunks.push(chunk)
  }
  let value: unknown
  try {
    value = dagCbor.decode(concat(chunks))
  } catch (err: any) {
    throw new InvalidRemoteDataError(`manifest of ${address} is not dag-cbor: ${err?.message ?? err}`)
  }
  if (!isPlainObject(value) || typeof value.name !== 'string' || typeof value.type !== 'string' || typeof value.accessController !== 'string') {
    throw new InvalidRemoteDataError(`${address} does not point to an OrbitDB manifest`)
  }
  return { name: value.name, type: value.type, accessController: value.accessController }
}
