/**
 * What a keeper remembers beside its replicas, in its directory:
 *
 * - `keeper.json`: the allowlist, the peers kept unlisted and the peers denied. Written
 *   atomically (a temporary file, flushed to disk, renamed over the old one,
 *   the directory flushed), one write at a time, so a keeper killed at any
 *   moment restarts with the old file or the new one, never half of one.
 * - `admin-token`: the bearer token of the admin API, created at first start
 *   (mode 0600) and kept.
 *
 * Node only (the keeper command); nothing here loads libp2p or OrbitDB.
 */
import { open, readFile, rename, writeFile, chmod, stat, rm } from 'node:fs/promises'
import { randomBytes, createHash, timingSafeEqual } from 'node:crypto'
import { dirname } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { InvalidPeerIdError, describe } from '../errors.ts'
import { KeeperConfigError } from './errors.ts'
import { logger } from '../utils/logger.ts'

const log = logger('keeper:state')

export const STATE_FILE_NAME = 'keeper.json'
export const TOKEN_FILE_NAME = 'admin-token'
/** The version `keeper.json` is written with; a newer one is refused rather than misread. */
export const STATE_VERSION = 1
/** Peer ids in `keeper.json` at most (far beyond any quota: a bigger file is not one). */
const MAX_STATE_PEERS = 100_000
/** Bytes of random in a new admin token (base64url: 43 characters). */
const TOKEN_BYTES = 32

export interface KeeperState {
  /** Peer ids served (canonical form). */
  allow: string[]
  /** Peer ids kept but not introduced to others. */
  unlisted: string[]
  /** Peer ids denied: never served, even by an open keeper (absent: none). */
  deny?: string[]
}

/**
 * The canonical string form of a peer id (`12D3KooW…` or `Qm…`), or
 * `InvalidPeerIdError` naming what was received.
 */
export function canonicalPeerId (value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 128) throw new InvalidPeerIdError(`expected a peer id, got ${describe(value)}`)
  try {
    return peerIdFromString(value).toString()
  } catch {
    throw new InvalidPeerIdError(`${describe(value)} is not a peer id (expected something like 12D3KooW…)`)
  }
}

function peerList (file: string, key: string, value: unknown): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || value.length > MAX_STATE_PEERS) throw new KeeperConfigError(`${file}: expected "${key}" to be an array of peer ids, got ${describe(value)}`)
  return [...new Set(value.map(v => {
    try {
      return canonicalPeerId(v)
    } catch (err: any) {
      throw new KeeperConfigError(`${file}: "${key}": ${String(err?.message ?? err)}`)
    }
  }))]
}

/** The state in `file`; empty when the file does not exist yet. */
export async function readState (file: string): Promise<KeeperState> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err: any) {
    if (err?.code === 'ENOENT') return { allow: [], unlisted: [] }
    throw new KeeperConfigError(`cannot read ${file}: ${String(err?.message ?? err)}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err: any) {
    throw new KeeperConfigError(`${file} is not JSON (${String(err?.message ?? err)}); fix it or move it away (the allowlist is in it)`)
  }
  if (json == null || typeof json !== 'object' || Array.isArray(json)) throw new KeeperConfigError(`${file} must hold a JSON object, got ${describe(json)}`)
  const { version, allow, unlisted, deny } = json as Record<string, unknown>
  if (version !== undefined && version !== STATE_VERSION) throw new KeeperConfigError(`${file} has version ${describe(version)}; this keeper reads version ${STATE_VERSION}`)
  const denied = peerList(file, 'deny', deny)
  return { allow: peerList(file, 'allow', allow), unlisted: peerList(file, 'unlisted', unlisted), ...(denied.length > 0 ? { deny: denied } : {}) }
}

/** Write `state` to `file` atomically (see the module comment). */
export async function writeState (file: string, state: KeeperState): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`
  const text = JSON.stringify({ version: STATE_VERSION, allow: state.allow, unlisted: state.unlisted, deny: state.deny ?? [] }, null, 2) + '\n'
  try {
    const handle = await open(temporary, 'w', 0o600)
    try {
      await handle.writeFile(text, 'utf8')
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(temporary, file)
  } catch (err: any) {
    await rm(temporary, { force: true }).catch(() => {})
    throw new KeeperConfigError(`cannot write ${file}: ${String(err?.message ?? err)}`)
  }
  // the rename itself reaches the disk with the directory's entry
  try {
    const dir = await open(dirname(file), 'r')
    try {
      await dir.sync()
    } finally {
      await dir.close()
    }
  } catch (err: any) {
    // Windows cannot open a directory: the rename is as durable as it gets there
    log('could not flush the directory of %s: %s', file, err?.code ?? err)
  }
}

/**
 * `keeper.json`, saved from a live source of truth: `save()` writes what
 * `read()` returns at the time of the write, one write at a time; calls
 * made while a write is under way are folded into one more write. The
 * promise resolves once the state as of the call is on disk.
 */
export class StateFile {
  readonly file: string
  private readonly read: () => KeeperState
  private writing: Promise<void> | undefined
  private dirty = false

  constructor (file: string, read: () => KeeperState) {
    this.file = file
    this.read = read
  }

  async save (): Promise<void> {
    this.dirty = true
    this.writing ??= this.drain().finally(() => { this.writing = undefined })
    await this.writing
  }

  /** Resolves once no write is under way (at stop). */
  async flush (): Promise<void> {
    await this.writing?.catch(() => {})
  }

  private async drain (): Promise<void> {
    while (this.dirty) {
      this.dirty = false
      await writeState(this.file, this.read())
    }
  }
}

/**
 * The admin token in `file`, created (random, mode 0600) when missing. A
 * token file that others can read is made private again.
 */
export async function loadToken (file: string): Promise<{ token: string, created: boolean }> {
  const token = randomBytes(TOKEN_BYTES).toString('base64url')
  try {
    await writeFile(file, token + '\n', { mode: 0o600, flag: 'wx' })
    return { token, created: true }
  } catch (err: any) {
    if (err?.code !== 'EEXIST') throw new KeeperConfigError(`cannot write the admin token ${file}: ${String(err?.message ?? err)}`)
  }
  const existing = await readToken(file)
  if (process.platform !== 'win32') {
    const mode = (await stat(file)).mode & 0o777
    if ((mode & 0o077) !== 0) {
      await chmod(file, 0o600)
      log.error('%s was readable by others (mode %s): made it 0600', file, mode.toString(8))
    }
  }
  return { token: existing, created: false }
}

/** The admin token in `file` (the `keeper allow`/`deny` commands read it). */
export async function readToken (file: string): Promise<string> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err: any) {
    if (err?.code === 'ENOENT') throw new KeeperConfigError(`no admin token at ${file}: the keeper writes it at its first start (give its --dir, or --token)`)
    throw new KeeperConfigError(`cannot read the admin token ${file}: ${String(err?.message ?? err)}`)
  }
  const token = text.trim()
  if (!/^[\w-]{16,512}$/.test(token)) throw new KeeperConfigError(`${file} does not hold an admin token (16 to 512 characters of A-Z, a-z, 0-9, _ and -)`)
  return token
}

/** Whether an `Authorization` header carries `Bearer <token>`, compared in constant time. */
export function bearerMatches (header: string | undefined, token: string): boolean {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
  if (match == null) return false
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest()
  return timingSafeEqual(digest(match[1] ?? ''), digest(token))
}
