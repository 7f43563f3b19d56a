/**
 * Staying linked to companions: their online state (from libp2p's connection
 * events) and redials of the ones that are not connected.
 *
 * Companions are tagged `KEEP_ALIVE` in libp2p's peer store, so libp2p
 * itself keeps their connections, redials one that drops (its reconnect
 * queue, with back-off) and dials them when it starts. Beyond what libp2p
 * retries, a `repeatingTask` redials every `reconnectInterval` the
 * companions that are still not connected, each with its own exponential
 * back-off (capped at `maxBackoff`), for as long as the peer runs: a
 * companion away for hours is found again when it returns.
 */
import { KEEP_ALIVE, type Logger, type PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { repeatingTask, type RepeatingTask } from '@libp2p/utils'
import { tryMultiaddr } from '../utils/multiaddr.ts'
import { deadline } from '../utils/abort.ts'
import { MAX_COMPANION_MULTIADDRS } from '../constants.ts'
import type { NppComponents } from '../components.ts'
import type { CompanionRegister } from './register.ts'
import type { Companion, CompanionRecord } from '../types.ts'

/** The peer-store tag that keeps companions linked (libp2p treats every tag starting with `KEEP_ALIVE` so). */
export const COMPANION_TAG = `${KEEP_ALIVE}-npp-companion`

export interface CompanionLinksInit {
  /** Milliseconds between redial rounds. */
  reconnectInterval: number
  /** Longest back-off for a companion that keeps failing. */
  maxBackoff: number
  /** Bound of each redial. */
  dialTimeout: number
}

export interface CompanionLinksComponents extends Pick<NppComponents, 'libp2p' | 'events' | 'logger'> {
  register: CompanionRegister
}

type OnlineState = 'online' | 'offline' | 'unknown'

interface Backoff { failures: number, nextAttempt: number }

export class CompanionLinks {
  private readonly components: CompanionLinksComponents
  private readonly init: CompanionLinksInit
  private readonly log: Logger
  private readonly state = new Map<string, OnlineState>()
  private readonly backoff = new Map<string, Backoff>()
  private readonly task: RepeatingTask
  private shutdown = new AbortController()
  private running: Promise<void> | undefined
  private started = false
  /** Redials made since start (diagnostics and tests). */
  redials = 0

  constructor (components: CompanionLinksComponents, init: CompanionLinksInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('npp:companions:links')
    this.task = repeatingTask(async () => { await this.track(this.redial(false)) }, init.reconnectInterval, { runImmediately: true })
  }

  start (): void {
    if (this.started) return
    this.started = true
    this.shutdown = new AbortController()
    const { libp2p } = this.components
    libp2p.addEventListener('peer:connect', this.onPeerConnect)
    libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
    for (const [, record] of this.components.register.entries()) {
      void this.tag(record.nodeId)
      if (this.isConnected(record.nodeId)) this.setState(record.nodeId, 'online')
    }
    this.task.start()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.task.stop()
    this.shutdown.abort()
    const { libp2p } = this.components
    libp2p.removeEventListener('peer:connect', this.onPeerConnect)
    libp2p.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    await this.running
  }

  /** A companion was recorded (new, or re-verified): keep it linked and report its state. */
  recorded (record: CompanionRecord): void {
    void this.tag(record.nodeId)
    this.setState(record.nodeId, this.isConnected(record.nodeId) ? 'online' : 'offline')
  }

  /** A companion was removed from the register. */
  forgotten (peerId: string): void {
    this.state.delete(peerId)
    this.backoff.delete(peerId)
    void this.untag(peerId)
  }

  isConnected (peerId: string): boolean {
    const id = toPeerId(peerId)
    return id != null && this.components.libp2p.getConnections(id).length > 0
  }

  /** Where `peerId` is reachable now: the remote addresses of its unlimited (not relayed) connections. */
  addressesOf (peerId: string): string[] {
    const id = toPeerId(peerId)
    if (id == null) return []
    const addrs = new Set<string>()
    for (const conn of this.components.libp2p.getConnections(id)) {
      if (conn.limits == null) addrs.add(conn.remoteAddr.decapsulateCode(421).toString())
    }
    return [...addrs].slice(0, MAX_COMPANION_MULTIADDRS)
  }

  /** The addresses libp2p's peer store knows for `peerId`. */
  async knownAddresses (peerId: string): Promise<string[]> {
    const id = toPeerId(peerId)
    if (id == null) return []
    try {
      const peer = await this.components.libp2p.peerStore.get(id)
      return peer.addresses.map(a => a.multiaddr.toString()).slice(0, MAX_COMPANION_MULTIADDRS)
    } catch {
      return []
    }
  }

  /** Dial every companion that is not connected now, ignoring back-off. */
  /**
   * New addresses of a companion that is not connected were learned (a
   * keeper's introduction): dial it now instead of at its next back-off.
   */
  nudge (peerId: string): void {
    if (!this.started || this.isConnected(peerId)) return
    const address = this.components.register.addressOf(peerId)
    const record = address == null ? undefined : this.components.register.get(address)
    if (record == null) return
    this.backoff.delete(peerId)
    void this.dial(record)
  }

  async redialAll (signal?: AbortSignal): Promise<void> {
    await this.track(this.redial(true, signal))
  }

  private async track (work: Promise<void>): Promise<void> {
    const running = work.finally(() => { if (this.running === running) this.running = undefined })
    this.running = running
    await running
  }

  private async redial (force: boolean, signal?: AbortSignal): Promise<void> {
    const now = Date.now()
    const due = this.components.register.entries().map(([, r]) => r).filter(r => {
      if (this.isConnected(r.nodeId)) return false
      const b = this.backoff.get(r.nodeId)
      return force || b == null || b.nextAttempt <= now
    })
    await Promise.all(due.map(async record => { await this.dial(record, signal) }))
  }

  private async dial (record: CompanionRecord, signal?: AbortSignal): Promise<void> {
    if (this.shutdown.signal.aborted) return
    const { libp2p } = this.components
    const parent = signal == null ? this.shutdown.signal : AbortSignal.any([signal, this.shutdown.signal])
    const bound = deadline(this.init.dialTimeout, parent, `dialing companion ${record.nodeId}`)
    this.redials++
    try {
      const peerId = peerIdFromString(record.nodeId)
      const addrs = record.multiaddrs.flatMap(a => tryMultiaddr(a) ?? [])
      if (addrs.length > 0) await libp2p.peerStore.merge(peerId, { multiaddrs: addrs })
      await libp2p.dial(peerId, { signal: bound.signal })
      this.backoff.delete(record.nodeId)
      this.log('redialed companion %s', record.nodeId)
    } catch (err) {
      if (this.shutdown.signal.aborted) return
      const b = this.backoff.get(record.nodeId) ?? { failures: 0, nextAttempt: 0 }
      b.failures++
      const wait = Math.min(this.init.reconnectInterval * 2 ** (b.failures - 1), this.init.maxBackoff)
      b.nextAttempt = Date.now() + wait
      this.backoff.set(record.nodeId, b)
      this.log('companion %s not reachable (%d failure(s), next try in %d ms): %e', record.nodeId, b.failures, wait, bound.signal.aborted ? bound.reason() : err)
      this.setState(record.nodeId, 'offline')
    } finally {
      bound.clear()
    }
  }

  private async tag (peerId: string): Promise<void> {
    const id = toPeerId(peerId)
    if (id == null || !this.started) return
    try {
      await this.components.libp2p.peerStore.merge(id, { tags: { [COMPANION_TAG]: { value: 100 } } })
    } catch (err) {
      this.log.error('could not tag companion %s: %e', peerId, err)
    }
  }

  private async untag (peerId: string): Promise<void> {
    const id = toPeerId(peerId)
    if (id == null) return
    // `undefined` removes a tag in a merge
    await this.components.libp2p.peerStore.merge(id, { tags: { [COMPANION_TAG]: undefined } }).catch(() => {})
  }

  private companion (peerId: string): Companion | undefined {
    const address = this.components.register.addressOf(peerId)
    const record = address == null ? undefined : this.components.register.get(address)
    return address == null || record == null ? undefined : { ...record, address, online: this.isConnected(peerId) }
  }

  private setState (peerId: string, next: OnlineState): void {
    const previous = this.state.get(peerId) ?? 'unknown'
    if (previous === next) return
    this.state.set(peerId, next)
    const companion = this.companion(peerId)
    if (companion == null) return
    this.log('companion %s is %s', peerId, next)
    this.components.events.safeDispatchEvent(next === 'online' ? 'companion:online' : 'companion:offline', { detail: companion })
  }

  private readonly onPeerConnect = (evt: CustomEvent<PeerId>): void => {
    const peerId = evt.detail.toString()
    if (this.components.register.addressOf(peerId) == null) return
    this.backoff.delete(peerId)
    this.setState(peerId, 'online')
  }

  private readonly onPeerDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peerId = evt.detail.toString()
    if (this.components.register.addressOf(peerId) == null) return
    this.setState(peerId, 'offline')
  }
}

function toPeerId (peerId: string): PeerId | undefined {
  try {
    return peerIdFromString(peerId)
  } catch {
    return undefined
  }
}
