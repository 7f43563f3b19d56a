/**
 * The catalog's errors. Their messages are OrbitDB Documents' own, so code
 * written against Documents reads the same text; branch on `name` instead.
 */
import { NewPiecePleaseError, describe } from '../errors.ts'

/** A document to write has no usable key (the catalog's `indexBy` field). */
export class InvalidDocumentKeyError extends NewPiecePleaseError {
  override name = 'InvalidDocumentKeyError'

  constructor (indexBy: string, key: unknown) {
    super(key === undefined || key === null || key === ''
      ? `The provided document doesn't contain field '${indexBy}'`
      : `The provided document's field '${indexBy}' must be a non-empty string or a finite number, got ${describe(key)}`)
  }
}

/** `del` of a key that holds no document. */
export class DocumentNotFoundError extends NewPiecePleaseError {
  override name = 'DocumentNotFoundError'

  constructor (key: unknown) {
    super(`No document with key '${String(key)}' in the database`)
  }
}
