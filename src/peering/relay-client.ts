/**
 * `init.relay`: the relay's multiaddr, or the HTTP URL of its `/config`
 * endpoint, turned into the multiaddrs to dial at start (and, from a config,
 * the trusted peers the relay operator wants every peer to reach).
 */
import { multiaddr } from '@multiformats/multiaddr'
import { InvalidOptionError, RelayUnavailableError, describe } from '../errors.ts'
import { timeoutSignal } from '../utils/abort.ts'
import { isPlainObject } from '../utils/validate.ts'
import { trailingPeerId } from '../utils/multiaddr.ts'

/** The relay's /config answer is small; anything bigger is not one. */
const MAX_CONFIG_BYTES = 64 * 1024
/** Trusted peers taken from a relay config, at most. */
export const MAX_TRUSTED_PEERS = 32

export interface ResolvedRelay {
  /** The relay's multiaddrs this platform can dial. */
  addrs: string[]
  /** Multiaddrs (each with `/p2p/<peer id>`) of the peers the relay keeps connected and hands out. */
  trusted: string[]
}

function isMultiaddr (m: string): boolean {
  try {
    multiaddr(m)
    return true
  } catch {
    return false
  }
}

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
export async function resolveRelay (relay: string, options: { timeout: number, websocketOnly: boolean }): Promise<ResolvedRelay> {
  if (!/^https?:\/\//.test(relay)) return { addrs: [relay], trusted: [] }
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
  const usable = addrs.filter(m => isMultiaddr(m) && (!options.websocketOnly || m.includes('/ws')))
  if (usable.length === 0) throw new RelayUnavailableError(`${relay} did not list any usable relay multiaddr`)
  // Node: TCP when the relay offers it (one transport is enough to reach it)
  const tcp = usable.filter(m => !m.includes('/ws'))
  // trusted peers are optional: anything malformed is left out, never fatal
  const trusted = isPlainObject(body) && Array.isArray(body.trusted)
    ? body.trusted.filter((m): m is string => typeof m === 'string' && isMultiaddr(m) && trailingPeerId(m) != null).slice(0, MAX_TRUSTED_PEERS)
    : []
  return { addrs: options.websocketOnly || tcp.length === 0 ? usable : tcp, trusted }
}
