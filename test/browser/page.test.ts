import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { copyFile } from 'node:fs/promises'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { createRelay, type Relay } from '../../src/relay/relay.ts'
import { tempDir } from '../helpers/peers.ts'
import { buildDemo, serve, launch, launchWithProfile } from '../helpers/browser.ts'

/** The library in real headless Chromium: the demo page against a relay on loopback. */
describe('in Chromium', () => {
  let browser: Browser
  let relay: Relay
  let site: { url: string, close(): Promise<void> }

  before(async () => {
    const out = await tempDir()
    await buildDemo(out)
    ;[site, relay, browser] = await Promise.all([serve(out), createRelay(), launch()])
  })
  after(async () => {
    await browser?.close()
    await relay?.stop()
    await site?.close()
  })

  // the page may only load from loopback (WebSocket and WebRTC traffic is
  // kept there by the library's settings: the relay's loopback address, no STUN)
  const offLoopback: string[] = []
  const loopbackOnly = async (context: BrowserContext): Promise<BrowserContext> => {
    await context.route('**/*', async route => {
      const host = new URL(route.request().url()).hostname
      if (host === '127.0.0.1' || host === 'localhost' || host === '[::1]') return await route.continue()
      offLoopback.push(route.request().url())
      await route.abort()
    })
    return context
  }
  const newPage = async (): Promise<Page> => await (await loopbackOnly(await browser.newContext())).newPage()
  after(() => { assert.deepEqual(offLoopback, [], 'requests off loopback') })

  const open = async (relayUrl: string, page?: Page): Promise<Page> => {
    const p = page ?? await newPage()
    await p.goto(`${site.url}/?relay=${encodeURIComponent(relayUrl)}`)
    await p.waitForFunction(() => ['ready', 'failed'].includes(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 30_000 })
    return p
  }

  it('starts through the relay over WebSockets, exposes window.NPP, and keeps peer id, pieces, profile, counters across a reload and a browser restart', async (t) => {
    const profile = await tempDir()
    let context = await loopbackOnly(await launchWithProfile(profile))
    const started = Date.now()
    const page = await open(`${relay.httpUrl}/config`, context.pages()[0] ?? await context.newPage())
    t.diagnostic(`page load to ready: ${Date.now() - started} ms`)
    assert.equal(await page.textContent('#status'), 'ready', await page.textContent('#error') ?? '')
    const peerId = await page.textContent('#peer-id')
    assert.match(peerId ?? '', /^12D3KooW/)
    assert.equal(await page.evaluate(() => (window as any).NPP.peerId), peerId)
    // ready means its own catalog is open; the relay link is shown as it comes up
    await page.locator('#hub', { hasText: 'relay: linked' }).waitFor({ timeout: 10_000 })
    const peers = await (await fetch(`${relay.httpUrl}/peers`)).json()
    assert.ok(peers.some((p: any) => p.peerId === peerId && p.addr.includes('/ws')), 'connected to the relay over WebSockets')
    await page.evaluate(async () => {
      const npp = (window as any).NPP
      await npp.addNewPiece('QmFromTheBrowser', 'Kalimba')
      await npp.updateProfileField('username', 'kalimba-kid')
      await npp.incrementPracticeCounter('QmFromTheBrowser')
      await npp.incrementPracticeCounter('QmFromTheBrowser')
    })
    const kept = async (p: Page): Promise<void> => {
      assert.equal(await p.textContent('#peer-id'), peerId)
      assert.equal(await p.textContent('#username'), 'kalimba-kid')
      assert.deepEqual(await p.evaluate(async () => await (window as any).NPP.getPieceByHash('QmFromTheBrowser')), { hash: 'QmFromTheBrowser', instrument: 'Kalimba' })
      assert.equal(await p.evaluate(async () => await (window as any).NPP.getPracticeCount('QmFromTheBrowser')), 2)
    }

    // a reload: IndexedDB keeps the identity and every database
    await page.evaluate(async () => { await (window as any).NPP.stop() })
    await open(`${relay.httpUrl}/config`, page)
    await kept(page)

    // a browser restart with the same profile, without a clean stop first
    await context.close()
    context = await loopbackOnly(await launchWithProfile(profile))
    await kept(await open(`${relay.httpUrl}/config`, context.pages()[0] ?? await context.newPage()))
    await context.close()
  })

  it('the demo\'s controls work when clicked (add, file, edit, practise, search, delete), on a phone-sized screen', async (t) => {
    const page = await open(`${relay.httpUrl}/config`)
    await page.setViewportSize({ width: 390, height: 844 })
    assert.equal(await page.textContent('#status'), 'ready')
    await page.fill('#add-hash', 'QmClick1')
    await page.fill('#add-title', 'Clair de lune')
    await page.fill('#add-instrument', 'Piano')
    await page.click('#add-button')
    const row = page.locator('li[data-hash="QmClick1"]')
    await row.waitFor()
    assert.match(await row.textContent() ?? '', /Clair de lune/)

    await row.locator('input').fill('Harp')
    await row.getByRole('button', { name: 'Save' }).click()
    await page.waitForFunction(async () => (await (window as any).NPP.getPieceByHash('QmClick1'))?.instrument === 'Harp')
    await page.locator('li[data-hash="QmClick1"]').getByRole('button', { name: /Practised 0×/ }).click()
    await page.locator('li[data-hash="QmClick1"]').getByRole('button', { name: /Practised 1×/ }).waitFor()

    await page.setInputFiles('#add-file', { name: 'nocturne.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4 a score') })
    await page.locator('li', { hasText: 'nocturne.pdf' }).waitFor()
    const fromFile = await page.evaluate(async () => (await (window as any).NPP.getAllPieces()).find((p: any) => p.title === 'nocturne.pdf'))
    assert.match(fromFile.hash, /^bafkrei/, 'catalogued by the CID of its bytes')

    await page.fill('#search-instrument', 'Harp')
    await page.click('#search-button')
    await page.locator('#results li', { hasText: 'Clair de lune' }).waitFor()
    assert.match(await page.textContent('#results') ?? '', /Clair de lune · Harp\s*from me/)
    assert.match(await page.textContent('#search-progress') ?? '', /me: ok, 1 in \d+ ms \[1\/1\]/)
    await page.locator('#search-summary', { hasText: '1 result(s)' }).waitFor()
    assert.match(await page.locator('#peers li').first().textContent() ?? '', /relay \(….{8}\)\s*WebSocket/, 'the relay is listed as a connected peer')

    const shot = join(await tempDir(), 'demo-phone.png')
    await page.screenshot({ path: shot, fullPage: true })
    t.diagnostic(`screenshot: ${shot}`)
    if (process.env.NPP_ARTIFACTS != null) await copyFile(shot, join(process.env.NPP_ARTIFACTS, 'demo-phone.png'))

    await page.locator('li[data-hash="QmClick1"]').getByRole('button', { name: 'Delete' }).click()
    await page.locator('li[data-hash="QmClick1"]').waitFor({ state: 'detached' })
    assert.equal(await page.evaluate(async () => await (window as any).NPP.getPieceByHash('QmClick1')), undefined)
    assert.equal(await page.textContent('#error'), '')

    // the debug toggle: npp:* logs in the console after a reload, none once it is off again
    await page.check('#debug')
    assert.equal(await page.evaluate(() => localStorage.debug), 'npp:*')
    const logged: string[] = []
    page.on('console', msg => { logged.push(msg.text()) })
    await page.reload()
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'ready', undefined, { timeout: 30_000 })
    assert.ok(logged.some(l => l.includes('npp:node')), 'debug output after turning it on')
    assert.equal(await page.isChecked('#debug'), true, 'the toggle shows the setting')
    await page.uncheck('#debug')
    assert.equal(await page.evaluate(() => localStorage.debug), undefined)
    logged.length = 0
    await page.reload()
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'ready', undefined, { timeout: 30_000 })
    assert.deepEqual(logged.filter(l => l.includes('npp:')), [], 'and none after turning it off')
    await page.context().close()
  })

  it('a second tab on the same catalog is refused with StorageLockedError and offered a second profile (its own peer)', async () => {
    const first = await open(`${relay.httpUrl}/config`)
    assert.equal(await first.textContent('#status'), 'ready')
    const second = await first.context().newPage()
    await open(`${relay.httpUrl}/config`, second)
    assert.equal(await second.textContent('#status'), 'failed')
    assert.match(await second.textContent('#error') ?? '', /^StorageLockedError: the catalog "new-piece-please" is open in another tab/)
    await second.click('#second-profile')
    await second.waitForFunction(() => document.getElementById('status')?.textContent === 'ready', undefined, { timeout: 30_000 })
    assert.match(second.url(), /[?&]profile=\w+/)
    assert.notEqual(await second.textContent('#peer-id'), await first.textContent('#peer-id'), 'a peer of its own')
    await first.context().close()
  })

  it('starts offline with a malformed relay config, and says why the relay is not linked', async () => {
    // the site's own index.html is not a relay config
    const page = await open(`${site.url}/index.html`)
    assert.equal(await page.textContent('#status'), 'ready', 'its own catalog needs no network')
    await page.locator('#hub', { hasText: 'not linked' }).waitFor({ timeout: 10_000 })
    assert.match(await page.textContent('#hub') ?? '', /^relay: not linked \(cannot get the relay config .*\), retrying$/)
    await page.context().close()
  })

  it('starts offline with an unreachable relay, and says so', async () => {
    const free = createServer()
    await new Promise<void>(resolve => free.listen(0, '127.0.0.1', resolve))
    const port = (free.address() as any).port
    await new Promise(resolve => free.close(resolve))
    const page = await open(`http://127.0.0.1:${port}/config`)
    assert.equal(await page.textContent('#status'), 'ready')
    await page.locator('#hub', { hasText: 'not linked' }).waitFor({ timeout: 10_000 })
    assert.match(await page.textContent('#hub') ?? '', /^relay: not linked \(.+\), retrying$/)
    await page.context().close()
  })
})
