/**
 * Publishing to one peer's topic. Gossipsub drops a publish made before the
 * remote subscription is known (no recipients), so wait for the subscription
 * (`subscription-change`), publish, and retry a bounded number of times while
 * the peer is not among the recipients. No fixed sleeps.
 */
import delay from 'delay'
import type { PeerId } from '@libp2p/interface'
import { nextEvent } from '../utils/abort.ts'
import { TimeoutError } from '../errors.ts'

/** What publishing needs of gossipsub. */
export interface PubSubLike extends EventTarget {
  getSubscribers(topic: string): PeerId[]
  publish(topic: string, data: Uint8Array): Promise<{ recipients: PeerId[] }>
}

interface SubscriptionChange {
  peerId: PeerId
  subscriptions: Array<{ topic: string, subscribe: boolean }>
}

/** First retry back-off; doubles on every attempt (10, 20, 40 ms) up to `RETRY_MAX_MS`. */
const RETRY_BASE_MS = 10
/**
 * Longest back-off between publishes. The outbound stream usually opens
 * within a few hundred ms (over WebRTC); an uncapped doubling back-off
 * overshot that by up to as much again, and every discovery waited for it.
 */
const RETRY_MAX_MS = 50

export interface PublishToPeerOptions {
  signal: AbortSignal
  /** Publishes tried at most. */
  attempts: number
}

export async function waitForSubscription (pubsub: PubSubLike, topic: string, peer: PeerId, signal: AbortSignal): Promise<void> {
  if (pubsub.getSubscribers(topic).some(p => p.equals(peer))) return
  await nextEvent<SubscriptionChange>(pubsub, 'subscription-change', detail =>
    detail.peerId.equals(peer) && detail.subscriptions.some(s => s.topic === topic && s.subscribe), signal)
}

/** Publish `data` on `topic` until `peer` is among the recipients; resolves to the attempts used. */
export async function publishToPeer (pubsub: PubSubLike, topic: string, peer: PeerId, data: Uint8Array, options: PublishToPeerOptions): Promise<number> {
  for (let attempt = 1; attempt <= options.attempts; attempt++) {
    options.signal.throwIfAborted()
    await waitForSubscription(pubsub, topic, peer, options.signal)
    const { recipients } = await pubsub.publish(topic, data)
    if (recipients.some(p => p.equals(peer))) return attempt
    // the subscription is known but our outbound stream to the peer is still
    // opening (gossipsub has no event for that): retry with a short,
    // growing back-off, or as soon as the peer's subscriptions change
    const round = new AbortController()
    const signal = AbortSignal.any([options.signal, round.signal])
    try {
      await Promise.race([
        delay(Math.min(RETRY_BASE_MS * 2 ** (attempt - 1), RETRY_MAX_MS), { signal }),
        nextEvent<SubscriptionChange>(pubsub, 'subscription-change', d => d.peerId.equals(peer), signal)
      ])
    } finally {
      round.abort() // detach whichever lost the race
    }
  }
  throw new TimeoutError(`${peer.toString()} was not a recipient after ${options.attempts} attempts`)
}
