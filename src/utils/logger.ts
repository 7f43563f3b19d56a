/**
 * Logging the libp2p way: `@libp2p/logger` (on `debug`'s conventions, with
 * `%p` peer id, `%a` multiaddr and `%e` error formatters). Parts built from
 * components use `components.logger.forComponent('npp:<part>')`; database
 * types and the relay, which OrbitDB or the CLI create, use this module
 * logger. Enable with `DEBUG=npp:*` in Node or `localStorage.debug = 'npp:*'`
 * in a browser.
 */
import { logger as libp2pLogger } from '@libp2p/logger'
import type { Logger } from '@libp2p/interface'

export type { Logger, ComponentLogger } from '@libp2p/interface'

/** The `npp:<name>` logger, with `.error` and `.trace`. */
export function logger (name: string): Logger {
  return libp2pLogger(`npp:${name}`)
}
