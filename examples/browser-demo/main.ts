/**
 * The browser demo: a catalog in the page, through the relay given as
 * `?relay=<config URL>` (default: a relay on this machine), with the keepers
 * its `/config` lists and any given as `?keeper=<multiaddr>` (repeatable).
 * Every control reports failures in the page; `window.NPP` is there for
 * console scripting.
 */
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { createNewPiecePlease, type NewPiecePlease, type OwnedPiece, type Piece, type ReplicaSync } from 'new-piece-please'

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T
const params = new URLSearchParams(location.search)
const relay = params.get('relay') ?? 'http://127.0.0.1:9090/config'
const keepers = params.getAll('keeper')
// one catalog (and peer id) per profile: tabs of one browser share IndexedDB,
// so a second peer in the same browser needs `?profile=<name>`
const profile = params.get('profile') ?? ''
const directory = profile === '' ? 'new-piece-please' : `new-piece-please-${profile}`
const short = (id: string): string => `…${id.slice(-8)}`

function showError (err: any): void {
  $('error').textContent = `${err?.name ?? 'Error'}: ${err?.message ?? err}`
}
function guarded (fn: () => Promise<void>): () => void {
  return () => { $('error').textContent = ''; fn().catch(showError) }
}
function item (...children: Array<Node | string>): HTMLLIElement {
  const li = document.createElement('li')
  li.append(...children)
  return li
}
function button (label: string, onClick: () => Promise<void>): HTMLButtonElement {
  const b = document.createElement('button')
  b.textContent = label
  b.addEventListener('click', guarded(onClick))
  return b
}
function span (text: string, className = ''): HTMLSpanElement {
  const s = document.createElement('span')
  s.textContent = text
  s.className = className
  return s
}

async function renderPieces (npp: NewPiecePlease): Promise<void> {
  const list = $('pieces')
  const pieces = await npp.getAllPieces()
  const rows = await Promise.all(pieces.map(async (piece: Piece) => {
    const count = await npp.getPracticeCount(piece.hash)
    const instrument = document.createElement('input')
    instrument.value = piece.instrument
    instrument.setAttribute('aria-label', `instrument of ${piece.hash}`)
    const li = item(
      span(`${typeof piece.title === 'string' && piece.title !== '' ? piece.title : piece.hash}`, 'grow'),
      instrument,
      button('Save', async () => { await npp.updatePieceByHash(piece.hash, instrument.value) }),
      button(`Practised ${count}×, +1`, async () => {
        await npp.incrementPracticeCounter(piece.hash)
        await renderPieces(npp) // counters are not catalog updates
      }),
      button('Delete', async () => { await npp.deletePieceByHash(piece.hash) })
    )
    li.dataset.hash = piece.hash
    return li
  }))
  list.replaceChildren(...rows)
}

/** The last `catalog:sync` state of each companion's replica, by owner. */
const syncStates = new Map<string, ReplicaSync>()

function syncView (state: ReplicaSync | undefined): HTMLElement {
  if (state?.state === 'syncing' && state.progress != null) {
    const bar = document.createElement('progress')
    bar.max = Math.max(1, state.progress.want)
    bar.value = Math.min(state.progress.have, bar.max)
    bar.title = `catching up: ${state.progress.have} of ${state.progress.want} entries`
    bar.className = 'sync'
    return bar
  }
  const text = state == null ? '' : state.state === 'synced' ? 'synced' : state.state === 'never' ? 'not synced yet' : state.state === 'unreachable' ? 'from its replica' : 'syncing'
  return span(text, 'sync muted')
}

async function renderCompanions (npp: NewPiecePlease): Promise<void> {
  const companions = await npp.getCompanions()
  $('companions').replaceChildren(...companions.map(c => {
    const li = item(
      span(`${c.username} (${short(c.nodeId)})`, 'grow'),
      // met through a keeper, never (yet) directly
      ...(c.introducedBy != null ? [span(`via keeper ${short(c.introducedBy)}`, 'muted introduced')] : []),
      syncView(syncStates.get(c.nodeId)),
      span(c.online ? 'online' : 'offline', c.online ? 'online' : 'offline')
    )
    li.dataset.peer = c.nodeId
    return li
  }))
}

/** Each keeper: whether it keeps our databases (or why not), and how many companions it introduced. */
function renderKeepers (npp: NewPiecePlease): void {
  const list = npp.keepers()
  $('keepers').textContent = list.length === 0
    ? 'keepers: none'
    : list.map(k => `keeper ${short(k.peerId)}: ${k.registered ? 'keeps us' : k.refused != null ? `refused (${k.refused})` : 'not asked yet'}, introduced ${k.introduced}`).join(' · ')
}

/** Connected peers and how: WebRTC (direct), relayed (signalling only), or WebSocket (the relay itself). */
async function renderPeers (npp: NewPiecePlease): Promise<void> {
  const names = new Map((await npp.getCompanions()).map(c => [c.nodeId, c.username]))
  const byPeer = new Map<string, string[]>()
  for (const c of npp.libp2p.getConnections()) {
    const addr = c.remoteAddr.toString()
    const how = addr.includes('/webrtc') ? 'WebRTC' : addr.includes('/p2p-circuit') ? 'relayed' : addr.includes('/ws') ? 'WebSocket' : 'direct'
    const id = c.remotePeer.toString()
    byPeer.set(id, [...(byPeer.get(id) ?? []), how])
  }
  $('peer-count').textContent = String(byPeer.size)
  $('peers').replaceChildren(...[...byPeer].map(([id, hows]) => {
    // a browser reaches only the relay over a plain WebSocket
    const name = names.get(id) ?? (hows.includes('WebSocket') ? 'relay' : 'peer')
    const li = item(span(`${name} (${short(id)})`, 'grow'), span([...new Set(hows)].join(' + '), 'muted'))
    li.dataset.peer = id
    return li
  }))
}

