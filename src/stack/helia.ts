/**
 * The light Helia composition the stack runs, without loading what it does
 * not use.
 *
 * `createHeliaLight` from 'helia' and `withLibp2pLight` from '@helia/libp2p'
 * build exactly the node we want, but their entry points cannot be imported
 * alone: 'helia' statically imports '@helia/http' and '@helia/libp2p' (for
 * `createHelia`), and '@helia/libp2p' imports its `libp2pDefaults` (every
 * default transport and service: kad-dht, AutoTLS and its ACME client, UPnP,
 * mDNS, WebRTC with node-datachannel, WebSockets, TLS, mplex, HTTP, delegated
 * routing...). Bundlers tree-shake those away; Node loads them all: 65 MB
 * of RSS that stays (100 MB right after loading) for code we never run.
 *
 * So here:
 * - `createLightHelia` builds helia's own `Helia` class, as
 *   `createHeliaLight` does (`new Helia({ name, version, ...init })`). helia
 *   exports only its entry point, so in Node the class is loaded from the
 *   modules beside that entry (`helia.js`, `version.js`, found with
 *   `import.meta.resolve`). Where that cannot work (bundles and browsers, or
 *   a helia that moved its files) it is `createHeliaLight` through the entry
 *   point, imported on demand from ./helia-entry.ts: bundlers tree-shake it as
 *   before (webpack and Vite put it in a small chunk of its own).
 * - `withLibp2pLight` is a port of '@helia/libp2p''s (2.1.4): the same mixin,
 *   the same libp2p-router, the same self key from the datastore.
 */
import { createLibp2p, isLibp2p } from 'libp2p'
import { userAgent } from 'libp2p/user-agent'
import { loadOrCreateSelfKey } from '@libp2p/config'
import { NotStartedError } from '@libp2p/interface'
import { peerIdFromCID } from '@libp2p/peer-id'
import { withArrayBuffer } from 'uint8arrays/with-array-buffer'
import { logger } from '../utils/logger.ts'
import type { Helia, HeliaInit, Peer, Provider, Routing, Router, RoutingOptions } from 'helia'
import type { CreateLibp2pOptions, HeliaWithLibp2p } from '@helia/libp2p'
import type { Libp2p, PeerInfo, ServiceMap } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

const log = logger('stack')

/** What `createHeliaLight(init)` from 'helia' returns, without loading the rest of 'helia'. */
export async function createLightHelia (init: HeliaInit): Promise<Helia> {
  const internals = await heliaInternals()
  if (internals != null) return new internals.Helia({ name: internals.name, version: internals.version, ...init })
  const { createHeliaLight } = await import('./helia-entry.ts')
  return createHeliaLight(init)
}

interface HeliaInternals {
  Helia: new (init: HeliaInit & { name: string, version: string }) => Helia
  name: string
  version: string
}

let internals: Promise<HeliaInternals | undefined> | undefined

/** helia's `Helia` class and its name and version, from the files beside its entry point (Node); undefined where they cannot be loaded. */
async function heliaInternals (): Promise<HeliaInternals | undefined> {
  internals ??= (async () => {
    try {
      // resolved, not imported: loading the entry point is what we avoid.
      // Read, then called: webpack resolves a literal
      // `import.meta.resolve('helia')` at build time, without the "import"
      // condition helia's exports need, and fails the build; read like this,
      // bundles get no resolve and take the fallback.
      const resolve: ((specifier: string) => string) | undefined = import.meta.resolve
      const entry = typeof resolve === 'function' ? resolve('helia') : undefined
      if (entry == null || !entry.startsWith('file:')) return undefined
      const [{ Helia }, { name, version }] = await Promise.all([
        import(/* webpackIgnore: true */ /* @vite-ignore */ new URL('./helia.js', entry).href),
        import(/* webpackIgnore: true */ /* @vite-ignore */ new URL('./version.js', entry).href)
      ])
      if (typeof Helia !== 'function' || typeof name !== 'string' || typeof version !== 'string') throw new Error('unexpected exports')
      return { Helia, name, version }
    } catch (err: any) {
      log('helia internals not loadable (%s): using its entry point', err?.message ?? err)
      return undefined
    }
  })()
  return await internals
}

/**
 * `withLibp2pLight` from '@helia/libp2p' 2.1.4: a libp2p node created from
 * `opts` as they are (no defaults added) when Helia starts, its identity the
 * self key kept in Helia's datastore, and a router over its content and peer
 * routing.
 */
