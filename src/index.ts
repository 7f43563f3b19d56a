/**
 * @packageDocumentation
 *
 * New Piece, Please!: a peer-to-peer catalog of the sheet-music pieces you
 * practise, on OrbitDB (databases), Helia (IPFS blocks) and libp2p (network).
 *
 * @example
 * ```ts
 * import { createNewPiecePlease } from 'new-piece-please'
 *
 * const npp = await createNewPiecePlease({ storage: 'memory' })
 * await npp.addNewPiece('QmNR2n4zywCV61MeMLB6JwPueAPqheqpfiA4fLPMxouEmQ', 'Harpsichord')
 * const { results } = await npp.queryCatalog({ instrument: 'Harpsichord' })
 * await npp.stop()
 * ```
 */
// first: on a Node that is too old this says so before anything else can fail
import './platform/node-version.ts'

export { NewPiecePlease, createNewPiecePlease } from './new-piece-please.ts'
export { Counters, COUNTERS_TYPE } from './counters/counters.ts'
export { Catalog, CATALOG_TYPE, MAX_OPS_PER_ENTRY, MAX_ENTRY_BYTES } from './catalog/catalog.ts'
export { InvalidDocumentKeyError, DocumentNotFoundError } from './catalog/errors.ts'
export type { CatalogDatabase, CatalogStoreOptions, CatalogDocument, CatalogKey } from './catalog/catalog.ts'
export type { CountersDatabase } from './counters/counters.ts'
export * from './errors.ts'
export {
  DEFAULT_DIRECTORY, DEFAULT_LISTEN, RELAY_LISTEN, DEFAULT_ICE_SERVERS, DEFAULT_RECONNECT_INTERVAL, DEFAULT_QUERY_TIMEOUT,
  DEFAULT_DISCOVERY_TIMEOUT, DEFAULT_DIAL_TIMEOUT, DEFAULT_PEERS_PER_ADDRESS, DEFAULT_SEND_TIMEOUT, DEFAULT_INSTRUMENT,
  MAX_MESSAGE_BYTES
} from './constants.ts'
export type * from './types.ts'
export type * from './orbitdb/types.ts'
export { KEEPER_PROTOCOL } from './keeper/protocol.ts'
export type { KeeperRefusal, IntroducedCatalog } from './keeper/protocol.ts'
export type { KeeperService, KeeperServiceInit } from './keeper/keeper.ts'
export { KeeperConfigError, KeeperAdminError } from './keeper/errors.ts'
