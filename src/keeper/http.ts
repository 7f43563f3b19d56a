/**
 * The keeper's part of the HTTP API, served by the relay's server beside
 * `/config`, `/peers` and `/health` (see `RelayExtension`):
 *
 * - `GET /catalogs`: who is kept (`peerId`, `username`, `pieces`, `bytes`,
 *   `lastUpdate`, `listed`). Without a token only the listed ones (an owner
 *   who registered unlisted asked not to be shown around); with the admin
 *   token, all of them.
 * - `POST /admin/allow` and `POST /admin/deny` with `{ "peerId": "…" }` and
 *   `Authorization: Bearer <token>`: idempotent; the answer says whether
 *   anything changed.
 *
 * Everything a client sends is checked: a missing or wrong token is a 401,
 * a bad body a 400 (413 when too big, 408 when too slow), a wrong method a
 * 405, each as a JSON `{ error, message }` with a stable `error` code.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { InvalidPeerIdError } from '../errors.ts'
import { bearerMatches, canonicalPeerId } from './state.ts'
import { logger } from '../utils/logger.ts'
import type { KeptUser } from './keeper.ts'

const log = logger('keeper:http')

/** An admin request body is one small JSON object. */
export const MAX_ADMIN_BODY_BYTES = 4 * 1024
/** Time (ms) a client has to send an admin request's body. */
export const ADMIN_BODY_TIMEOUT = 10_000

/** What the HTTP API needs of the keeper. */
export interface KeeperAdmin {
  kept(): KeptUser[]
  /** Serve `peerId` (and save the allowlist); `changed` is false when it was served already. */
  allow(peerId: string): Promise<{ changed: boolean }>
  /** Stop serving `peerId` and drop what is kept of it (and save); `changed` is false when it was not on the allowlist. */
  deny(peerId: string): Promise<{ changed: boolean, dropped: boolean }>
}

export interface KeeperHttpInit {
  /** The admin token. */
  token: string
  /** @default MAX_ADMIN_BODY_BYTES (4 KiB) */
  maxBodyBytes?: number
  /** @default ADMIN_BODY_TIMEOUT (10 s) */
  bodyTimeout?: number
}

/** One `/catalogs` entry. */
export interface CatalogEntry {
  peerId: string
  username: string
  pieces: number
  bytes: number
  /** ms since the epoch. */
  lastUpdate: number
  listed: boolean
}

/** A request that gets a 4xx answer. */
class HttpRefusal extends Error {
  readonly status: number
  readonly code: string
  constructor (status: number, code: string, message: string) {
    super(message)
    this.status = status
    this.code = code
  }
}

const ADMIN_PATHS = ['/admin/allow', '/admin/deny']

/** The handler and paths handed to `createRelay` (as `RelayExtension.handle` and `paths`). */
export function keeperHttp (admin: KeeperAdmin, init: KeeperHttpInit): { paths: string[], handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> } {
  const maxBodyBytes = init.maxBodyBytes ?? MAX_ADMIN_BODY_BYTES
  const bodyTimeout = init.bodyTimeout ?? ADMIN_BODY_TIMEOUT

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
    res.end(JSON.stringify(body))
  }
  const authorized = (req: IncomingMessage): boolean => bearerMatches(req.headers.authorization, init.token)

  const catalogs = (req: IncomingMessage, res: ServerResponse): void => {
    // public: anyone (a page of the group) may see who is listed
    const cors = { 'access-control-allow-origin': '*' }
    if (req.method !== 'GET') throw new HttpRefusal(405, 'method-not-allowed', 'use GET /catalogs')
    const withToken = req.headers.authorization != null
    if (withToken && !authorized(req)) throw new HttpRefusal(401, 'unauthorized', 'wrong admin token (leave out Authorization to see the listed catalogs)')
    const entries: CatalogEntry[] = admin.kept()
      .filter(k => withToken || k.listed)
      .map(k => ({ peerId: k.peerId, username: k.username, pieces: k.pieces, bytes: k.bytes, lastUpdate: k.lastUpdate, listed: k.listed }))
    send(res, 200, entries, cors)
  }

  const adminCall = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    if (req.method !== 'POST') throw new HttpRefusal(405, 'method-not-allowed', `use POST ${path} with {"peerId":"…"}`)
    // the token first: a stranger learns nothing about what the body should be
    if (!authorized(req)) throw new HttpRefusal(401, 'unauthorized', 'an admin call needs Authorization: Bearer <token> (the admin-token file in the keeper\'s directory)')
    const body = await readBody(req, maxBodyBytes, bodyTimeout)
    let json: unknown
    try {
      json = JSON.parse(body)
    } catch {
      throw new HttpRefusal(400, 'bad-request', 'the body is not JSON; send {"peerId":"…"}')
    }
    if (json == null || typeof json !== 'object' || Array.isArray(json)) throw new HttpRefusal(400, 'bad-request', 'send a JSON object: {"peerId":"…"}')
    let peerId: string
    try {
      peerId = canonicalPeerId((json as Record<string, unknown>).peerId)
    } catch (err) {
      if (err instanceof InvalidPeerIdError) throw new HttpRefusal(400, 'invalid-peer-id', err.message)
      throw err
    }
    if (path === '/admin/allow') {
      const { changed } = await admin.allow(peerId)
      send(res, 200, { peerId, allowed: true, changed })
    } else {
      const { changed, dropped } = await admin.deny(peerId)
      send(res, 200, { peerId, allowed: false, changed, dropped })
    }
  }

  return {
    paths: ['/catalogs', ...ADMIN_PATHS],
    async handle (req, res, path) {
      if (path !== '/catalogs' && !ADMIN_PATHS.includes(path)) return false
      try {
        if (path === '/catalogs') catalogs(req, res)
        else await adminCall(req, res, path)
      } catch (err) {
        if (!(err instanceof HttpRefusal)) throw err
        log('%s %s: %d %s', req.method, path, err.status, err.message)
        const headers: Record<string, string> = {}
        if (err.status === 401) headers['www-authenticate'] = 'Bearer realm="new-piece-please keeper"'
        if (err.status === 405) headers.allow = path === '/catalogs' ? 'GET' : 'POST'
        // a body left unread (too big, too slow) is not waited for
        if (err.status === 413 || err.status === 408) headers.connection = 'close'
        send(res, err.status, { error: err.code, message: err.message }, headers)
      }
      return true
    }
  }
}

/** The request's body as text, at most `maxBytes`, within `ms`. */
async function readBody (req: IncomingMessage, maxBytes: number, ms: number): Promise<string> {
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > maxBytes) throw new HttpRefusal(413, 'too-large', `the body may be ${maxBytes} bytes at most`)
  return await new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (err?: Error): void => {
      clearTimeout(timer)
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      if (err != null) {
        req.resume() // drain what is left, unread
        reject(err)
      } else {
        resolve(Buffer.concat(chunks).toString('utf8'))
      }
    }
    const timer = setTimeout(() => { done(new HttpRefusal(408, 'timeout', `the body did not arrive within ${ms} ms`)) }, ms)
    const onData = (chunk: Buffer): void => {
      size += chunk.byteLength
      if (size > maxBytes) done(new HttpRefusal(413, 'too-large', `the body may be ${maxBytes} bytes at most`))
      else chunks.push(chunk)
    }
    const onEnd = (): void => { done() }
    const onError = (err: Error): void => { done(new HttpRefusal(400, 'bad-request', `the body could not be read: ${err.message}`)) }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
  })
}
