/**
 * Typed errors. Every failure has its own class with a stable `name`, so
 * callers can branch on `err.name` (or `instanceof`) instead of message text.
 */

/** Base class of every error this library throws on purpose. */
export class NewPiecePleaseError extends Error {
  override name: string = 'NewPiecePleaseError'
  /** Stable machine-readable code, equal to `name`. */
  get code (): string { return this.name }
}

/** A piece hash was empty, not a string, or too long. */
export class InvalidHashError extends NewPiecePleaseError {
  override name = 'InvalidHashError'
}

/** An instrument was empty, not a string, or too long. */
export class InvalidInstrumentError extends NewPiecePleaseError {
  override name = 'InvalidInstrumentError'
}

/** A piece's extra fields could not be stored (wrong type, reserved key, too large). */
export class InvalidPieceError extends NewPiecePleaseError {
  override name = 'InvalidPieceError'
}

/** No piece with that hash in the catalog. */
export class PieceNotFoundError extends NewPiecePleaseError {
  override name = 'PieceNotFoundError'
}

/** A profile key or value was rejected (bad key, read-only key, wrong value type, too large). */
export class InvalidProfileFieldError extends NewPiecePleaseError {
  override name = 'InvalidProfileFieldError'
}

/** A multiaddr or peer id string could not be parsed. */
export class InvalidMultiaddrError extends NewPiecePleaseError {
  override name = 'InvalidMultiaddrError'
}

/** A peer id string could not be parsed. */
export class InvalidPeerIdError extends NewPiecePleaseError {
  override name = 'InvalidPeerIdError'
}

/** A message to send was not a JSON-serialisable plain object, or was too large. */
export class InvalidMessageError extends NewPiecePleaseError {
  override name = 'InvalidMessageError'
}

/** An option passed to `createNewPiecePlease` or a method was invalid. */
export class InvalidOptionError extends NewPiecePleaseError {
  override name = 'InvalidOptionError'
}

/** The instance was used after `stop()` (or before it was started). */
export class NotStartedError extends NewPiecePleaseError {
  override name = 'NotStartedError'
}

/** A network operation did not finish within its time limit. */
export class TimeoutError extends NewPiecePleaseError {
  override name = 'TimeoutError'
}

/** The caller's `AbortSignal` fired. */
export class AbortError extends NewPiecePleaseError {
  override name = 'AbortError'
}

/**
 * The libp2p node's private key could not be read, so this peer cannot sign
 * the proof that its profile is its own (other peers refuse a profile
 * without one). Thrown by `start()`.
 */
export class MissingPrivateKeyError extends NewPiecePleaseError {
  override name = 'MissingPrivateKeyError'
}

/**
 * A keeper refused to keep this peer's databases; `reason` says why:
 * `not-allowed` (not on its allowlist), `over-quota`, `invalid-profile`,
 * `unavailable` (busy or timed out: tried again at the next connection) or
 * `bad-request`. Carried by the `keeper:refused` event.
 */
export class KeeperRefusedError extends NewPiecePleaseError {
  override name = 'KeeperRefusedError'
  readonly reason: string
  constructor (reason: string, message: string) {
    super(message)
    this.reason = reason
  }
}

/** A remote database or message failed validation (used in logs and events; never thrown at callers). */
export class InvalidRemoteDataError extends NewPiecePleaseError {
  override name = 'InvalidRemoteDataError'
}

/** Describe a received value for error messages without dumping it whole. */
export function describe (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return `array(${value.length})`
  switch (typeof value) {
    case 'string': return value.length > 40 ? `string "${value.slice(0, 37)}..." (${value.length} chars)` : `string "${value}"`
    case 'number': case 'boolean': case 'bigint': return `${typeof value} ${String(value)}`
    case 'undefined': return 'undefined'
    case 'function': return 'function'
    default: {
      const proto = Object.getPrototypeOf(value)
      return proto === Object.prototype || proto === null ? 'object' : `object ${proto?.constructor?.name ?? ''}`.trim()
    }
  }
}

/** The relay's configuration (file, key file, options) could not be used. */
export class RelayConfigError extends NewPiecePleaseError {
  override name = 'RelayConfigError'
}

/** The relay could not start (for example, a port in use). */
export class RelayStartError extends NewPiecePleaseError {
  override name = 'RelayStartError'
}

/** The relay given as `init.relay` could not be reached, or its /config was not usable. */
export class RelayUnavailableError extends NewPiecePleaseError {
  override name = 'RelayUnavailableError'
}

/**
 * The storage `directory` is in use by another instance: another process in
 * Node, another tab of the same origin in a browser, or another instance of
 * this process or page that did not stop within 5 s (one that is stopping is
 * waited for). The message says which.
 */
export class StorageLockedError extends NewPiecePleaseError {
  override name = 'StorageLockedError'
}
