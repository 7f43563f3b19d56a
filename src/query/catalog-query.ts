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
import type { Piece, PieceFilter, QueryOptions, QueryResult } from '../types.ts'

export interface CatalogQueryComponents extends Pick<NppComponents, 'libp2p'> {
  pieces: CatalogDatabase<Piece>
  companions: { openReplicas(): Replica[] }
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
    for (const replica of companions.openReplicas()) {
      if (seen.has(replica.address)) continue
      seen.add(replica.address)
      const online = connected.has(replica.owner)
      sources.push({
        owner: replica.owner,
        address: replica.address,
        online,
        db: replica.db,
        ...(online && !replica.synced ? { whenSynced: replica.whenSynced } : {})
      })
    }
    return await queryCatalogs(sources, filter, timeout, { signal: options.signal, onProgress: options.onProgress })
  }
}
