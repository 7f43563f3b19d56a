/**
 * Builds the Helia + libp2p + OrbitDB stack for a `NewPiecePlease`, or adopts
 * the parts the caller brought. Only what it built is stopped by `close()`.
 */
import { createLightHelia, withLibp2pLight } from './helia.ts'
import { withBitswap } from '@helia/bitswap'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { LevelBlockstore } from 'blockstore-level'
import { LevelDatastore } from 'datastore-level'
import * as dagCbor from '@ipld/dag-cbor'
import { createOrbitDB, KeyStore, Identities, MemoryStorage, LevelStorage, ComposedStorage, LRUStorage, IPFSBlockStorage } from '@orbitdb/core'
import { platform } from '../platform/node.ts'
import { joinPath } from '../utils/path.ts'
import { closeQuietly } from '../orbitdb/quiet-close.ts'
import { openOnce } from './open-once.ts'
import { EntryGuard } from '../orbitdb/entry-guard.ts'
import { DEFAULT_ICE_SERVERS, DEFAULT_PEERS_PER_ADDRESS } from '../constants.ts'
import { logger } from '../utils/logger.ts'
import { HubAnnouncer } from '../peering/hub-announce.ts'
import { crowdConnectionLimits, crowdScoreParams } from '../peering/crowd.ts'
import { inboundGate } from '../peering/inbound-gate.ts'
import type { OrbitDB, OpenOptions, OrbitDBDatabase, OrbitDBStorage } from '../orbitdb/types.ts'
import type { IceServer, NppHelia, NppLibp2p } from '../types.ts'

const log = logger('stack')
const dbLog = logger('sync')

/**
 * OrbitDB fetches a database's blocks one round trip at a time (manifest,
 * access controller, identity, then entries along their links), so bitswap's
 * batching delays add up: send wants and blocks at once, and answer a
 * want-have for any block up to 1 MiB with the block itself.
 */
export const BITSWAP_OPTIONS = {
  sendWantlistDebounce: 0,
  sendBlocksDebounce: 0,
  maxSizeReplaceHasWithBlock: 1024 * 1024
}

export interface StackInit {
  storage: 'persistent' | 'memory'
  directory: string
  listen: string[]
  pubsubDiscovery: boolean
  /** A relay is configured: add the platform's relay transports (circuit relay v2, WebRTC). Default false. */
  relay?: boolean
  /** WebRTC ICE servers. Default none (`DEFAULT_ICE_SERVERS`). */
  iceServers?: IceServer[]
  /**
   * Addresses the user configured (relay, bootstrap): dialable even where
   * the platform's gater would refuse them. Read on every dial, so addresses
   * added later count.
   */
  trusted?: string[]
  /** Peers expected behind one IP address (see `NewPiecePleaseInit.peersPerAddress`). @default DEFAULT_PEERS_PER_ADDRESS */
  peersPerAddress?: number
  helia?: NppHelia
  orbitdb?: OrbitDB
}

export interface Stack {
  helia: NppHelia
  libp2p: NppLibp2p
  orbitdb: OrbitDB
  /**
   * `orbitdb.open` with this stack's storage (memory mode keeps heads and
   * indexes in memory) and an `error` listener on the database's events:
   * OrbitDB emits sync failures there, and an unheard `error` event would
   * crash the process. One open per database (`open-once.ts`): concurrent
   * callers share the open in flight, each gets its own handle, and the
   * database is closed when the last handle is.
   */
  open<D extends OrbitDBDatabase>(address: string, options?: OpenOptions): Promise<D>
  /**
   * Checks every log entry the network sends to a database opened through
   * `open`, before OrbitDB applies it (`../orbitdb/entry-guard.ts`): its
   * `stats` and `entry:rejected` events say what it refused.
   */
  guard: EntryGuard
  close(): Promise<void>
}

export async function createStack (init: StackInit): Promise<Stack> {
  const closers: Array<() => Promise<void>> = []
  let helia: NppHelia
  let orbitdb: OrbitDB

  try {
    if (init.orbitdb != null) {
      orbitdb = init.orbitdb
      helia = orbitdb.ipfs as NppHelia
    } else {
      if (init.helia != null) {
        helia = init.helia
        if ((helia as any).status !== 'started') await helia.start()
      } else {
        helia = await createHelia(init, closers)
      }
      orbitdb = await createOrbit(helia, init, closers)
    }
  } catch (err) {
    await runClosers(closers)
    throw err
  }

  const guarded = new WeakSet<OrbitDBDatabase>()
  const libp2p = helia.libp2p as NppLibp2p
  if (libp2p.services.pubsub == null) {
    await runClosers(closers)
    throw new TypeError('the libp2p node needs a gossipsub service named "pubsub" (OrbitDB syncs through it)')
  }
  // runs first at close (closers run last first): cancels every lookup, so
  // no database's close waits on one
  const guard = new EntryGuard({ ipfs: helia as any, identities: orbitdb.identities, libp2p, identity: orbitdb.identity as any })
  guard.start()
  closers.push(async () => { await guard.stop() })

  return {
    helia,
    libp2p,
    orbitdb,
    // one open per database, shared by reference count (see open-once.ts)
    open: openOnce(async <D extends OrbitDBDatabase>(address: string, options: OpenOptions): Promise<D> => {
      // OrbitDB fetches missing entries with a 30 s timeout and close() waits
      // for them; this storage lets close() cancel those network reads first
      // (local writes are never cancelled)
      const closing = new AbortController()
      const inner = await ComposedStorage(await LRUStorage({ size: 1000 }), await IPFSBlockStorage({ ipfs: helia as any, pin: true }))
      const entryStorage: OrbitDBStorage = {
        ...inner,
        get: async (hash: string, signal?: AbortSignal) => await inner.get(hash, signal == null ? closing.signal : AbortSignal.any([signal, closing.signal]))
      }
      // sync starts once the entry guard is in place: nothing from the network reaches it unchecked
      const db = await orbitdb.open<D>(address, { entryStorage, ...options, sync: false })
      if (!guarded.has(db)) {
        guarded.add(db)
        guard.guard(db, closing.signal)
        db.events.on('error', (err: any) => { dbLog('%s: %s', db.address, err?.message ?? err) })
        const close = db.close
        db.close = async () => {
          closing.abort()
          await closeQuietly(close)
        }
      } else {
        await entryStorage.close()
      }
      if (options.sync !== false) await db.sync.start()
      return db
    }),
    guard,
    async close () {
      await runClosers(closers)
    }
  }
}

