/**
 * `init.relay`: the relay's multiaddr, or the HTTP URL of its `/config`
 * endpoint, turned into the multiaddrs to dial (and, from a config, the
 * trusted peers the relay operator wants every peer to reach).
 */
import { InvalidOptionError, RelayUnavailableError, describe } from '../errors.ts'
import { withDeadline } from '../utils/abort.ts'
import { isPlainObject, parseMultiaddr } from '../utils/validate.ts'
import { trailingPeerId, tryMultiaddr, isWebSocket } from '../utils/multiaddr.ts'
import { AutoDial } from './auto-dial.ts'
import { HubLinks, type HubTarget } from './hub-links.ts'
import type { Logger } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { NppComponents, Startable } from '../components.ts'

/** The relay's /config answer is small; anything bigger is not one. */
const MAX_CONFIG_BYTES = 64 * 1024
/** Trusted peers taken from a relay config, at most. */
export const MAX_TRUSTED_PEERS = 32

export interface ResolvedRelay {
  /** The relay's multiaddrs this platform can dial. */
  addrs: string[]
  /** Multiaddrs (each with `/p2p/<peer id>`) of the peers the relay keeps connected and hands out. */
  trusted: string[]
  /** Multiaddrs (each with `/p2p/<peer id>`) of the keepers that run beside the relay (`npx new-piece-please keeper`), usable by this platform. */
  keepers: string[]
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
  if (tryMultiaddr(relay) == null) throw new InvalidOptionError(`relay ${describe(relay)} is neither a multiaddr nor an http(s) URL`)
  return relay
}

