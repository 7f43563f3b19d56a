/**
 * A hostile peer built the way someone on the same network would build one
 * (issue 10): raw libp2p, a Helia node on it and OrbitDB, not this library.
 * Nothing here is imported from src/: what a peer of this library sends is
 * written out by hand, as an attacker reading its source would write it.
 *
 * What it knows of the protocol (src/peering/discovery.ts,
 * src/companions/verify.ts, src/library/databases.ts):
 * - every peer subscribes to the gossipsub topic named after its own peer id;
 *   a peer announces itself by publishing `{"userDb":"<address>"}` (JSON, one
 *   key) there, signed with its own key, over a direct connection;
 * - a user db is an OrbitDB `keyvalue` store with fixed writers (the IPFS
 *   access controller) holding `nodeId` (the announcing peer id), `pieces`
 *   (the address of its catalog), `username` and `proof`, the peer key's
 *   signature over the user db and its writer (src/companions/proof.ts);
 * - a catalog is an `npp-catalog` or a plain `documents` store indexed by
 *   `hash`, written by the same identity as the user db.
 *
 * Loopback only, an OS-chosen port, its OrbitDB directory under the OS temp
 * dir; `stop()` stops and removes everything it made.
 */
import { after } from 'node:test'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, type Identify } from '@libp2p/identify'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { PublishConfigType } from '@libp2p/gossipsub/types'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { createHeliaLight, type Helia } from 'helia'
import { withBitswap } from '@helia/bitswap'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import * as dagCbor from '@ipld/dag-cbor'
import { multiaddr } from '@multiformats/multiaddr'
import { fromString, toString } from 'uint8arrays'
import { createOrbitDB, KeyValue, Documents, IPFSAccessController } from '@orbitdb/core'
import type { Connection, PeerId, PrivateKey } from '@libp2p/interface'

/** The only address an attacker listens on in tests: loopback, a free port. */
const LOOPBACK = ['/ip4/127.0.0.1/tcp/0']

export type AttackerLibp2p = Libp2p<{ identify: Identify, pubsub: GossipSub }>

/** A libp2p node and the key behind its peer id (libp2p keeps its own out of reach). */
export interface AttackerNode {
  libp2p: AttackerLibp2p
  privateKey: PrivateKey
}

/** A bare libp2p node as an attacker makes them by the hundred: TCP, noise, yamux, identify, gossipsub. */
export async function bareNode (): Promise<AttackerNode> {
  const privateKey = await generateKeyPair('Ed25519')
  const libp2p = await createLibp2p({
    privateKey,
    addresses: { listen: LOOPBACK },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      // OrbitDB publishes whether or not anyone listens yet
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false })
    }
  })
  return { libp2p, privateKey }
}

/** The announcement a peer publishes on another peer's topic, byte for byte as the library writes it. */
export function announcement (userDb: string): Uint8Array {
  return fromString(JSON.stringify({ userDb }))
}

/**
 * The proof a profile carries that the peer `peerId` (whose key is
 * `privateKey`) wrote the user db `userDb` with the OrbitDB identity
 * `identity`: `{ v: 1, userDb, identity, signature }`, the signature
 * (base64url) over these four lines.
 */
export async function profileProof (privateKey: PrivateKey, peerId: string, userDb: string, identity: string): Promise<Record<string, string | number>> {
  const text = `new-piece-please/profile-proof/v1\n${peerId}\n${userDb}\n${identity}`
  const signature = await privateKey.sign(fromString(text))
  return { v: 1, userDb, identity, signature: toString(signature, 'base64url') }
}

/** Resolve once `pubsub` knows that `peer` is subscribed to `topic`; reject after `ms`. */
export async function seesSubscriber (pubsub: GossipSub, topic: string, peer: string, ms = 10_000): Promise<void> {
  const has = (): boolean => pubsub.getSubscribers(topic).some(p => p.toString() === peer)
  if (has()) return
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      pubsub.removeEventListener('subscription-change', check)
      reject(new Error(`${peer} not seen subscribed to ${topic} within ${ms} ms`))
    }, ms)
    const check = (): void => {
      if (!has()) return
      clearTimeout(timer)
      pubsub.removeEventListener('subscription-change', check)
      resolve()
    }
    pubsub.addEventListener('subscription-change', check)
  })
}

