import { after } from 'node:test'
import { createRelay, type Relay, type RelayInit } from '../../src/relay/relay.ts'

const started: Relay[] = []

// registered when the test file imports this module: runs after all its tests
after(async () => {
  while (started.length > 0) await started.pop()?.stop().catch(() => {})
})

/** Start a relay (loopback, free ports unless `init` says otherwise); stopped after the test file. */
export async function relay (init: RelayInit = {}): Promise<Relay> {
  const r = await createRelay(init)
  started.push(r)
  return r
}

/** The relay's TCP multiaddr (for Node peers). */
export function tcpOf (r: Relay): string {
  const addr = r.config().multiaddrs.find(m => !m.includes('/ws'))
  if (addr == null) throw new Error(`relay ${r.peerId} has no TCP address`)
  return addr
}
