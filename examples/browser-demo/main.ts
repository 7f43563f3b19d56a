/**
 * The browser demo (first cut): starts a NewPiecePlease in the page, through
 * the relay given as `?relay=<config URL>` (default: a relay on this
 * machine), and exposes it as `window.NPP` for console scripting.
 */
import { createNewPiecePlease } from 'new-piece-please'

const $ = (id: string): HTMLElement => document.getElementById(id)!
const relay = new URLSearchParams(location.search).get('relay') ?? 'http://127.0.0.1:9090/config'

try {
  const npp = await createNewPiecePlease({ relay, directory: 'new-piece-please' })
  ;(window as any).NPP = npp
  $('peer-id').textContent = npp.peerId
  $('status').textContent = 'ready'
} catch (err: any) {
  $('status').textContent = 'failed'
  $('error').textContent = `${err?.name ?? 'Error'}: ${err?.message ?? err}`
}