export function withLibp2pLight<H extends Helia, M extends ServiceMap = ServiceMap> (helia: H, opts: CreateLibp2pOptions<M>): H & HeliaWithLibp2p<M> {
  let libp2p: Libp2p<M> | undefined

  // a getter that tells the user to start Helia first
  Object.defineProperty(helia, 'libp2p', {
    configurable: true,
    enumerable: true,
    get () {
      if (libp2p != null) return libp2p
      throw new NotStartedError()
    }
  })

  helia.addMixin({
    name: 'libp2p',
    start: async (helia: H & HeliaWithLibp2p<M>) => {
      if (libp2p == null) {
        // no peer id passed: load it from (or create it in) the keychain
        if (opts.privateKey == null) {
          opts.privateKey = await loadOrCreateSelfKey(helia.datastore, opts.keychain)
        }
        opts.nodeInfo ??= {}
        opts.nodeInfo.name ??= helia.info.name
        opts.nodeInfo.version ??= helia.info.version
        opts.nodeInfo.userAgent ??= `${helia.info.name}/${helia.info.version} ${userAgent()}`
        opts.datastore ??= helia.datastore
        const node = libp2p = await createLibp2p(opts)

        // peers found by other routers go into the peer store, so they can be
        // dialled by peer id without another lookup
        const routing: Routing = helia.routing
        const findProviders = routing.findProviders.bind(routing)
        routing.findProviders = async function * (cid: CID, options?: RoutingOptions) {
          for await (const peer of findProviders(cid, options)) {
            if (peer.router !== 'libp2p-router') await remember(node, peer)
            yield peer
          }
        }
        const findPeer = routing.findPeer.bind(routing)
        routing.findPeer = async function (cid, options) {
          const peer = await findPeer(cid, options)
          if (peer.router !== 'libp2p-router') await remember(node, peer)
          return peer
        }
        const getClosestPeers = routing.getClosestPeers.bind(routing)
        routing.getClosestPeers = async function * (cid, options) {
          for await (const peer of getClosestPeers(cid, options)) {
            if (peer.router !== 'libp2p-router') await remember(node, peer)
            yield peer
          }
        }
      }

      try {
        if (!helia.hasRouter('libp2p-router')) helia.addRouter(new Libp2pRouter(libp2p))
        if (isLibp2p(helia.libp2p)) await helia.libp2p.start()
      } catch (err: any) {
        if (err.name !== 'NotStartedError') throw err
      }
    },
    stop: async () => {
      await libp2p?.stop()
    }
  })

  return helia as H & HeliaWithLibp2p<M>
}

async function remember (libp2p: Libp2p<any>, peer: { id: CID, multiaddrs: PeerInfo['multiaddrs'] }): Promise<void> {
  const id = peerIdFromCID(peer.id)
  await libp2p.peerStore.merge(id, { multiaddrs: peer.multiaddrs })
}

const toPeer = (info: PeerInfo): Peer => ({ ...info, id: info.id.toCID(), router: 'libp2p-router' })
const toProvider = (info: PeerInfo): Provider => ({ ...info, id: info.id.toCID(), router: 'libp2p-router', fallback: false })

/** '@helia/libp2p''s libp2p-router: Helia routing through libp2p's content and peer routing. */
class Libp2pRouter implements Router {
  readonly name = 'libp2p-router'
  private readonly libp2p: Libp2p<any>

  constructor (libp2p: Libp2p<any>) {
    this.libp2p = libp2p
  }

  async provide (cid: CID, options?: RoutingOptions): Promise<void> {
    await this.libp2p.contentRouting.provide(cid, options)
  }

  async cancelReprovide (key: CID, options?: RoutingOptions): Promise<void> {
    await this.libp2p.contentRouting.cancelReprovide(key, options)
  }

  async * findProviders (cid: CID, options?: RoutingOptions): AsyncGenerator<Provider> {
    for await (const info of this.libp2p.contentRouting.findProviders(cid, options)) yield toProvider(info)
  }

  async put (key: Uint8Array, value: Uint8Array, options?: RoutingOptions): Promise<void> {
    await this.libp2p.contentRouting.put(key, value, options)
  }

  async get (key: Uint8Array, options?: RoutingOptions): Promise<Uint8Array<ArrayBuffer>> {
    return withArrayBuffer(await this.libp2p.contentRouting.get(key, options))
  }

  async findPeer (peerId: CID, options?: RoutingOptions): Promise<Peer> {
    return toPeer(await this.libp2p.peerRouting.findPeer(peerIdFromCID(peerId), options))
  }

  async * getClosestPeers (key: Uint8Array, options?: RoutingOptions): AsyncGenerator<Peer> {
    for await (const info of this.libp2p.peerRouting.getClosestPeers(key, options)) yield toPeer(info)
  }

  toString (): string {
    return 'Libp2pRouter()'
  }
}