async function main (): Promise<void> {
  const debug = $<HTMLInputElement>('debug')
  debug.checked = localStorage.debug === 'npp:*'
  debug.addEventListener('change', () => { debug.checked ? localStorage.debug = 'npp:*' : localStorage.removeItem('debug') })

  const npp = await createNewPiecePlease({ relay, directory, keepers })
  ;(window as any).NPP = npp
  $('peer-id').textContent = npp.peerId
  $('username').textContent = String(await npp.getProfileField('username'))
  $('status').textContent = 'ready'

  // the relay link: the page works offline, and says when the relay is away and why
  const hubs = (): void => {
    $('hub').textContent = npp.hubs().map(h => h.connected ? `${h.kind}: linked` : `${h.kind}: not linked${h.lastError != null ? ` (${h.lastError})` : ''}, retrying`).join(' · ')
  }
  npp.addEventListener('hub:connected', hubs)
  npp.addEventListener('hub:disconnected', hubs)
  hubs()
  // keepers keep our catalog while this page is closed, and introduce the catalogs they keep
  const keeperView = (): void => { renderKeepers(npp) }
  for (const type of ['keeper:registered', 'keeper:refused', 'keeper:introduced'] as const) npp.addEventListener(type, keeperView)
  keeperView()
  // how far each companion's replica has followed its owner: a progress bar while it catches up
  npp.addEventListener('catalog:sync', (e) => { syncStates.set(e.detail.owner, e.detail); renderCompanions(npp).catch(showError) })

  const peers = (): void => { renderPeers(npp).catch(showError) }
  const refresh = (): void => { renderPieces(npp).catch(showError); renderCompanions(npp).catch(showError); peers() }
  for (const type of ['catalog:update', 'db:discovered', 'companion:online', 'companion:offline', 'peer:connect', 'peer:disconnect'] as const) {
    npp.addEventListener(type, refresh)
  }
  // a peer reached through the relay first gains its WebRTC link a moment later
  npp.libp2p.addEventListener('connection:open', peers)
  npp.libp2p.addEventListener('connection:close', peers)
  refresh()

  $('add-form').addEventListener('submit', (e) => {
    e.preventDefault()
    guarded(async () => {
      const title = $<HTMLInputElement>('add-title').value.trim()
      await npp.addNewPiece($<HTMLInputElement>('add-hash').value.trim(), $<HTMLInputElement>('add-instrument').value.trim(), title === '' ? undefined : { title })
      $<HTMLInputElement>('add-hash').value = ''
      $<HTMLInputElement>('add-title').value = ''
    })()
  })
  $<HTMLInputElement>('add-file').addEventListener('change', guarded(async () => {
    const file = $<HTMLInputElement>('add-file').files?.[0]
    if (file == null) return
    // the file's bytes as a raw block: its CID is the piece's hash
    const bytes = new Uint8Array(await file.arrayBuffer())
    const cid = CID.createV1(0x55, await sha256.digest(bytes))
    await npp.node.blockstore.put(cid, bytes)
    await npp.addNewPiece(cid.toString(), $<HTMLInputElement>('add-instrument').value.trim() || 'Piano', { title: file.name })
  }))

  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault()
    guarded(async () => {
      const instrument = $<HTMLInputElement>('search-instrument').value.trim()
      const title = $<HTMLInputElement>('search-title').value.trim().toLowerCase()
      const companions = new Map((await npp.getCompanions()).map(c => [c.nodeId, c.username]))
      const who = (owner: string): string => owner === npp.peerId ? 'me' : `${companions.get(owner) ?? ''} ${short(owner)}`.trim()
      const result = (r: OwnedPiece): HTMLLIElement => item(span(`${String(r.title ?? r.hash)} · ${r.instrument}`, 'grow'), span(`from ${who(r.owner)}`, 'muted'))
      // one line per source, filled in as each answers; results appear as they arrive
      const lines = new Map<string, HTMLSpanElement>()
      $('results').replaceChildren()
      const { results, complete } = await npp.queryCatalog((p) =>
        (instrument === '' || p.instrument === instrument) &&
        (title === '' || String(p.title ?? '').toLowerCase().includes(title)), {
        onProgress: (evt) => {
          if (evt.type === 'npp:query:start') {
            $('search-progress').replaceChildren(...evt.detail.sources.map(s => {
              const line = span(`${who(s.owner)}: asking${s.online ? '' : ' (offline: from its replica)'}…`)
              line.dataset.owner = s.owner
              lines.set(s.address, line)
              return item(line)
            }))
          } else {
            const { source, results, answered, total } = evt.detail
            const line = lines.get(source.address)
            if (line != null) line.textContent = `${who(source.owner)}: ${source.status}, ${source.count} in ${source.ms} ms${source.online ? '' : ' (offline: from its replica)'} [${answered}/${total}]`
            $('results').append(...results.map(result))
          }
        }
      })
      // the final list has duplicates removed (a piece seen through two sources of one owner)
      $('results').replaceChildren(...results.map(result))
      $('search-summary').textContent = `${results.length} result(s)${complete ? '' : ', some sources did not answer'}`
    })()
  })
}

main().catch((err) => {
  $('status').textContent = 'failed'
  showError(err)
  if (err?.name === 'StorageLockedError') {
    // this catalog is open in another tab: offer a second peer instead
    const next = new URLSearchParams(params)
    next.set('profile', Math.random().toString(36).slice(2, 8))
    const a = document.createElement('a')
    a.id = 'second-profile'
    a.href = `?${next.toString()}`
    a.textContent = 'open a second peer (its own catalog) in this tab'
    $('error').append(document.createElement('br'), a)
  }
})
