/**
 * Run inside a network namespace made by webrtc.test.ts: the race of issue
 * 9, finding 1. Page A adds 200 pieces (20 entries) while page B is
 * starting; B records A as a companion over WebRTC; B's replica of A's
 * catalog must then hold all of them (it stayed empty in 4 of 5 runs: OrbitDB exchanges heads once, when it
 * sees a peer join the topic, and nothing retried). Repeated `ROUNDS` times
 * with fresh profiles. Prints one JSON line; exits non-zero on failure.
 */
import { createRelay } from '../../src/relay/relay.ts'
import { serve, launch, openDemo } from '../helpers/browser.ts'

const ROUNDS = Number(process.env.NPP_RACE_ROUNDS ?? 3)
const [siteDir] = process.argv.slice(2)
const relay = await createRelay()
const site = await serve(siteDir!)
const browser = await launch()
const report: { rounds: Array<Record<string, unknown>>, error?: string } = { rounds: [] }
try {
  const url = `${site.url}/?relay=${encodeURIComponent(`${relay.httpUrl}/config`)}`
  const open = async (): Promise<any> => await openDemo(browser, url)
  for (let round = 0; round < ROUNDS; round++) {
    const a = await open()
    const aId = await a.evaluate(() => (window as any).NPP.peerId)
    const started = Date.now()
    // A writes 200 pieces, 10 at a time (an entry each), while B opens
    const writing = a.evaluate(async (round: number) => {
      const npp = (window as any).NPP
      let n = 0
      while (n < 200) {
        await npp.addPieces(Array.from({ length: 10 }, (_, i) => ({ hash: `QmR${round}x${n + i}`, instrument: 'Piano' })))
        n += 10
      }
      return n
    }, round)
    const b = await open()
    await b.evaluate(async (aId: string) => {
      const npp = (window as any).NPP
      if ((await npp.getCompanions()).some((c: any) => c.nodeId === aId)) return
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error('no companion within 30 s')) }, 30_000)
        npp.addEventListener('db:discovered', (e: any) => { if (e.detail.nodeId === aId) { clearTimeout(timer); resolve() } })
      })
    }, aId)
    const written: number = await writing
    const discoveredMs = Date.now() - started
    // B's replica of A's catalog, waited for on its updates, 20 s at most
    const seen = await b.evaluate(async ({ aId, written }: { aId: string, written: number }) => {
      const npp = (window as any).NPP
      const count = async (): Promise<number> => (await npp.queryCatalog(() => true, { timeout: 2000 })).results.filter((r: any) => r.owner === aId).length
      const deadline = Date.now() + 20_000
      let n = await count()
      while (n < written && Date.now() < deadline) {
        await new Promise<void>(resolve => {
          const timer = setTimeout(resolve, deadline - Date.now())
          const onUpdate = (e: any): void => { if (e.detail.owner === aId) { clearTimeout(timer); npp.removeEventListener('catalog:update', onUpdate); resolve() } }
          npp.addEventListener('catalog:update', onUpdate)
        })
        n = await count()
      }
      const query = await npp.queryCatalog(() => true, { timeout: 2000 })
      return { n, source: query.sources.find((s: any) => s.owner === aId) }
    }, { aId, written })
    report.rounds.push({ round, discoveredMs, written, seen: seen.n, convergedMs: Date.now() - started, source: seen.source })
    await a.context().close()
    await b.context().close()
  }
  const failed = report.rounds.filter(r => r.seen !== r.written)
  if (failed.length > 0) throw new Error(`B's replica of A stayed behind in ${failed.length} of ${ROUNDS} rounds: ${JSON.stringify(failed)}`)
  process.stdout.write(JSON.stringify(report) + '\n')
} catch (err: any) {
  process.stdout.write(JSON.stringify({ ...report, error: String(err?.stack ?? err) }) + '\n')
  process.exitCode = 1
} finally {
  await browser.close()
  await relay.stop()
  await site.close()
}
