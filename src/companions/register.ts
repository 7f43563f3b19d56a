/**
 * The `companions` register: one record per companion, keyed by the
 * companion's user-db address, kept in memory and persisted in the own
 * `companions` key-value database.
 */
import { isOrbitDBAddress, isPeerIdString } from '../utils/validate.ts'
import type { Logger } from '@libp2p/interface'
import type { NppComponents } from '../components.ts'
import type { KeyValueDatabase } from '../orbitdb/types.ts'
import type { CompanionRecord } from '../types.ts'

export interface CompanionRegisterComponents extends Pick<NppComponents, 'logger'> {
  register: KeyValueDatabase<CompanionRecord>
}

export class CompanionRegister {
  private readonly db: KeyValueDatabase<CompanionRecord>
  private readonly records = new Map<string, CompanionRecord>()
  private readonly log: Logger

  constructor (components: CompanionRegisterComponents) {
    this.db = components.register
    this.log = components.logger.forComponent('npp:companions:register')
  }

  /** Read the persisted records (malformed ones are logged and skipped). */
  async load (): Promise<void> {
    for (const { key, value } of await this.db.all()) {
      if (isCompanionRecord(value)) this.records.set(key, value)
      else this.log.error('ignoring malformed companion record %s', key)
    }
  }

  get size (): number {
    return this.records.size
  }

  get (address: string): CompanionRecord | undefined {
    return this.records.get(address)
  }

  entries (): Array<[string, CompanionRecord]> {
    return [...this.records]
  }

  /** The user-db address recorded for `peerId`, if it is a companion. */
  addressOf (peerId: string): string | undefined {
    for (const [address, record] of this.records) {
      if (record.nodeId === peerId) return address
    }
    return undefined
  }

  /** Record (or replace) a companion, in memory at once and then on disk. */
  async set (address: string, record: CompanionRecord): Promise<void> {
    this.records.set(address, record)
    await this.db.put(address, record)
  }

  async delete (address: string): Promise<void> {
    this.records.delete(address)
    await this.db.del(address).catch((err: unknown) => { this.log.error('could not remove companion %s: %e', address, err) })
  }
}

export function isCompanionRecord (value: unknown): value is CompanionRecord {
  const r = value as CompanionRecord
  return r != null && isPeerIdString(r.nodeId) && isOrbitDBAddress(r.pieces) &&
    typeof r.username === 'string' && Array.isArray(r.multiaddrs) && r.multiaddrs.every(a => typeof a === 'string') &&
    typeof r.lastSeen === 'number' && (r.identity === undefined || typeof r.identity === 'string')
}
