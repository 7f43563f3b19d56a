/**
 * `queryCatalog`: the own catalog and every companion's replica, queried in
 * parallel. Each source has the same deadline; a source that misses it is
 * reported as `timeout` and the call resolves on time with what answered.
 */
import { logger } from '../utils/logger.ts'
import { raceSignal } from 'race-signal'
import { deadline } from '../utils/abort.ts'
import { sameJson } from '../utils/json.ts'
import { InvalidOptionError, describe } from '../errors.ts'
import { isPlainObject, isJsonValue } from '../utils/validate.ts'
import type { CatalogLike } from '../orbitdb/types.ts'
import { CustomProgressEvent } from 'progress-events'
import type { JsonValue, OwnedPiece, Piece, PieceFilter, QueryOptions, QueryResult, QuerySource, ReplicaSync } from '../types.ts'

const log = logger('query')

export interface QuerySourceInput {
  owner: string
  address: string
  online: boolean
  /** The catalog to ask; absent for a companion whose replica could not be opened (`error` says why). */
  db?: CatalogLike<Piece>
  /** Why there is no `db`: reported as the source's error. */
  error?: string
  /** For a connected companion's replica that has not exchanged heads yet: resolves when it has. */
  whenSynced?: Promise<void>
  /** A replica's sync state, read when it has answered. */
  sync?: () => ReplicaSync
}

/** A replica that has never had its owner's heads in this run answers `unsynced`, not `ok`. */
function answeredStatus (sync: ReplicaSync | undefined): 'ok' | 'unsynced' {
  if (sync == null) return 'ok'
  return sync.state === 'never' || (sync.state === 'syncing' && sync.syncedAt == null) ? 'unsynced' : 'ok'
}

/** Share of the timeout a query waits for a connected replica's first sync. */
const SYNC_WAIT_SHARE = 0.8

/** Turn a filter (function or field/value object) into a predicate; throws on anything else. */
export function toPredicate (filter: PieceFilter | undefined): (piece: Piece) => boolean {
  if (filter == null) return () => true
  if (typeof filter === 'function') return filter
  if (!isPlainObject(filter) || !isJsonValue(filter)) {
    throw new InvalidOptionError(`expected a filter function or a plain object of field values, got ${describe(filter)}`)
  }
  const entries = Object.entries(filter as Record<string, JsonValue>)
  return (piece) => entries.every(([key, value]) => sameJson(piece[key], value))
}

/** Use the index when the filter pins an indexed field (reading only its matches), else scan. */
async function runQuery (db: CatalogLike<Piece>, filter: PieceFilter | undefined, predicate: (piece: Piece) => boolean): Promise<Piece[]> {
  if (filter != null && typeof filter === 'object' && db.getBy != null && db.indexFields != null) {
    const field = db.indexFields.find(f => (filter as Record<string, unknown>)[f] !== undefined)
    if (field != null) {
      const candidates = await db.getBy(field, (filter as Record<string, unknown>)[field])
      return candidates.filter(predicate)
    }
  }
  const hash = filter != null && typeof filter === 'object' ? (filter as Record<string, unknown>).hash : undefined
  if (typeof hash === 'string') {
    const doc = await db.get(hash)
    return doc != null && predicate(doc.value) ? [doc.value] : []
  }
  return await db.query(predicate)
}

export async function queryCatalogs (sources: QuerySourceInput[], filter: PieceFilter | undefined, timeout: number, options: Pick<QueryOptions, 'signal' | 'onProgress'> = {}): Promise<QueryResult> {
  const { signal, onProgress } = options
  const progress = (evt: CustomProgressEvent<any>): void => {
    const failed = (err: any): void => { log.error('a query progress listener failed: %s', err?.message ?? err) }
    try {
      const returned: unknown = onProgress?.(evt as any)
      // an async listener's rejection must not go unhandled either
      if (returned != null && typeof (returned as Promise<unknown>).then === 'function') (returned as Promise<unknown>).then(undefined, failed)
    } catch (err: any) {
      failed(err)
    }
  }
  const predicate = toPredicate(filter)
  const safe = (piece: Piece): boolean => {
    try {
      return predicate(piece) === true
    } catch {
      return false
    }
  }
  const bounded = deadline(timeout, signal, 'catalog query')
  const started = Date.now()
  let answered = 0
  const tell = (settled: { report: QuerySource, pieces: Piece[] }): { report: QuerySource, pieces: Piece[] } => {
    answered++
    if (onProgress != null) {
      const results = settled.pieces.map(piece => ({ ...piece, owner: settled.report.owner }))
      progress(new CustomProgressEvent('npp:query:source', { source: { ...settled.report }, results, answered, total: sources.length }))
    }
    return settled
  }
  progress(new CustomProgressEvent('npp:query:start', { sources: sources.map(({ owner, address, online }) => ({ owner, address, online })) }))
  try {
    const settled = await Promise.all(sources.map(async (source): Promise<{ report: QuerySource, pieces: Piece[] }> => tell(await (async (): Promise<{ report: QuerySource, pieces: Piece[] }> => {
      const t0 = Date.now()
      try {
        if (source.db == null) throw new Error(source.error ?? 'no catalog to ask')
        if (source.whenSynced != null) {
          // a companion that just connected: give its first sync most of the
          // budget, then answer from whatever is replicated locally
          const wait = deadline(Math.floor(timeout * SYNC_WAIT_SHARE), bounded.signal, 'first sync')
          try {
            await raceSignal(source.whenSynced, wait.signal)
          } catch {
            if (bounded.signal.aborted) throw bounded.reason()
            log('source %s not synced yet, answering from the local replica', source.owner)
          } finally {
            wait.clear()
          }
        }
        const pieces = await raceSignal(runQuery(source.db, filter, safe), bounded.signal).catch((err: unknown) => { throw bounded.signal.aborted ? bounded.reason() : err })
        const sync = source.sync?.()
        return { report: { owner: source.owner, address: source.address, status: answeredStatus(sync), count: pieces.length, ms: Date.now() - t0, online: source.online, ...(sync != null ? { sync } : {}) }, pieces }
      } catch (err: any) {
        const status = err?.name === 'TimeoutError' ? 'timeout' : err?.name === 'AbortError' ? 'aborted' : 'error'
        log('source %s (%s) %s: %s', source.owner, source.address, status, err?.message ?? err)
        const sync = source.sync?.()
        return { report: { owner: source.owner, address: source.address, status, count: 0, ms: Date.now() - t0, online: source.online, error: String(err?.message ?? err), ...(sync != null ? { sync } : {}) }, pieces: [] }
      }
    })())))
    const seen = new Set<string>()
    const results: OwnedPiece[] = []
    for (const { report, pieces } of settled) {
      for (const piece of pieces) {
        const key = `${report.owner}\u0000${piece.hash}`
        if (seen.has(key)) continue
        seen.add(key)
        results.push({ ...piece, owner: report.owner })
      }
    }
    const reports = settled.map(s => s.report)
    log('query over %d source(s) took %d ms, %d result(s)', sources.length, Date.now() - started, results.length)
    return { results, sources: reports, complete: reports.every(r => r.status === 'ok') }
  } catch (err) {
    throw bounded.signal.aborted ? bounded.reason() : err
  } finally {
    bounded.clear()
  }
}