/**
 * Publish `data` on `topic` until `peer` is among the recipients, as a peer
 * of the library does. Gossipsub drops a publish made before the remote
 * subscription is known, and sends nothing to a subscriber whose stream is
 * still opening (no event says when it is open): so first wait for the
 * subscription, then retry a bounded number of times, with a back-off
 * growing from 10 to 50 ms. Resolves to the publishes made.
 */
export async function publishTo (pubsub: GossipSub, topic: string, peer: string, data: Uint8Array, { ms = 10_000, attempts = 60 } = {}): Promise<number> {
  const deadline = Date.now() + ms
  for (let attempt = 1; attempt <= attempts; attempt++) {
    await seesSubscriber(pubsub, topic, peer, Math.max(1, deadline - Date.now()))
    const { recipients } = await pubsub.publish(topic, data)
    if (recipients.some(p => p.toString() === peer)) return attempt
    if (Date.now() >= deadline) break
    await delay(Math.min(10 * 2 ** (attempt - 1), 50))
  }
  throw new Error(`${peer} was not a recipient on ${topic} after ${attempts} publishes or ${ms} ms`)
}

/**
 * Publish `data` on `topic` signed with `privateKey` (a message `from` a peer
 * id the attacker just made up) over `pubsub`'s own connections. Gossipsub
 * signs with its node's key only; swapping its publish config for one
 * publish is how a flooder signs with as many keys as it likes.
 */
export async function publishAs (pubsub: GossipSub, privateKey: PrivateKey, topic: string, data: Uint8Array): Promise<{ recipients: PeerId[] }> {
  const internals = pubsub as unknown as { publishConfig: unknown }
  const own = internals.publishConfig
  internals.publishConfig = { type: PublishConfigType.Signing, author: peerIdFromPrivateKey(privateKey), key: publicKeyToProtobuf(privateKey.publicKey), privateKey }
  try {
    return await pubsub.publish(topic, data)
  } finally {
    internals.publishConfig = own
  }
}

export interface AttackerInit {
  /** Written as the profile's `username`. @default 'attacker' */
  username?: string
}

/** An OrbitDB database as the attacker uses them (untyped: OrbitDB ships no types). */
export type Db = any

/** A raw libp2p + Helia + OrbitDB node. */
export class Attacker {
  readonly libp2p: AttackerLibp2p
  /** The key behind its peer id. */
  readonly privateKey: PrivateKey
  readonly helia: Helia
  readonly orbitdb: any
  private readonly directory: string
  private readonly username: string
  private readonly extra: AttackerNode[] = []
  private ownCatalog?: Db
  private ownProfile?: Db
  private stopped?: Promise<void>

  private constructor (parts: AttackerNode & { helia: Helia, orbitdb: any, directory: string, username: string }) {
    this.libp2p = parts.libp2p
    this.privateKey = parts.privateKey
    this.helia = parts.helia
    this.orbitdb = parts.orbitdb
    this.directory = parts.directory
    this.username = parts.username
  }

  static async create (init: AttackerInit = {}): Promise<Attacker> {
    const directory = await mkdtemp(join(tmpdir(), 'npp-attacker-'))
    const { libp2p, privateKey } = await bareNode()
    let helia: Helia | undefined
    try {
      // helia's light node: no routers, no gateways (createHelia's defaults
      // would contact public hosts); blocks come over bitswap from connected
      // peers only, and the libp2p node is the one made above
      helia = createHeliaLight({ blockstore: new MemoryBlockstore(), datastore: new MemoryDatastore(), codecs: [dagCbor], blockBrokers: [], routers: [] })
      Object.defineProperty(helia, 'libp2p', { value: libp2p, enumerable: true })
      withBitswap(helia as any, { sendWantlistDebounce: 0, sendBlocksDebounce: 0 })
      await helia.start()
      const orbitdb = await createOrbitDB({ ipfs: helia, directory: join(directory, 'orbitdb') })
      return new Attacker({ libp2p, privateKey, helia, orbitdb, directory, username: init.username ?? 'attacker' })
    } catch (err) {
      await helia?.stop().catch(() => {})
      await Promise.resolve(libp2p.stop()).catch(() => {})
      await rm(directory, { recursive: true, force: true })
      throw err
    }
  }

  get peerId (): string {
    return this.libp2p.peerId.toString()
  }

  get pubsub (): GossipSub {
    return this.libp2p.services.pubsub
  }

