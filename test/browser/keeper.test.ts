/**
 * Keepers in Chromium (issue 11): two pages that are never open at the same
 * time share catalogs through a Node keeper the pages dial over WebSockets
 * on loopback (a keeper is dialed directly: sync does not run over a
 * relayed connection).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { Browser } from 'playwright-core'
import { createRelay, type Relay } from '../../src/relay/relay.ts'
import { createNewPiecePlease, type NewPiecePlease } from '../../src/index.ts'
import { tempDir, until } from '../helpers/peers.ts'
import { buildDemo, serve, launch, openDemo } from '../helpers/browser.ts'

describe('keepers in Chromium', () => {
  let browser: Browser
  let relay: Relay
  let keeper: NewPiecePlease
  let site: { url: string, close(): Promise<void> }

  before(async () => {
    const out = await tempDir()
    await buildDemo(out)
    ;[site, relay, browser, keeper] = await Promise.all([
      serve(out),
      createRelay(),
      launch(),
      createNewPiecePlease({ storage: 'memory', listen: ['/ip4/127.0.0.1/tcp/0/ws'], keeper: { open: true } })
    ])
  })
  after(async () => {
    await browser?.close()
    await keeper?.stop()
    await relay?.stop()
    await site?.close()
  })

  it('page A writes and closes; page B, opened afterwards, finds A through the keeper and searches A\'s latest pieces', async () => {
    const keeperAddr = keeper.getMultiaddrs().find(a => a.includes('/ws'))
    assert.ok(keeperAddr != null, 'the keeper listens on WebSockets')
    const url = (profile: string): string => `${site.url}/?relay=${encodeURIComponent(`${relay.httpUrl}/config`)}&keeper=${encodeURIComponent(keeperAddr)}&profile=${profile}`

    const a = await openDemo(browser, url('a'))
    const aId = await a.textContent('#peer-id')
    await a.evaluate(async () => {
      const npp = (window as any).NPP
      await npp.addNewPiece('QmPageA1', 'Ukulele')
      await npp.addNewPiece('QmPageALatest', 'Ukulele', { title: 'the latest' })
    })
    // the page says when the keeper keeps it (after it synced A's catalog)
    await a.locator('#keepers', { hasText: 'keeps us' }).waitFor({ timeout: 30_000 })
    // the latest write is on the keeper before A goes
    await a.evaluate(async () => { await (window as any).NPP.addNewPiece('QmPageAFinal', 'Ukulele', { title: 'written last' }) })
    // what the keeper keeps of A (its replicas are bare logs: it does not search them)
    const onKeeper = (): number | undefined => keeper.keeperService?.kept().find(k => k.peerId === aId)?.pieces
    await until(keeper, 'keeper:kept', () => onKeeper() === 3, 30_000)
    await a.evaluate(async () => { await (window as any).NPP.stop() })
    await a.context().close()

    const b = await openDemo(browser, url('b'))
    // A is shown as a companion that came by introduction
    await b.locator(`#companions li[data-peer="${aId}"] .introduced`).waitFor({ timeout: 30_000 })
    // its replica follows the keeper's copy: asked again on each update, bounded
    const found = await b.evaluate(async (owner) => {
      const npp = (window as any).NPP
      const ask = async (): Promise<{ hashes: string[], status: string }> => {
        const { results, sources } = await npp.queryCatalog({ instrument: 'Ukulele' })
        return { hashes: results.filter((r: any) => r.owner === owner).map((r: any) => r.hash).sort(), status: sources.find((s: any) => s.owner === owner)?.status }
      }
      const deadline = Date.now() + 30_000
      let answer = await ask()
      // all three pieces, and the replica known to be synced (its own check against the keeper, `catalog:sync`)
      while ((answer.hashes.length < 3 || answer.status !== 'ok') && Date.now() < deadline) {
        await new Promise<void>(resolve => {
          const done = (): void => {
            clearTimeout(timer)
            npp.removeEventListener('catalog:update', done)
            npp.removeEventListener('catalog:sync', done)
            resolve()
          }
          const timer = setTimeout(done, deadline - Date.now())
          npp.addEventListener('catalog:update', done)
          npp.addEventListener('catalog:sync', done)
        })
        answer = await ask()
      }
      return answer
    }, aId)
    assert.deepEqual(found, { hashes: ['QmPageA1', 'QmPageAFinal', 'QmPageALatest'], status: 'ok' })
    await b.evaluate(async () => { await (window as any).NPP.stop() })
  })
})
