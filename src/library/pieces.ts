/**
 * The tutorial's piece API over the own catalog: add, update, delete, look
 * up. Input is validated first and named in the error; writes that would
 * change nothing are skipped, so adding the same piece twice writes once.
 */
import { PieceNotFoundError, InvalidPieceError, InvalidHashError, describe } from '../errors.ts'
import { assertHash, assertInstrument, assertExtra } from '../utils/validate.ts'
import { sameJson } from '../utils/json.ts'
import { DEFAULT_INSTRUMENT } from '../constants.ts'
import type { CatalogDatabase } from '../catalog/catalog.ts'
import type { Piece, PieceExtra } from '../types.ts'

export interface PiecesComponents {
  /** The own catalog. */
  pieces: CatalogDatabase<Piece>
}

/** A piece as given to `addPieces`. */
export type PieceInput = { hash: string, instrument?: string } & PieceExtra

export class Pieces {
  private readonly db: CatalogDatabase<Piece>

  constructor (components: PiecesComponents) {
    this.db = components.pieces
  }

  async addNewPiece (hash: string, instrument: string = DEFAULT_INSTRUMENT, extra?: PieceExtra): Promise<Piece> {
    assertHash(hash)
    assertInstrument(instrument)
    assertExtra(extra)
    const piece: Piece = { ...(extra ?? {}), hash, instrument }
    if (await this.needsWrite(piece)) await this.db.put(piece)
    return piece
  }

  async addPieces (pieces: PieceInput[]): Promise<Piece[]> {
    if (!Array.isArray(pieces)) throw new InvalidPieceError(`expected an array of pieces, got ${describe(pieces)}`)
    const prepared = pieces.map((input, i) => {
      if (input == null || typeof input !== 'object' || Array.isArray(input)) throw new InvalidPieceError(`piece ${i}: expected an object, got ${describe(input)}`)
      const { hash, instrument = DEFAULT_INSTRUMENT, ...extra } = input
      try {
        assertHash(hash)
        assertInstrument(instrument)
        assertExtra(extra)
      } catch (err) {
        if (err instanceof Error) err.message = `piece ${i}: ${err.message}`
        throw err
      }
      const piece: Piece = { ...extra, hash, instrument }
      return piece
    })
    // the last occurrence of a hash wins, as if added one by one
    const latest = new Map(prepared.map(p => [p.hash, p]))
    const changed: Piece[] = []
    for (const piece of latest.values()) {
      if (await this.needsWrite(piece)) changed.push(piece)
    }
    if (changed.length > 0) await this.db.batch({ put: changed })
    return prepared.map(p => latest.get(p.hash) ?? p)
  }

  async deletePieces (hashes: string[]): Promise<number> {
    if (!Array.isArray(hashes)) throw new InvalidHashError(`expected an array of hashes, got ${describe(hashes)}`)
    hashes.forEach(h => { assertHash(h) })
    const present: string[] = []
    for (const hash of new Set(hashes)) {
      if ((await this.db.get(hash)) != null) present.push(hash)
    }
    if (present.length > 0) await this.db.batch({ del: present })
    return present.length
  }

  async getAllPieces (): Promise<Piece[]> {
    return (await this.db.all()).map(d => d.value)
  }

  async getPieceByHash (hash: string): Promise<Piece | undefined> {
    assertHash(hash)
    return (await this.db.get(hash))?.value
  }

  async getByInstrument (instrument: string): Promise<Piece[]> {
    assertInstrument(instrument)
    return await this.db.getBy('instrument', instrument)
  }

  async updatePieceByHash (hash: string, instrument: string = DEFAULT_INSTRUMENT): Promise<Piece> {
    assertHash(hash)
    assertInstrument(instrument)
    const existing = await this.db.get(hash)
    if (existing == null) {
      throw new PieceNotFoundError(`no piece with hash "${hash}" in the catalog`)
    }
    if (existing.value.instrument === instrument) return existing.value
    const piece = { ...existing.value, instrument }
    await this.db.put(piece)
    return piece
  }

  async deletePieceByHash (hash: string): Promise<boolean> {
    assertHash(hash)
    if ((await this.db.get(hash)) == null) return false
    await this.db.del(hash)
    return true
  }

  /** False when the catalog already holds exactly this piece (adding it again writes nothing). */
  private async needsWrite (piece: Piece): Promise<boolean> {
    const existing = await this.db.get(piece.hash)
    return existing == null || !sameJson(existing.value, piece)
  }
}