  /** Open a connection to `addr` (a multiaddr ending in /p2p/<peer id>). */
  async dial (addr: string, ms = 10_000): Promise<Connection> {
    return await this.libp2p.dial(multiaddr(addr), { signal: AbortSignal.timeout(ms) })
  }

  /** A database of its own with fixed writers: by default only its own identity. */
  async open (name: string, type: 'keyvalue' | 'documents' | 'events' = 'keyvalue', write: string[] = [this.orbitdb.identity.id]): Promise<Db> {
    const Database = type === 'documents' ? Documents({ indexBy: 'hash' }) : type === 'keyvalue' ? KeyValue() : undefined
    const db = await this.orbitdb.open(name, { type, ...(Database != null ? { Database } : {}), AccessController: IPFSAccessController({ write }) })
    // OrbitDB emits sync failures (a victim that stops mid-exchange) as
    // 'error' events, and an unheard one is thrown: the attacker does not care
    db.events.on('error', () => {})
    return db
  }

  /**
   * A user db as a peer of the library writes it, by this attacker's OrbitDB
   * identity: `nodeId` (this node unless said), `pieces`, `username`, and the
   * proof signed with `key` (this node's key unless said; a sybil's for a
   * sybil's profile; none with `key: null`).
   */
  async profile (name: string, fields: { nodeId?: string, pieces: string, username?: string, key?: PrivateKey | null }): Promise<Db> {
    const db = await this.open(name, 'keyvalue')
    const nodeId = fields.nodeId ?? this.peerId
    await db.put('nodeId', nodeId)
    await db.put('pieces', fields.pieces)
    await db.put('username', fields.username ?? this.username)
    const key = fields.key === undefined ? this.privateKey : fields.key
    if (key != null) await db.put('proof', await profileProof(key, nodeId, db.address, this.orbitdb.identity.id))
    return db
  }

  /** Its own catalog (a `documents` store indexed by `hash`, which the library accepts) and the profile pointing at it, made once. */
  async companionDbs (): Promise<{ catalog: Db, profile: Db }> {
    this.ownCatalog ??= await this.open('pieces', 'documents')
    this.ownProfile ??= await this.profile('user', { pieces: this.ownCatalog.address })
    return { catalog: this.ownCatalog, profile: this.ownProfile }
  }

  /**
   * What a peer of the library does when it connects: publish its user db on
   * `peer`'s topic (named after its peer id). The caller dials first and
   * waits for whatever shows the announcement was taken in.
   */
  async announce (peer: string, userDb?: string, options?: { ms?: number, attempts?: number }): Promise<number> {
    const address = userDb ?? (await this.companionDbs()).profile.address
    return await publishTo(this.pubsub, peer, peer, announcement(address), options)
  }

  /** Publish raw bytes on `peer`'s own topic, once its subscription is known and until it is a recipient. */
  async send (peer: string, data: Uint8Array | string, options?: { ms?: number, attempts?: number }): Promise<number> {
    return await publishTo(this.pubsub, peer, peer, typeof data === 'string' ? fromString(data) : data, options)
  }

  /** A bare libp2p node, stopped with this attacker (a sybil's peer id, a flooder's second connection). */
  async node (): Promise<AttackerNode> {
    const node = await bareNode()
    this.extra.push(node)
    return node
  }

  /** Stop everything it made and remove its directory; safe to call twice. */
  async stop (): Promise<void> {
    this.stopped ??= (async () => {
      await Promise.allSettled(this.extra.map(async node => { await node.libp2p.stop() }))
      await this.orbitdb.stop().catch(() => {})
      await this.helia.stop().catch(() => {})
      await Promise.resolve(this.libp2p.stop()).catch(() => {})
      await rm(this.directory, { recursive: true, force: true })
    })()
    await this.stopped
  }
}

const started: Attacker[] = []

// registered when the test file imports this module: runs after all its tests
after(async () => {
  while (started.length > 0) await started.pop()?.stop().catch(() => {})
})

/** A raw attacker on loopback; stopped after the test file even if a test fails. */
export async function attacker (init: AttackerInit = {}): Promise<Attacker> {
  const a = await Attacker.create(init)
  started.push(a)
  return a
}

/** A peer id as `PeerId`, for raw libp2p calls. */
export function peerIdOf (id: string): PeerId {
  return peerIdFromString(id)
}
