/**
 * Node defaults: TCP transport, LevelDB storage under `directory`.
 * The browser build swaps this module for `./browser.ts` (package.json
 * `imports` map), so nothing here is bundled for web apps.
 */
import { tcp } from '@libp2p/tcp'
import type { PlatformDefaults } from './types.ts'
import { DEFAULT_LISTEN } from '../constants.ts'

export const platform: PlatformDefaults = {
  name: 'node',
  defaultListen: DEFAULT_LISTEN,
  transports: () => [tcp()],
  connectionGater: () => undefined,
  extraServices: () => ({})
}
