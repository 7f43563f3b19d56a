/**
 * Run inside a network namespace made by webrtc.test.ts (loopback plus an
 * internal veth pair): a relay and the demo site on 127.0.0.1, two Chromium
 * pages that find each other through the relay and link over WebRTC.
 * Prints one JSON line with what it observed; exits non-zero on failure.
 */
import { createRelay } from '../../src/relay/relay.ts'
import { serve, launch } from '../helpers/browser.ts'

const [siteDir] = process.argv.slice(2)
const relay = await createRelay()
const site = await serve(siteDir!)
const browser = await launch()
const report: Record<string, unknown> = {}
try {
  const url = `${site.url}/?relay=${encodeURIComponent(`${relay.httpUrl}/config`)}`
  const open = async (): Promise<any> => {
    const page = await (await browser.newContext()).newPage()
    page.on('console', msg => { if (msg.type() === 'error' || process.env.NPP_PAGE_DEBUG != null) process.stderr.write(`[page ${Date.now() % 100000}] ${msg.text()}\n`) })
    if (process.env.NPP_PAGE_DEBUG != null) await page.addInitScript((d: string) => { localStorage.debug = d }, process.env.NPP_PAGE_DEBUG)
    await page.goto(url)
    await page.waitForFunction(() => ['ready', 'failed'].includes(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 30_000 })
    const status = await page.textContent('#status')
    if (status !== 'ready') throw new Error(`page failed: ${await page.textContent('#error')}`)
    return page
  }
  const a = await open()
  await a.evaluate(async () => {
    const npp = (window as any).NPP
    await npp.addPieces(Array.from({ length: 200 }, (_, i) => ({ hash: `QmA${i}`, instrument: i % 2 === 0 ? 'Piano' : 'Viola' })))
  })
  const aId = await a.evaluate(() => (window as any).NPP.peerId)
  const started = Date.now()
  const b = await open()
  report.loadToReadyMs = Date.now() - started
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
  report.connections = await b.evaluate((aId: string) => (window as any).NPP.libp2p.getConnections().filter((c: any) => c.remotePeer.toString() === aId).map((c: any) => ({ addr: c.remoteAddr.toString(), limited: c.limits != null })), aId)
  const t = Date.now()
  const query = await b.evaluate(async () => await (window as any).NPP.queryCatalog({ instrument: 'Piano' }, { timeout: 20_000 }))
  report.queryMs = Date.now() - t
  report.fromA = query.results.filter((r: any) => r.owner === aId).length
  report.aId = aId

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
  await back
  report.backOnline = true
  process.stdout.write(JSON.stringify(report) + '\n')
} catch (err: any) {
  process.stdout.write(JSON.stringify({ ...report, error: String(err?.stack ?? err) }) + '\n')
  process.exitCode = 1
} finally {
  await browser.close()
  await relay.stop()
  await site.close()
}
