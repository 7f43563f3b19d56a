import type { ConnectionGater } from '@libp2p/interface'

/** What differs between Node and browsers when a stack is built. */
export interface PlatformDefaults {
  name: 'node' | 'browser'
  /** Listen addresses used when `init.listen` is not given. */
  defaultListen: readonly string[]
  transports(): any[]
  connectionGater(): ConnectionGater | undefined
  extraServices(): Record<string, any>
}
