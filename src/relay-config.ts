/**
 * `init.relay`: the relay's multiaddr, or the HTTP URL of its `/config`
 * endpoint, turned into the multiaddrs to dial at start.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { InvalidOptionError, RelayUnavailableError, describe } from './errors.ts'
import { timeoutSignal } from './abort.ts'
import { isPlainObject } from './validate.ts'

/** The relay's /config answer is small; anything bigger is not one. */
const MAX_CONFIG_BYTES = 64 * 1024

export function checkRelayOption (relay: unknown): string | undefined {
  if (relay === undefined) return undefined
  if (typeof relay !== 'string' || relay.length === 0) throw new InvalidOptionError(`expected relay to be a multiaddr or an http(s) URL, got ${describe(relay)}`)
  if (/^https?:\/\//.test(relay)) {
    try {
      new URL(relay) // eslint-disable-line no-new
    } catch {
      throw new InvalidOptionError(`relay ${describe(relay)} is not a valid URL`)
    }
    return relay
  }
  try {
    multiaddr(relay)
  } catch {
    throw new InvalidOptionError(`relay ${describe(relay)} is neither a multiaddr nor an http(s) URL`)
  }
  return relay
}

/** The relay's multiaddrs usable by this platform (WebSockets only in browsers). */
export async function resolveRelay (relay: string, options: { timeout: number, websocketOnly: boolean }): Promise<string[]> {
  if (!/^https?:\/\//.test(relay)) return [relay]
  const bounded = timeoutSignal(options.timeout, undefined, `fetching ${relay}`)
  let body: unknown
  try {
    const res = await fetch(relay, { signal: bounded.signal })
    if (!res.ok) throw new RelayUnavailableError(`${relay} answered HTTP ${res.status}`)
    const text = await res.text()
    if (text.length > MAX_CONFIG_BYTES) throw new RelayUnavailableError(`${relay} answered ${text.length} bytes, not a relay config`)
    body = JSON.parse(text)
  } catch (err: any) {
    if (err instanceof RelayUnavailableError) throw err
    throw new RelayUnavailableError(`cannot get the relay config from ${relay}: ${err?.message ?? err}`)
  } finally {
    bounded.clear()
  }
  const addrs = isPlainObject(body) && Array.isArray(body.multiaddrs) ? body.multiaddrs.filter((m): m is string => typeof m === 'string') : []
  const usable = addrs.filter(m => {
    try {
      multiaddr(m)
    } catch {
      return false
    }
    return !options.websocketOnly || m.includes('/ws')
  })
  if (usable.length === 0) throw new RelayUnavailableError(`${relay} did not list any usable relay multiaddr`)
  // Node: TCP when the relay offers it (one transport is enough to reach it)
  const tcp = usable.filter(m => !m.includes('/ws'))
  return options.websocketOnly || tcp.length === 0 ? usable : tcp
}
