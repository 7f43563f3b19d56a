/**
 * The profile (the `user` database): free-form fields beside the ones the
 * library manages (`nodeId`, `pieces`, `counters`), which callers may read
 * but not write; `username` may be changed but not removed.
 */
import { InvalidProfileFieldError } from '../errors.ts'
import { assertProfileKey, assertProfileValue, READ_ONLY_PROFILE_KEYS } from '../utils/validate.ts'
import type { KeyValueDatabase } from '../orbitdb/types.ts'
import type { JsonValue } from '../types.ts'

export interface ProfileComponents {
  user: KeyValueDatabase<JsonValue>
}

export class Profile {
  private readonly db: KeyValueDatabase<JsonValue>

  constructor (components: ProfileComponents) {
    this.db = components.user
  }

  async getAllProfileFields (): Promise<Record<string, JsonValue>> {
    return Object.fromEntries((await this.db.all()).map(({ key, value }) => [key, value]))
  }

  async getProfileField (key: string): Promise<JsonValue | undefined> {
    assertProfileKey(key)
    return await this.db.get(key)
  }

  async updateProfileField (key: string, value: JsonValue): Promise<void> {
    assertProfileKey(key)
    assertProfileValue(key, value)
    await this.db.put(key, value)
  }

  async deleteProfileField (key: string): Promise<void> {
    assertProfileKey(key)
    if (READ_ONLY_PROFILE_KEYS.has(key) || key === 'username') {
      throw new InvalidProfileFieldError(`profile field "${key}" cannot be deleted`)
    }
    await this.db.del(key)
  }
}
