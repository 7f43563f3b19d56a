/**
 * `queryCatalog`: the own catalog and every open companion replica, each
 * once, asked in parallel through `queryCatalogs`. A replica of a companion
 * that is connected but has not exchanged heads yet is given most of the
 * time budget to do so first.
 */
import { positiveInteger } from '../utils/validate.ts'
import { queryCatalogs, type QuerySourceInput } from './query.ts'
import type { NppComponents } from '../components.ts'
import type { CatalogDatabase } from '../catalog/catalog.ts'
import type { Replica } from '../companions/companions.ts'
import type { Piece, PieceFilter, QueryOptions, QueryResult, ReplicaSync } from '../types.ts'

export interface CatalogQueryComponents extends Pick<NppComponents, 'libp2p'> {
  pieces: CatalogDatabase<Piece>
  companions: {
    openReplicas(): Replica[]
    /** Companions whose replica could not be opened, with why. */
    replicaFailures(): Array<{ owner: string, address: string, error: string }>
    syncState(replica: Replica): ReplicaSync
    whenSynced(replica: Replica, signal: AbortSignal): Promise<void>
  }
}

export interface CatalogQueryInit {
  /** Default time limit of each source. */
  queryTimeout: number
}

export class CatalogQuery {
  private readonly components: CatalogQueryComponents
  private readonly init: CatalogQueryInit

  constructor (components: CatalogQueryComponents, init: CatalogQueryInit) {
    this.components = components
    this.init = init
  }

  async query (filter?: PieceFilter, options: QueryOptions = {}): Promise<QueryResult> {
    const { libp2p, pieces, companions } = this.components
    const timeout = positiveInteger('timeout', options.timeout, this.init.queryTimeout)
    const own: QuerySourceInput = { owner: libp2p.peerId.toString(), address: pieces.address, online: true, db: pieces }
    const seen = new Set([own.address])
    const sources = [own]
    const connected = new Set(libp2p.getPeers().map(String))
    // released when the query settles: the waits for a first sync end with it
    const done = new AbortController()
    for (const replica of companions.openReplicas()) {
      // a keeper's replicas are logs without documents: it searches its own catalog only
      if (seen.has(replica.address) || replica.bare) continue
      seen.add(replica.address)
      const online = connected.has(replica.owner)
      const sync = (): ReplicaSync => companions.syncState(replica)
      sources.push({
        owner: replica.owner,
        address: replica.address,
        online,
        db: replica.db,
        sync,
        ...(online && sync().state !== 'synced' ? { whenSynced: companions.whenSynced(replica, done.signal) } : {})
      })
    }
    // a companion whose replica would not open is a source that cannot answer, not a missing one
    for (const failure of companions.replicaFailures()) {
      if (seen.has(failure.address)) continue
      seen.add(failure.address)
      sources.push({ owner: failure.owner, address: failure.address, online: connected.has(failure.owner), error: `its replica could not be opened: ${failure.error}` })
    }
    try {
      return await queryCatalogs(sources, filter, timeout, { signal: options.signal, onProgress: options.onProgress })
    } finally {
      done.abort()
    }
  }
}
