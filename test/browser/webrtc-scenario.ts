/**
 * Run inside a network namespace made by webrtc.test.ts (loopback plus an
 * internal veth pair): a relay and the demo site on 127.0.0.1, two Chromium
 * pages that find each other through the relay and link over WebRTC, and a
 * Node peer (the core library, in this process) that both pages find.
 * Prints one JSON line with what it observed; exits non-zero on failure.
 */
import { createRelay } from '../../src/relay/relay.ts'
import { createNewPiecePlease, type NewPiecePlease } from '../../src/index.ts'
import { serve, launch, openDemo } from '../helpers/browser.ts'

const [siteDir] = process.argv.slice(2)
const relay = await createRelay()
const site = await serve(siteDir!)
const browser = await launch()
const report: Record<string, unknown> = {}
let node: NewPiecePlease | undefined
try {
  const url = `${site.url}/?relay=${encodeURIComponent(`${relay.httpUrl}/config`)}`
  const open = async (): Promise<any> => await openDemo(browser, url)
  const a = await open()
  await a.evaluate(async () => {
    const npp = (window as any).NPP
    await npp.addPieces(Array.from({ length: 200 }, (_, i) => ({ hash: `QmA${i}`, instrument: i % 2 === 0 ? 'Piano' : 'Viola' })))
  })
  const aId = await a.evaluate(() => (window as any).NPP.peerId)
  const started = Date.now()
  const b = await open()
  report.loadToReadyMs = Date.now() - started
  await b.evaluate(async () => { await (window as any).NPP.addPieces(Array.from({ length: 20 }, (_, i) => ({ hash: `QmB${i}`, instrument: 'Piano' }))) })
  // B records A as a companion (discovery through the relay, then our protocol over WebRTC)
  await b.evaluate(async (aId: string) => {
    const npp = (window as any).NPP
    if ((await npp.getCompanions()).some((c: any) => c.nodeId === aId)) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('no companion within 30 s')) }, 30_000)
      npp.addEventListener('db:discovered', (e: any) => { if (e.detail.nodeId === aId) { clearTimeout(timer); resolve() } })
    })
  }, aId)
  report.discoveryMs = Date.now() - started
  const all = await b.evaluate(async (aId: string) => (await (window as any).NPP.queryCatalog((p: any) => true, { timeout: 20_000 })).results.filter((r: any) => r.owner === aId).length, aId)
  report.allFromA = all
  report.seeAll200Ms = Date.now() - started
  report.connections = await b.evaluate((aId: string) => (window as any).NPP.libp2p.getConnections().filter((c: any) => c.remotePeer.toString() === aId).map((c: any) => ({ addr: c.remoteAddr.toString(), limited: c.limits != null })), aId)
  const t = Date.now()
  const query = await b.evaluate(async () => await (window as any).NPP.queryCatalog({ instrument: 'Piano' }, { timeout: 20_000 }))
  report.queryMs = Date.now() - t
  report.fromA = query.results.filter((r: any) => r.owner === aId).length
  report.aId = aId

  if (process.env.NPP_SCENARIO_BASELINE != null) {
    // for the benchmark: 200 pieces as raw OrbitDB Documents (an entry per
    // piece) and as our catalog (batched), both written in A and replicated
    // by B over the same WebRTC link in the same run
    const addresses = await a.evaluate(async () => {
      const npp = (window as any).NPP
      const docs = Array.from({ length: 200 }, (_, i) => ({ hash: `QmBase${i}`, instrument: i % 2 === 0 ? 'Piano' : 'Viola' }))
      const raw = await npp.orbitdb.open('baseline-raw', { type: 'documents' })
      for (const d of docs) await raw.put({ _id: d.hash, ...d })
      const ours = await npp.orbitdb.open('baseline-ours', { type: 'npp-catalog' })
      await ours.batch({ put: docs })
      return { raw: raw.address, ours: ours.address }
    })
    for (const kind of ['raw', 'ours'] as const) {
      report[`replicate200${kind === 'raw' ? 'Raw' : 'Ours'}Ms`] = await b.evaluate(async (address: string) => {
        const t = performance.now()
        const db = await (window as any).NPP.orbitdb.open(address)
        while ((await db.all()).length < 200) await new Promise(resolve => db.events.once('update', resolve))
        const ms = performance.now() - t
        await db.close()
        return ms
      }, addresses[kind])
    }
  }

  // a Node peer joins through the same relay: both pages find it and link to it over WebRTC
  const pages = [a, b]
  const pageIds = [aId, await b.evaluate(() => (window as any).NPP.peerId)]
  const t3 = Date.now()
  node = await createNewPiecePlease({ relay: `${relay.httpUrl}/config`, storage: 'memory', username: 'node-peer' })
  const nodeId = node.peerId
  // listen first, then look: a discovery that happened in between is in the register
  const pagesSeeNode = pages.map(async page => {
    await page.evaluate(async (id: string) => {
      await new Promise<void>((resolve, reject) => {
        const npp = (window as any).NPP
        const timer = setTimeout(() => { reject(new Error('no Node companion within 60 s')) }, 60_000)
        npp.addEventListener('db:discovered', (e: any) => { if (e.detail.nodeId === id) { clearTimeout(timer); resolve() } })
        npp.getCompanions().then((cs: any[]) => { if (cs.some(c => c.nodeId === id)) { clearTimeout(timer); resolve() } }, reject)
      })
    }, nodeId)
  })
  await node.addPieces(Array.from({ length: 30 }, (_, i) => ({ hash: `QmNode${i}`, instrument: 'Piano' })))
  const nodeSeesPages = Promise.all(pageIds.map(async id => {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`Node peer did not record page ${id} within 60 s`)) }, 60_000)
      node!.addEventListener('db:discovered', (e) => { if (e.detail.nodeId === id) { clearTimeout(timer); resolve() } })
      node!.getCompanions().then(cs => { if (cs.some(c => c.nodeId === id)) { clearTimeout(timer); resolve() } }, reject)
    })
  }))
  await Promise.all([...pagesSeeNode, nodeSeesPages])
  report.nodeDiscoveryMs = Date.now() - t3
  report.nodeConnections = await Promise.all(pages.map(async page => await page.evaluate((id: string) => (window as any).NPP.libp2p.getConnections().filter((c: any) => c.remotePeer.toString() === id).map((c: any) => ({ addr: c.remoteAddr.toString(), limited: c.limits != null })), nodeId)))
  const fromNode = await b.evaluate(async (id: string) => (await (window as any).NPP.queryCatalog({ instrument: 'Piano' }, { timeout: 20_000 })).results.filter((r: any) => r.owner === id).length, nodeId)
  report.fromNode = fromNode
  const nodeQuery = await node.queryCatalog({ instrument: 'Piano' }, { timeout: 20_000 })
  report.nodeFromPages = pageIds.map(id => nodeQuery.results.filter(r => r.owner === id).length)

  // the same search clicked in B's page: a line per source as it answers, results with owners, and the peers it is linked to
  await b.fill('#search-instrument', 'Piano')
  await b.click('#search-button')
  await b.locator('#search-summary', { hasText: 'result(s)' }).waitFor({ timeout: 20_000 })
  report.pageProgress = await b.locator('#search-progress li').allTextContents()
  report.pageSummary = await b.textContent('#search-summary')
  report.pagePeers = await b.locator('#peers li').allTextContents()
  report.pageResultsFromNode = await b.locator('#results li', { hasText: 'from node-peer' }).count()

  // A's tab closes: B still answers on time from its replica, and shows A offline
  const offline = b.evaluate(async (aId: string) => await new Promise<void>((resolve, reject) => {
    const npp = (window as any).NPP
    const timer = setTimeout(() => { reject(new Error('A not offline within 30 s')) }, 30_000)
    npp.addEventListener('companion:offline', (e: any) => { if (e.detail.nodeId === aId) { clearTimeout(timer); resolve() } })
  }), aId)
  const aContext = a.context() // the same profile (and IndexedDB) serves A's return below
  await a.close()
  await offline
  const t2 = Date.now()
  const whileAway = await b.evaluate(async () => await (window as any).NPP.queryCatalog({ instrument: 'Piano' }, { timeout: 3000 }))
  report.offlineQueryMs = Date.now() - t2
  report.offlineFromA = whileAway.results.filter((r: any) => r.owner === aId).length
  report.offlineSourceOnline = whileAway.sources.find((s: any) => s.owner === aId)?.online
  // and B's page says so where a person looks
  const aRow = b.locator('#companions li', { hasText: aId.slice(-8) })
  await aRow.locator('.offline').waitFor({ timeout: 10_000 })
  report.pageShowsAOffline = true

  // A comes back in the same browser profile: same peer id and data, and B sees it online again
  const back = b.evaluate(async (aId: string) => await new Promise<void>((resolve, reject) => {
    const npp = (window as any).NPP
    const timer = setTimeout(() => { reject(new Error('A not back online within 30 s')) }, 30_000)
    npp.addEventListener('companion:online', (e: any) => { if (e.detail.nodeId === aId) { clearTimeout(timer); resolve() } })
  }), aId)
  const a2 = await aContext.newPage()
  await a2.goto(url)
  await a2.waitForFunction(() => document.getElementById('status')?.textContent === 'ready', undefined, { timeout: 30_000 })
  report.reloadedSameId = (await a2.textContent('#peer-id')) === aId
  report.reloadedPieces = await a2.evaluate(async () => (await (window as any).NPP.getAllPieces()).length)
  // its companions register came back from IndexedDB too (B's replica is queryable before any reconnect)
  report.reloadedKnowsB = await a2.evaluate(async (bId: string) => (await (window as any).NPP.getCompanions()).some((c: any) => c.nodeId === bId), pageIds[1])
  await back
  report.backOnline = true
  await aRow.locator('.online').waitFor({ timeout: 10_000 })
  report.pageShowsAOnline = true
  process.stdout.write(JSON.stringify(report) + '\n')
} catch (err: any) {
  process.stdout.write(JSON.stringify({ ...report, error: String(err?.stack ?? err) }) + '\n')
  process.exitCode = 1
} finally {
  const step = (what: string): void => { if (process.env.NPP_SCENARIO_TRACE != null) process.stderr.write(`[scenario] ${what}\n`) }
  step(`stopping the Node peer: ${JSON.stringify(node?.libp2p.getConnections().map(c => [c.remoteAddr.toString().slice(-70), c.status]))}`)
  await node?.stop()
  step('closing the browser')
  await browser.close()
  step('stopping the relay')
  await relay.stop()
  await site.close()
  step('done')
  if (process.env.NPP_SCENARIO_TRACE != null) setTimeout(() => { step(`still alive: ${JSON.stringify(process.getActiveResourcesInfo())}`) }, 3000).unref()
}
