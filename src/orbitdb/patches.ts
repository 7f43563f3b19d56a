/**
 * Every place this library changes how OrbitDB works from the inside, with
 * why and the version it was checked against (`@orbitdb/core` 4.0.0). The
 * other three are `quiet-close.ts` (OrbitDB's `console.error` of reads that our
 * own close cancels), the entry storage in `../stack/stack.ts` whose
 * network reads a close can cancel, and `entry-guard.ts` (entries from the
 * network checked before OrbitDB applies them: a gossipsub topic validator,
 * OrbitDB's heads exchange streams filtered through `libp2p.handle` and
 * `libp2p.dialProtocol`, and the access controller's `canAppend` replaced).
 */
import type { OrbitDBDatabase } from './types.ts'

interface AppendOptions { referencesCount?: number }
type Append = (data: unknown, options?: AppendOptions) => Promise<unknown>

/**
 * Cap the back-references (`refs`) of every entry `db` appends at
 * `limit()`. `Database.addOperation` appends through `db.log.append` inside
 * its own queue and always asks for 16 refs; a receiver re-reads and
 * re-verifies every entry a new entry refers to, which for big batch
 * entries made one live update cost ~200 ms on a 10,000-piece catalog
 * instead of ~15 ms. (OrbitDB 4.0.0: `src/database.js` addOperation,
 * `src/oplog/log.js` append.)
 */
export function limitReferences (db: OrbitDBDatabase, limit: () => number): void {
  const log = db.log as unknown as { append: Append }
  const append = log.append
  log.append = async (data, options = {}) => await append(data, { ...options, referencesCount: Math.min(options.referencesCount ?? 16, limit()) })
}

/** What `deliverHeads` needs of gossipsub: an event target that OrbitDB's `Sync` listens to. */
interface PubsubTarget { dispatchEvent(event: Event): boolean }

/**
 * Hand heads read from a peer to the OrbitDB database `address`, as if they
 * had arrived as that database's pubsub updates: OrbitDB's `Sync` listens to
 * gossipsub's `message` events, keeps those whose `topic` is the database
 * address, decodes `data` and applies it through the database's own queue
 * (`log.joinEntry`, which fetches every missing entry behind it, then the
 * database's `onUpdate` and `update` event). There is no public way to apply
 * a remote head; this reuses the exact path a live update takes. Other
 * listeners of `message` (OrbitDB's other databases, discovery) filter on
 * their own topics. (OrbitDB 4.0.0: `src/sync.js` handleUpdateMessage,
 * `src/database.js` applyOperation.)
 */
export function deliverHeads (pubsub: PubsubTarget, address: string, from: unknown, heads: Uint8Array[]): void {
  for (const data of heads) {
    pubsub.dispatchEvent(new CustomEvent('message', { detail: { type: 'signed', topic: address, from, data, sequenceNumber: 0n } }))
  }
}
