/**
 * The keeper benchmark's fixture (bench/keeper.ts): a keeper directory that
 * already keeps `users` users of `pieces` pieces each, built in one process
 * instead of by `users` live peers registering.
 *
 * The keeper's own stack is built from the directory (`createStack`, its own
 * databases through `openOwnDatabases`, as `NewPiecePlease` does), and each
 * user is written into the same blockstore and OrbitDB directory by an
 * OrbitDB instance of its own on that Helia: a fresh libp2p Ed25519 key (its
 * peer id), a throwaway OrbitDB identity for that peer id (keystore in
 * memory), and the databases a user's `NewPiecePlease` writes: `pieces` (an
 * `npp-catalog` written with one `batch()`), `counters` (a few increments)
 * and `user` (nodeId, pieces, counters, username and the proof signed with
 * the user's own libp2p key). Then the keeper's `companions` register gets
 * the record verification would have written, so a keeper started from the
 * directory keeps and introduces these users as if they had registered.
 *
 * Fixtures are cached under os.tmpdir() by users and pieces; a bigger one is
 * built from the biggest smaller one with the same pieces (copied, then the
 * missing users added). A run works on a copy (`copyFixture`): a keeper
 * writes to its directory.
 *
 *   node --conditions=npp-source bench/keeper-fixture.ts <users> <pieces>
 *     prints {"fixture":{...}} once the fixture exists
 */
import { cp, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createOrbitDB, Identities, IPFSAccessController, KeyStore, KeyValue, MemoryStorage } from '@orbitdb/core'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import '../src/index.ts' // registers the npp-catalog and npp-counters database types
import { createStack } from '../src/stack/stack.ts'
import { openOwnDatabases, closeOwnDatabases, catalogFactory } from '../src/library/databases.ts'
import { CATALOG_TYPE } from '../src/catalog/catalog.ts'
import { Counters, type CountersDatabase } from '../src/counters/counters.ts'
import { signProfile, PROOF_KEY } from '../src/companions/proof.ts'
import { PIECES_DB, USER_DB, COUNTERS_DB } from '../src/constants.ts'
import type { CompanionRecord } from '../src/types.ts'

/** Bumped when what a fixture holds changes: older caches are not used. */
/** 2: databases in the shared store (src/stack/shared-storage.ts); 3: the keeper's saved usage of each user */
const FIXTURE_VERSION = 3
/** Users written at once (the work is signing and encoding: 2 CPUs). */
const CONCURRENCY = 4
const INSTRUMENTS = ['Piano', 'Cello', 'Flute', 'Harp']

export interface FixtureUser {
  peerId: string
  userDb: string
  catalog: string
  /** Every piece hash of this user starts with it. */
  prefix: string
}

export interface Fixture {
  directory: string
  users: number
  pieces: number
  keeperPeerId: string
  list: FixtureUser[]
  /** Seconds spent building (the users this fixture added to its base). */
  buildSeconds: number
  /** The cached fixture it was built from, if any. */
  base?: string
  /** Read from the cache (not built by this call). */
  cached?: boolean
}

/**
 * Where fixtures are cached. `NPP_KEEPER_FIXTURE_TAG` names the source tree
 * that wrote them (bench/keeper.ts sets it for `--tree`): a prototype that
 * stores databases differently needs fixtures written by its own code.
 */
export const fixtureRoot = (): string => join(tmpdir(), `npp-keeper-fixture-v${FIXTURE_VERSION}${process.env.NPP_KEEPER_FIXTURE_TAG == null ? '' : `-${process.env.NPP_KEEPER_FIXTURE_TAG}`}`)
const fixtureDir = (users: number, pieces: number): string => join(fixtureRoot(), `u${users}-p${pieces}`)

/** A user's pieces: `pieces` of them, each hash starting with its prefix. */
export function userPieces (prefix: string, pieces: number): Array<Record<string, string>> {
  return Array.from({ length: pieces }, (_, i) => ({
    hash: `${prefix}${i.toString(36).padStart(5, '0')}`,
    instrument: INSTRUMENTS[i % INSTRUMENTS.length]!,
    title: `Piece ${i}`,
    composer: `Composer ${i % 50}`
  }))
}

async function readFixture (directory: string): Promise<Fixture | undefined> {
  try {
    return { ...JSON.parse(await readFile(join(directory, 'fixture.json'), 'utf8')), directory }
  } catch {
    return undefined
  }
}

/** The cached fixture of `users` x `pieces`, built (from the biggest smaller one) when missing. */
export async function keeperFixture (users: number, pieces: number, log: (line: string) => void = () => {}): Promise<Fixture> {
  const target = fixtureDir(users, pieces)
  const cached = await readFixture(target)
  if (cached != null) return { ...cached, cached: true }
  await mkdir(fixtureRoot(), { recursive: true })
  let base: Fixture | undefined
  for (const name of await readdir(fixtureRoot())) {
    const m = /^u(\d+)-p(\d+)$/.exec(name)
    if (m == null || Number(m[2]) !== pieces || Number(m[1]) >= users) continue
    const f = await readFixture(join(fixtureRoot(), name))
    if (f != null && (base == null || f.users > base.users)) base = f
  }
  const building = `${target}.building-${process.pid}`
  await rm(building, { recursive: true, force: true })
  if (base != null) {
    await cp(base.directory, building, { recursive: true })
    await rm(join(building, 'fixture.json'))
  }
  log(`building ${users} users x ${pieces} pieces${base == null ? '' : ` from the ${base.users}-user fixture`} in ${building}`)
  const t0 = performance.now()
  const made = await addUsers(building, base?.list ?? [], users, pieces, log)
  const fixture: Fixture = { ...made, directory: target, users, pieces, buildSeconds: (performance.now() - t0) / 1000, base: base?.directory }
  const { directory: _, ...stored } = fixture
  await writeFile(join(building, 'fixture.json'), JSON.stringify(stored))
  await rename(building, target)
  return fixture
}

