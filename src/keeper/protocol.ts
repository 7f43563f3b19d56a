/**
 * The keeper protocol (issue 11): how a peer asks an always-on keeper to
 * keep its databases, and learns the catalogs the keeper keeps.
 *
 * One request per stream on `/npp/keeper/1.0.0`: the dialer sends one JSON
 * object and closes its writable end; the keeper answers one JSON object and
 * closes. Both are bounded in size and time.
 *
 * - `{ "op": "keep", "userDb": "<address>", "listed": true }` asks the keeper
 *   to keep the dialer's databases. The keeper checks the dialer is allowed,
 *   verifies the profile as a companion's (its `nodeId` is the dialer, its
 *   proof checks out), checks its quotas and replies
 *   `{ "ok": true, "listed": bool }` or
 *   `{ "ok": false, "error": "<KeeperRefusal>", "message": "..." }`.
 * - `{ "op": "list" }` asks which catalogs it keeps and lists:
 *   `{ "ok": true, "catalogs": [{ "peerId", "userDb", "multiaddrs", "lastUpdate" }] }`. What a keeper
 *   says is never trusted: each entry is verified as its own profile, by
 *   the proof that only its peer could sign.
 */
import { fromString, toString } from 'uint8arrays'
import { readToEnd } from '../utils/stream.ts'
import { isOrbitDBAddress, isPlainObject } from '../utils/validate.ts'
import type { Stream } from '@libp2p/interface'

export const KEEPER_PROTOCOL = '/npp/keeper/1.0.0'
/** A request is small. */
export const MAX_REQUEST_BYTES = 4 * 1024
/** A list of a few thousand catalogs. */
export const MAX_RESPONSE_BYTES = 1024 * 1024
/** Catalogs named in one list at most (what is beyond is not read). */
export const MAX_LISTED = 5000

/** Why a keeper refuses to keep a peer's databases. */
export type KeeperRefusal =
  /** The keeper serves an allowlist, and this peer is not on it. */
  | 'not-allowed'
  /** Keeping this peer would go over a quota (users, pieces or bytes). */
  | 'over-quota'
  /** The profile did not verify (wrong type, another node, no valid proof). */
  | 'invalid-profile'
  /** The keeper could not finish in time (it may be busy): worth trying again later. */
  | 'unavailable'
  /** The request was not understood. */
  | 'bad-request'

export const KEEPER_REFUSALS: readonly KeeperRefusal[] = ['not-allowed', 'over-quota', 'invalid-profile', 'unavailable', 'bad-request']

export type KeeperRequest =
  | { op: 'keep', userDb: string, listed: boolean }
  | { op: 'list' }

export interface IntroducedCatalog {
  peerId: string
  userDb: string
  /** Where the keeper last saw the peer listening: hints, checked by the peer id at dial. */
  multiaddrs?: string[]
  /** When the catalog last changed on the keeper (ms since the epoch): a peer introduced to more catalogs than it takes picks the freshest. */
  lastUpdate?: number
}

export type KeeperResponse =
  | { ok: true, listed?: boolean, catalogs?: IntroducedCatalog[] }
  | { ok: false, error: KeeperRefusal, message: string }

export function encode (message: KeeperRequest | KeeperResponse): Uint8Array {
  return fromString(JSON.stringify(message))
}

async function readJson (stream: Stream, maxBytes: number, signal: AbortSignal): Promise<unknown> {
  const chunks = await readToEnd(stream, { signal, maxBytes })
  let length = 0
  for (const c of chunks) length += c.byteLength
  const bytes = new Uint8Array(length)
  let at = 0
  for (const c of chunks) { bytes.set(c, at); at += c.byteLength }
  return JSON.parse(toString(bytes))
}

/** Read and check a request; undefined when it is not one. */
export async function readRequest (stream: Stream, signal: AbortSignal): Promise<KeeperRequest | undefined> {
  let value: unknown
  try {
    value = await readJson(stream, MAX_REQUEST_BYTES, signal)
  } catch (err) {
    if (signal.aborted) throw err
    return undefined
  }
  if (!isPlainObject(value)) return undefined
  const v = value as Record<string, unknown>
  if (v.op === 'list') return { op: 'list' }
  if (v.op === 'keep' && isOrbitDBAddress(v.userDb)) return { op: 'keep', userDb: v.userDb, listed: v.listed !== false }
  return undefined
}

/** Read and check a response; throws a plain Error naming what is wrong. */
export async function readResponse (stream: Stream, signal: AbortSignal): Promise<KeeperResponse> {
  const value = await readJson(stream, MAX_RESPONSE_BYTES, signal)
  if (!isPlainObject(value)) throw new Error('the keeper\'s answer is not an object')
  const v = value as Record<string, unknown>
  if (v.ok === false) {
    const error = KEEPER_REFUSALS.includes(v.error as KeeperRefusal) ? v.error as KeeperRefusal : 'unavailable'
    return { ok: false, error, message: typeof v.message === 'string' ? v.message.slice(0, 500) : '' }
  }
  if (v.ok !== true) throw new Error('the keeper\'s answer has no "ok"')
  const catalogs: IntroducedCatalog[] = []
  if (Array.isArray(v.catalogs)) {
    for (const c of v.catalogs.slice(0, MAX_LISTED)) {
      if (!isPlainObject(c)) continue
      const { peerId, userDb, multiaddrs, lastUpdate } = c as Record<string, unknown>
      if (typeof peerId !== 'string' || peerId.length >= 128 || !isOrbitDBAddress(userDb)) continue
      const addrs = Array.isArray(multiaddrs) ? multiaddrs.filter((a): a is string => typeof a === 'string' && a.length < 256).slice(0, 16) : []
      catalogs.push({ peerId, userDb, multiaddrs: addrs, ...(Number.isSafeInteger(lastUpdate) && (lastUpdate as number) >= 0 ? { lastUpdate: lastUpdate as number } : {}) })
    }
  }
  return { ok: true, listed: v.listed === true, catalogs }
}