/** The relay's multiaddrs usable by this platform (WebSockets only in browsers). */
export async function resolveRelay (relay: string, options: { timeout: number, websocketOnly: boolean, signal?: AbortSignal }): Promise<ResolvedRelay> {
  if (!/^https?:\/\//.test(relay)) return { addrs: [relay], trusted: [], keepers: [] }
  let body: unknown
  try {
    body = await withDeadline(options.timeout, options.signal, `fetching ${relay}`, async (signal) => {
      const res = await fetch(relay, { signal })
      if (!res.ok) throw new RelayUnavailableError(`${relay} answered HTTP ${res.status}`)
      const text = await res.text()
      if (text.length > MAX_CONFIG_BYTES) throw new RelayUnavailableError(`${relay} answered ${text.length} bytes, not a relay config`)
      return JSON.parse(text)
    })
  } catch (err) {
    if (err instanceof RelayUnavailableError) throw err
    throw new RelayUnavailableError(`cannot get the relay config from ${relay}: ${err instanceof Error ? err.message : String(err)}`)
  }
  const listed = isPlainObject(body) && Array.isArray(body.multiaddrs) ? body.multiaddrs : []
  const parsed = listed.flatMap(m => { const ma = tryMultiaddr(m); return ma == null ? [] : [{ text: m as string, ma }] })
  const usable = parsed.filter(({ ma }) => !options.websocketOnly || isWebSocket(ma))
  if (usable.length === 0) throw new RelayUnavailableError(`${relay} did not list any usable relay multiaddr`)
  // Node: TCP when the relay offers it (one transport is enough to reach it)
  const tcp = usable.filter(({ ma }) => !isWebSocket(ma))
  // trusted peers are optional: anything malformed is left out, never fatal
  const trusted = isPlainObject(body) && Array.isArray(body.trusted)
    ? body.trusted.filter((m): m is string => typeof m === 'string' && trailingPeerId(m) != null).slice(0, MAX_TRUSTED_PEERS)
    : []
  // keepers are optional too; a browser can dial only their WebSocket addresses
  const keepers = isPlainObject(body) && Array.isArray(body.keepers)
    ? body.keepers.filter((m): m is string => {
      if (typeof m !== 'string' || trailingPeerId(m) == null) return false
      const ma = tryMultiaddr(m)
      return ma != null && (!options.websocketOnly || isWebSocket(ma))
    }).slice(0, MAX_TRUSTED_PEERS)
    : []
  return { addrs: (options.websocketOnly || tcp.length === 0 ? usable : tcp).map(({ text }) => text), trusted, keepers }
}

export interface RelayClientInit {
  /** `init.relay` as given: a multiaddr or the relay's `/config` URL (none: only bootstrap peers). */
  relay?: string
  /** Multiaddrs dialed at start besides the relay. */
  bootstrap: string[]
  dialTimeout: number
  /** Only WebSocket addresses of the relay are usable (browsers). */
  websocketOnly: boolean
  /** Dial the peers pubsub discovery reports. */
  pubsubDiscovery: boolean
  /** How often the relay's trusted peers are dialed again when not linked. */
  reconnectInterval: number
  /** Whether this platform can dial an announced address directly (see `PlatformDefaults`). */
  canDialDirectly(addr: Multiaddr): boolean
  /**
   * The addresses the connection gater lets through (the stack's `trusted`
   * list, read on every dial): the relay's addresses are added to it once
   * its `/config` has been read.
   */
  gaterAllowed?: string[]
  /** Overrides the hub back-off (tests). */
  hubDelays?: { minDelay: number, maxDelay: number }
  /** Where keepers listed in the relay's `/config` go (see `KeeperClient.add`). */
  keepers?: { add(configured: string): string | undefined }
}

/**
 * Reaching out: keep the relay and the bootstrap peers linked (`HubLinks`),
 * keep the relay's trusted peers linked, and (with pubsub discovery) dial
 * the peers heard of, through `AutoDial`.
 */
export class RelayClient implements Startable {
  private readonly components: Pick<NppComponents, 'libp2p' | 'logger' | 'events'>
  private readonly init: RelayClientInit
  private readonly log: Logger
  private readonly autoDial: AutoDial | undefined
  readonly hubs: HubLinks
  private started = false

  constructor (components: Pick<NppComponents, 'libp2p' | 'logger' | 'events'>, init: RelayClientInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('npp:relay-client')
    if (init.pubsubDiscovery || init.relay != null) {
      this.autoDial = new AutoDial(components, {
        dialTimeout: init.dialTimeout,
        canDialDirectly: init.canDialDirectly,
        keepInterval: init.reconnectInterval,
        dialDiscovered: init.pubsubDiscovery
      })
    }
    const relay = init.relay
    const hubs: HubTarget[] = init.bootstrap.map(addr => ({ kind: 'bootstrap', configured: addr, addrs: [addr] }))
    if (relay != null) {
      hubs.unshift(/^https?:\/\//.test(relay)
        ? { kind: 'relay', configured: relay, resolve: async (signal) => await this.resolve(relay, signal) }
        : { kind: 'relay', configured: relay, addrs: [relay] })
    }
    this.hubs = new HubLinks(components, { hubs, dialTimeout: init.dialTimeout, ...init.hubDelays })
  }

  /** Dials that needed more than one attempt (diagnostics). */
  get retriedDials (): number {
    return this.autoDial?.retriedDials ?? 0
  }

  /** Reach the relay now or fail (`requireRelay`): rejects with `RelayUnavailableError`. */
  async require (): Promise<void> {
    await this.hubs.require()
  }

  start (): void {
    if (this.started) return
    this.started = true
    this.autoDial?.start()
    this.hubs.start()
  }

  stop (): void {
    if (!this.started) return
    this.started = false
    this.hubs.stop()
    this.autoDial?.stop()
  }

  /** Read the relay's `/config`: the addresses to dial, and the trusted peers to keep linked. */
  private async resolve (relay: string, signal: AbortSignal): Promise<string[]> {
    const resolved = await resolveRelay(relay, { timeout: this.init.dialTimeout, websocketOnly: this.init.websocketOnly, signal })
    const allowed = this.init.gaterAllowed
    if (allowed != null) for (const addr of resolved.addrs) if (!allowed.includes(addr)) allowed.push(addr)
    this.keepTrusted(resolved)
    this.keepKeepers(resolved)
    return resolved.addrs
  }

  /** Keepers beside the relay count as configured keepers: let through the gater, kept linked, and asked. */
  private keepKeepers (relay: ResolvedRelay): void {
    const allowed = this.init.gaterAllowed
    for (const addr of relay.keepers) {
      if (allowed != null && !allowed.includes(addr)) allowed.push(addr)
      const peer = trailingPeerId(addr)
      if (peer == null || peer.equals(this.components.libp2p.peerId) || this.init.keepers?.add(addr) == null) continue
      try {
        this.autoDial?.keep(peer, [parseMultiaddr(addr)])
      } catch (err) {
        this.log.error('ignoring keeper %s from the relay: %e', addr, err)
      }
    }
  }

  /**
   * The relay's trusted peers (resolveRelay kept only well-formed entries):
   * directly when this platform can, else over WebRTC signalled through the
   * relay (they hold a reservation on it); kept linked.
   */
  private keepTrusted (relay: ResolvedRelay): void {
    const { libp2p } = this.components
    for (const addr of relay.trusted) {
      const peer = trailingPeerId(addr)
      if (peer == null || peer.equals(libp2p.peerId)) continue
      try {
        const candidates = [addr, ...relay.addrs.map(r => `${r}/p2p-circuit/webrtc/p2p/${peer.toString()}`)]
        this.autoDial?.keep(peer, candidates.map(parseMultiaddr))
      } catch (err) {
        this.log.error('ignoring trusted peer %s from the relay: %e', addr, err)
      }
    }
  }
}