/** Write users `have.length` to `users - 1` into the keeper directory `directory` and record them in its register. */
async function addUsers (directory: string, have: FixtureUser[], users: number, pieces: number, log: (line: string) => void): Promise<{ keeperPeerId: string, list: FixtureUser[] }> {
  const stack = await createStack({ storage: 'persistent', directory, listen: [], pubsubDiscovery: false })
  const { helia, libp2p, orbitdb } = stack
  const own = await openOwnDatabases({ open: stack.open, orbitdb, libp2p }, { memory: false, username: 'keeper' })
  const list = [...have]
  // what a running keeper saves of each user (KeeperService, `keeper-usage`), so the keeper starts as it would after running
  const usage = await stack.localStorage('keeper-usage')
  // the users' databases are written by OrbitDBs of their own: stored where the keeper's stack keeps its databases
  const wrap = (options: any): any => (stack as any).withStorage?.(options) ?? options
  try {
    let next = have.length
    const worker = async (): Promise<void> => {
      for (let n = next++; n < users; n = next++) {
        const { usage: used, ...user } = await writeUser(helia, join(directory, 'orbitdb'), n, pieces, wrap)
        await usage.put(user.peerId, new TextEncoder().encode(JSON.stringify(used)))
        const record: CompanionRecord = { nodeId: user.peerId, pieces: user.catalog, username: `musician-${n}`, multiaddrs: [], lastSeen: Date.now() }
        await own.companions.put(user.userDb, record)
        list[n] = user
        if ((n + 1) % 50 === 0) log(`  ${n + 1} users`)
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    return { keeperPeerId: libp2p.peerId.toString(), list }
  } finally {
    await closeOwnDatabases(own)
    await stack.close()
  }
}

/** One user's three databases, written by its own OrbitDB identity on the keeper's Helia and closed again. */
async function writeUser (helia: any, directory: string, n: number, pieces: number, wrap: (options: any) => any): Promise<FixtureUser & { usage: { pieces: number, bytes: number, lastUpdate: number, counters: string } }> {
  const key = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(key).toString()
  const keystore = await KeyStore({ storage: await MemoryStorage() })
  const identities = await Identities({ keystore, ipfs: helia })
  const orbit = await createOrbitDB({ ipfs: helia, id: peerId, identities, directory })
  const ownOnly = (): any => IPFSAccessController({ write: [orbit.identity.id] })
  const prefix = `Qm${n.toString(36)}-`
  try {
    const catalog = await orbit.open(PIECES_DB, wrap({ type: CATALOG_TYPE, Database: catalogFactory(false), AccessController: ownOnly(), sync: false })) as any
    const counters = await orbit.open(COUNTERS_DB, wrap({ type: Counters.type, Database: Counters(), AccessController: ownOnly(), sync: false })) as unknown as CountersDatabase
    const user = await orbit.open(USER_DB, wrap({ type: 'keyvalue', Database: KeyValue(), AccessController: ownOnly(), sync: false })) as any
    const list = userPieces(prefix, pieces)
    await catalog.batch({ put: list })
    for (let i = 0; i < 3; i++) await counters.increment(list[i % list.length]?.hash ?? 'none')
    await user.put('nodeId', peerId)
    await user.put('pieces', catalog.address)
    await user.put('counters', counters.address)
    await user.put('username', `musician-${n}`)
    await user.put(PROOF_KEY, await signProfile(key, peerId, user.address, orbit.identity.id))
    // as the keeper measures it: the bytes of every entry of the three logs
    let bytes = 0
    for (const db of [catalog, counters, user]) {
      for await (const entry of db.log.iterator()) bytes += (await db.log.storage.get(entry.hash) as Uint8Array | undefined)?.byteLength ?? 0
    }
    const made = { peerId, userDb: user.address, catalog: catalog.address, prefix, usage: { pieces, bytes, lastUpdate: Date.now(), counters: counters.address } }
    await Promise.all([catalog.close(), counters.close(), user.close()])
    return made
  } finally {
    await orbit.stop()
  }
}

/** A working copy of `fixture` (a keeper writes to its directory). */
export async function copyFixture (fixture: Fixture, to: string): Promise<Fixture> {
  await cp(fixture.directory, to, { recursive: true })
  return { ...fixture, directory: to }
}

if (import.meta.filename === process.argv[1]) {
  const [users, pieces] = process.argv.slice(2).map(Number)
  if (!Number.isInteger(users) || !Number.isInteger(pieces)) throw new TypeError('usage: keeper-fixture.ts <users> <pieces>')
  const fixture = await keeperFixture(users!, pieces!, line => { process.stderr.write(line + '\n') })
  process.stdout.write(JSON.stringify({ fixture: { ...fixture, list: undefined } }) + '\n')
}
