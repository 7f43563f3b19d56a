/**
 * Errors of the keeper command (`npx new-piece-please keeper`), beside the
 * library's own in `../errors.ts`; same conventions: one class per failure,
 * a stable `name` (and `code`).
 */
import { NewPiecePleaseError } from '../errors.ts'

/**
 * The keeper's configuration could not be used: an option, the `--config`
 * file, or a file in its directory (`keeper.json`, `admin-token`).
 */
export class KeeperConfigError extends NewPiecePleaseError {
  override name = 'KeeperConfigError'
}

/**
 * An admin call to a running keeper failed (`keeper allow` / `keeper deny`):
 * it could not be reached, refused the token (`status` 401), or answered
 * another error (`status`).
 */
export class KeeperAdminError extends NewPiecePleaseError {
  override name = 'KeeperAdminError'
  /** The HTTP status the keeper answered, when it answered. */
  readonly status?: number
  constructor (message: string, status?: number) {
    super(message)
    if (status != null) this.status = status
  }
}
