/**
 * Validation at the boundary. Caller input throws a typed error naming what was
 * received; network input is checked with the `is*`/`parse*` helpers that
 * never throw.
 */
import { isValidAddress } from '@orbitdb/core'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import {
  InvalidHashError, InvalidInstrumentError, InvalidPieceError, InvalidProfileFieldError,
  InvalidMultiaddrError, InvalidPeerIdError, InvalidMessageError, InvalidOptionError, describe
} from '../errors.ts'
import {
  MAX_HASH_LENGTH, MAX_INSTRUMENT_LENGTH, MAX_PIECE_BYTES, MAX_PROFILE_KEY_LENGTH,
  MAX_PROFILE_VALUE_BYTES, MAX_USERNAME_LENGTH, MAX_MESSAGE_BYTES, DEFAULT_ICE_SERVERS
} from '../constants.ts'
import type { IceServer, JsonValue, PieceExtra } from '../types.ts'

const encoder = new TextEncoder()

export function byteLength (value: unknown): number {
  return encoder.encode(JSON.stringify(value)).byteLength
}

export function assertHash (hash: unknown): asserts hash is string {
  if (typeof hash !== 'string' || hash.trim().length === 0) {
    throw new InvalidHashError(`expected a non-empty string hash, got ${describe(hash)}`)
  }
  if (hash.length > MAX_HASH_LENGTH) {
    throw new InvalidHashError(`expected a hash of at most ${MAX_HASH_LENGTH} characters, got ${hash.length}`)
  }
}

export function assertInstrument (instrument: unknown): asserts instrument is string {
  if (typeof instrument !== 'string' || instrument.trim().length === 0) {
    throw new InvalidInstrumentError(`expected a non-empty string instrument, got ${describe(instrument)}`)
  }
  if (instrument.length > MAX_INSTRUMENT_LENGTH) {
    throw new InvalidInstrumentError(`expected an instrument of at most ${MAX_INSTRUMENT_LENGTH} characters, got ${instrument.length}`)
  }
}

export function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** True when `value` survives a JSON round trip unchanged in meaning (no functions, NaN, class instances, cycles). */
export function isJsonValue (value: unknown, depth = 0): value is JsonValue {
  if (depth > 16) return false
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true
  if (typeof value === 'number') return Number.isFinite(value)
  if (Array.isArray(value)) return value.every(v => isJsonValue(v, depth + 1))
  if (isPlainObject(value)) return Object.values(value).every(v => isJsonValue(v, depth + 1))
  return false
}

const RESERVED_PIECE_KEYS = new Set(['hash', 'instrument', 'owner', '__proto__', 'constructor', 'prototype'])

export function assertExtra (extra: unknown): asserts extra is PieceExtra | undefined {
  if (extra === undefined) return
  if (!isPlainObject(extra)) {
    throw new InvalidPieceError(`expected extra fields as a plain object, got ${describe(extra)}`)
  }
  for (const key of Object.keys(extra)) {
    if (RESERVED_PIECE_KEYS.has(key)) {
      throw new InvalidPieceError(`extra field "${key}" is reserved`)
    }
  }
  if (!isJsonValue(extra)) {
    throw new InvalidPieceError('extra fields must be JSON values (strings, finite numbers, booleans, null, arrays, plain objects)')
  }
  const size = byteLength(extra)
  if (size > MAX_PIECE_BYTES) {
    throw new InvalidPieceError(`extra fields take ${size} bytes, more than the ${MAX_PIECE_BYTES} allowed`)
  }
}

/** Profile keys the library manages itself; callers may read but not write them. */
export const READ_ONLY_PROFILE_KEYS = new Set(['pieces', 'nodeId', 'counters'])
const PROFILE_KEY = /^[A-Za-z0-9_.-]+$/

export function assertProfileKey (key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidProfileFieldError(`expected a non-empty string profile key, got ${describe(key)}`)
  }
  if (key.length > MAX_PROFILE_KEY_LENGTH || !PROFILE_KEY.test(key) || key === '__proto__') {
    throw new InvalidProfileFieldError(`profile keys are 1-${MAX_PROFILE_KEY_LENGTH} characters of A-Z a-z 0-9 _ . -, got ${describe(key)}`)
  }
}

