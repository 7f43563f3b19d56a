/** Practice counts per piece, over the grow-only `npp-counters` database. */
import { InvalidOptionError, describe } from '../errors.ts'
import { assertHash } from '../utils/validate.ts'
import { isPracticeIncrement, MAX_PRACTICE_INCREMENT } from '../counters/counters.ts'
import type { CountersDatabase } from '../counters/counters.ts'

export interface PracticeComponents {
  counters: CountersDatabase
}

export class Practice {
  private readonly db: CountersDatabase

  constructor (components: PracticeComponents) {
    this.db = components.counters
  }

  async getPracticeCount (hash: string): Promise<number> {
    assertHash(hash)
    return await this.db.value(hash)
  }

  async incrementPracticeCounter (hash: string, by = 1): Promise<number> {
    assertHash(hash)
    if (!isPracticeIncrement(by)) {
      throw new InvalidOptionError(`expected a positive integer increment of at most ${MAX_PRACTICE_INCREMENT}, got ${describe(by)}`)
    }
    return await this.db.increment(hash, by)
  }
}
