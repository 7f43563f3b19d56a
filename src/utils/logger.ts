import debug from 'debug'

export interface Logger {
  (formatter: string, ...args: unknown[]): void
  error(formatter: string, ...args: unknown[]): void
  trace(formatter: string, ...args: unknown[]): void
  enabled: boolean
}

/**
 * A `debug` logger with `:error` and `:trace` children, one namespace per
 * module (`npp:catalog`, `npp:discovery`, ...). Enable with `DEBUG=npp:*` in
 * Node or `localStorage.debug = 'npp:*'` in a browser.
 */
export function logger (name: string): Logger {
  const log = debug(`npp:${name}`) as unknown as Logger
  log.error = debug(`npp:${name}:error`)
  log.trace = debug(`npp:${name}:trace`)
  return log
}