export function assertProfileValue (key: string, value: unknown): asserts value is JsonValue {
  if (READ_ONLY_PROFILE_KEYS.has(key)) {
    throw new InvalidProfileFieldError(`profile field "${key}" is managed by the library and read-only`)
  }
  if (key === 'username') {
    if (typeof value !== 'string' || value.trim().length === 0 || value.length > MAX_USERNAME_LENGTH) {
      throw new InvalidProfileFieldError(`expected username as a non-empty string of at most ${MAX_USERNAME_LENGTH} characters, got ${describe(value)}`)
    }
    return
  }
  if (value === undefined || !isJsonValue(value)) {
    throw new InvalidProfileFieldError(`expected profile field "${key}" to be a JSON value, got ${describe(value)}`)
  }
  const size = byteLength(value)
  if (size > MAX_PROFILE_VALUE_BYTES) {
    throw new InvalidProfileFieldError(`profile field "${key}" takes ${size} bytes, more than the ${MAX_PROFILE_VALUE_BYTES} allowed`)
  }
}

export function parseMultiaddr (value: unknown): Multiaddr {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidMultiaddrError(`expected a multiaddr string, got ${describe(value)}`)
  }
  try {
    return multiaddr(value)
  } catch (err: any) {
    throw new InvalidMultiaddrError(`could not parse multiaddr ${describe(value)}: ${err?.message ?? err}`)
  }
}

export function parsePeerId (value: unknown): PeerId {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidPeerIdError(`expected a peer id string, got ${describe(value)}`)
  }
  try {
    return peerIdFromString(value)
  } catch (err: any) {
    throw new InvalidPeerIdError(`could not parse peer id ${describe(value)}: ${err?.message ?? err}`)
  }
}

/** Non-throwing check for remote data. */
export function isPeerIdString (value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 128) return false
  try {
    peerIdFromString(value)
    return true
  } catch {
    return false
  }
}

/** An OrbitDB address: `/orbitdb/<base58btc CID>`. */
export function isOrbitDBAddress (value: unknown): value is string {
  if (typeof value !== 'string' || value.length > 128 || !value.startsWith('/orbitdb/')) return false
  try {
    return isValidAddress(value)
  } catch {
    return false
  }
}

export function assertMessageObject (value: unknown): asserts value is Record<string, JsonValue> {
  if (!isPlainObject(value) || !isJsonValue(value)) {
    throw new InvalidMessageError(`expected a JSON-serialisable plain object, got ${describe(value)}`)
  }
  const size = byteLength(value)
  if (size > MAX_MESSAGE_BYTES) {
    throw new InvalidMessageError(`message takes ${size} bytes, more than the ${MAX_MESSAGE_BYTES} allowed`)
  }
}

export function positiveInteger (name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidOptionError(`expected ${name} to be a positive number of milliseconds, got ${describe(value)}`)
  }
  return value
}

export function stringList (name: string, value: unknown, fallback: readonly string[]): string[] {
  if (value === undefined) return [...fallback]
  if (!Array.isArray(value) || !value.every(v => typeof v === 'string')) {
    throw new InvalidOptionError(`expected ${name} to be an array of multiaddr strings, got ${describe(value)}`)
  }
  for (const v of value) parseMultiaddr(v)
  return [...value]
}

/** `iceServers`: WebRTC ICE servers, each `{ urls: string | string[], username?, credential? }`. */
export function iceServerList (value: unknown): IceServer[] {
  if (value === undefined) return [...DEFAULT_ICE_SERVERS]
  const isUrl = (u: unknown): boolean => typeof u === 'string' && /^(stun|stuns|turn|turns):/.test(u)
  const valid = Array.isArray(value) && value.every((s: any) =>
    s != null && typeof s === 'object' &&
    (isUrl(s.urls) || (Array.isArray(s.urls) && s.urls.length > 0 && s.urls.every(isUrl))) &&
    (s.username === undefined || typeof s.username === 'string') &&
    (s.credential === undefined || typeof s.credential === 'string'))
  if (!valid) throw new InvalidOptionError(`expected iceServers to be an array of { urls: 'stun:…' | 'turn:…' (or an array of them), username?, credential? }, got ${describe(value)}`)
  return value.map((s: IceServer) => ({ ...s }))
}
