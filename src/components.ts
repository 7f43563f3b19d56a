/**
 * What every part of a `NewPiecePlease` is built from. As in js-libp2p and
 * Helia, a part takes `(components, init)`: `components` are its
 * collaborators (the stack, the shared event target, a logger), `init` its
 * typed options. Parts tell what happened by dispatching typed events on
 * `components.events` (the `NewPiecePlease` instance itself), never through
 * callbacks threaded through their init.
 */
import type { TypedEventTarget } from 'main-event'
import type { ComponentLogger } from '@libp2p/interface'
import type { OrbitDB } from './orbitdb/types.ts'
import type { Stack } from './stack/stack.ts'
import type { NewPiecePleaseEvents, NppHelia, NppLibp2p } from './types.ts'

export interface NppComponents {
  helia: NppHelia
  libp2p: NppLibp2p
  orbitdb: OrbitDB
  /** `orbitdb.open` with this stack's storage and guards (see `Stack.open`). */
  open: Stack['open']
  /** The shared event target: the `NewPiecePlease` instance. */
  events: TypedEventTarget<NewPiecePleaseEvents>
  logger: ComponentLogger
}

/** A part with a lifecycle. `start()` and `stop()` are safe to call twice. */
export interface Startable {
  start(): Promise<void> | void
  stop(): Promise<void> | void
}
