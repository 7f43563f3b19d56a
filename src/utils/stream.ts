/**
 * Reading a libp2p 3 stream to its end, reliably. The stream's async
 * iterator ends on the remote's `remoteCloseWrite` or on `close`, but data
 * that arrived before a reader was attached is dispatched later (a timer
 * after the protocol negotiation hands it over), and the remote's close may
 * have been announced in between: the iterator then waits for our own close
 * and never ends by itself; its `end` event can fire before a reader
 * attaches too (both seen reading OrbitDB heads right after `newStream`).
 * So the end is checked, not only awaited: the remote has closed its
 * writable end and nothing is left in the stream's read buffer.
 */
import type { Stream } from '@libp2p/interface'

export async function readToEnd (stream: Stream, options: { signal: AbortSignal, maxBytes: number }): Promise<Uint8Array[]> {
  const { signal, maxBytes } = options
  /** Nothing buffered and nothing more to come. */
  const ended = (): boolean => {
    const buffered = (stream as unknown as { readBuffer?: { byteLength: number } }).readBuffer?.byteLength ?? 0
    return buffered === 0 && (stream.remoteWriteStatus === 'closed' || stream.readStatus === 'closed' || stream.status !== 'open')
  }
  return await new Promise<Uint8Array[]>((resolve, reject) => {
    const chunks: Uint8Array[] = []
    let bytes = 0
    let settled = false
    const finish = (err?: unknown): void => {
      if (settled) return
      settled = true
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('end', onEnd)
      stream.removeEventListener('remoteCloseWrite', onRemoteClose)
      stream.removeEventListener('close', onClose)
      signal.removeEventListener('abort', onAbort)
      if (err != null) reject(err)
      else resolve(chunks)
    }
    const onMessage = (evt: Event): void => {
      const data = (evt as Event & { data: { subarray(): Uint8Array } }).data.subarray()
      bytes += data.byteLength
      if (bytes > maxBytes) {
        const err = new Error(`the remote sent more than ${maxBytes} bytes`)
        stream.abort(err)
        finish(err)
        return
      }
      chunks.push(data)
      if (ended()) finish()
    }
    const onEnd = (): void => { finish() }
    const onRemoteClose = (): void => { if (ended()) finish() }
    const onClose = (evt: Event): void => { finish((evt as Event & { error?: Error }).error) }
    const onAbort = (): void => {
      stream.abort(signal.reason instanceof Error ? signal.reason : new Error('aborted'))
      finish(signal.reason)
    }
    stream.addEventListener('message', onMessage)
    stream.addEventListener('end', onEnd)
    stream.addEventListener('remoteCloseWrite', onRemoteClose)
    stream.addEventListener('close', onClose)
    signal.addEventListener('abort', onAbort, { once: true })
    // it may have ended before we listened
    if (ended()) finish()
  })
}
