/**
 * Fails early and clearly on a Node.js older than this package needs. On
 * Node 20 the stack fails deep inside its dependencies instead (undici reads
 * `zlib.createZstdDecompress`, which Node 20 lacks; the relay's libp2p stops
 * with "Pubsub is not started"), which says nothing about the cause.
 *
 * Checks on evaluation: both entry points (`src/index.ts`,
 * `src/relay/relay.ts`) import this module first, and the relay CLI before
 * anything else it runs. In a browser there is no `process.versions.node`
 * and it does nothing. No imports of its own, so nothing can fail before the
 * check.
 */

/** The oldest Node.js major version this package runs on (package.json `engines`). */
export const MIN_NODE_MAJOR = 22

/** This Node.js is older than {@link MIN_NODE_MAJOR}. */
export class UnsupportedNodeError extends Error {
  override name = 'UnsupportedNodeError'
  /** Stable machine-readable code, equal to `name`. */
  get code (): string { return this.name }
}

/**
 * Throws {@link UnsupportedNodeError} when `version` (a `process.versions.node`
 * string such as `'20.20.2'`) is older than {@link MIN_NODE_MAJOR}. Does
 * nothing outside Node.js (no version) or for a version it cannot read.
 */
export function checkNodeVersion (version: string | undefined = globalThis.process?.versions?.node): void {
  if (typeof version !== 'string') return
  const major = Number.parseInt(version, 10)
  if (Number.isNaN(major) || major >= MIN_NODE_MAJOR) return
  throw new UnsupportedNodeError(`new-piece-please needs Node ${MIN_NODE_MAJOR} or newer (this is Node ${version})`)
}

checkNodeVersion()