async function runClosers (closers: Array<() => Promise<void>>): Promise<void> {
  while (closers.length > 0) {
    const close = closers.pop()
    try {
      await close?.()
    } catch (err: any) {
      log.error('close failed: %s', err?.message ?? err)
    }
  }
}

async function createHelia (init: StackInit, closers: Array<() => Promise<void>>): Promise<NppHelia> {
  const crowd = init.peersPerAddress ?? DEFAULT_PEERS_PER_ADDRESS
  let blockstore, datastore
  if (init.storage === 'memory') {
    blockstore = new MemoryBlockstore()
    datastore = new MemoryDatastore()
  } else {
    const lock = await platform.lockStorage(init.directory)
    closers.push(async () => { await lock.release() })
    const bs = new LevelBlockstore(joinPath(init.directory, 'blocks'))
    const ds = new LevelDatastore(joinPath(init.directory, 'datastore'))
    await bs.open()
    closers.push(async () => { await bs.close() })
    await ds.open()
    closers.push(async () => { await ds.close() })
    blockstore = bs
    datastore = ds
  }

  const services: Record<string, any> = {
    identify: identify(),
    pubsub: gossipsub({
      // OrbitDB publishes updates whether or not anyone listens yet
      allowPublishToZeroTopicPeers: true,
      emitSelf: false,
      scoreParams: crowdScoreParams(crowd)
    })
  }

  const discovery = new HubAnnouncer()
  const light = await createLightHelia({
    blockstore,
    datastore,
    codecs: [dagCbor],
    // no gateways, no delegated routers: blocks come from connected peers only
    blockBrokers: [],
    routers: []
  })
  const transports = await platform.transports({ relay: init.relay ?? false, iceServers: init.iceServers ?? [...DEFAULT_ICE_SERVERS], listen: init.listen })
  // runs after libp2p has stopped (closers run last first)
  closers.push(transports.release)
  const limits = crowdConnectionLimits(crowd, platform.connectionLimits)
  const helia = withBitswap(withLibp2pLight(light, {
    addresses: { listen: init.listen },
    transports: transports.transports,
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: inboundGate(limits.gate, platform.connectionGater(init.trusted ?? [])),
    connectionManager: limits.connectionManager,
    peerDiscovery: init.pubsubDiscovery ? [discovery.discovery] : [],
    services
  } as any), BITSWAP_OPTIONS) as unknown as NppHelia

  await helia.start()
  closers.push(async () => { await helia.stop() })
  if (init.pubsubDiscovery) {
    discovery.start(helia.libp2p as NppLibp2p)
    closers.push(async () => { discovery.stop() })
  }
  log('helia started as %s (%s storage)', helia.libp2p.peerId.toString(), init.storage)
  return helia
}

async function createOrbit (helia: NppHelia, init: StackInit, closers: Array<() => Promise<void>>): Promise<OrbitDB> {
  const id = helia.libp2p.peerId.toString()
  let orbitdb: OrbitDB
  if (init.storage === 'memory') {
    const keystore = await KeyStore({ storage: await MemoryStorage() })
    const identities = await Identities({ keystore, ipfs: helia as any })
    orbitdb = await createOrbitDB({ ipfs: helia as any, id, identities, directory: joinPath(init.directory, 'orbitdb') })
    // memory means memory for every database, including ones a caller opens
    // through `npp.orbitdb` directly: heads and indexes never touch the disk
    const open = orbitdb.open
    orbitdb.open = async (address, options = {}) => await open(address, {
      headsStorage: await MemoryStorage(),
      indexStorage: await MemoryStorage(),
      ...options
    })
  } else {
    const directory = joinPath(init.directory, 'orbitdb')
    const keystore = await KeyStore({
      storage: await ComposedStorage(await LRUStorage({ size: 1000 }), await LevelStorage({ path: joinPath(directory, 'keystore') }))
    })
    const identities = await Identities({ keystore, ipfs: helia as any })
    // a stable id keeps the same OrbitDB identity (and so the same database addresses) across restarts
    orbitdb = await createOrbitDB({ ipfs: helia as any, id, identities, directory })
  }
  // orbitdb.stop() closes every database it opened and the keystore
  closers.push(async () => { await orbitdb.stop() })
  return orbitdb
}
