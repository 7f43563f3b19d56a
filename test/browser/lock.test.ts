import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'
import { build } from 'vite'
import type { Browser, Page } from 'playwright-core'
import { createRelay, type Relay } from '../../src/relay/relay.ts'
import { tempDir } from '../helpers/peers.ts'
import { serve, launch } from '../helpers/browser.ts'

const SRC = join(import.meta.dirname, '../../src/index.ts')

/**
 * The storage lock in one tab: what React StrictMode's double mount and hot
 * module reloading do (a new instance before the old one's `stop()` has
 * finished) starts once the old one has let go; a second instance while the
 * first runs is refused with a message about this page, not another tab.
 */
describe('the storage lock in one Chromium page', () => {
  let browser: Browser
  let relay: Relay
  let site: { url: string, close(): Promise<void> }

  before(async () => {
    // a page that exposes the library itself (the demo only exposes its instance), built into a temp dir
    const root = await tempDir()
    const out = await tempDir()
    await writeFile(join(root, 'index.html'), '<!doctype html><script type="module" src="./main.ts"></script>')
    await writeFile(join(root, 'main.ts'), "import * as npp from 'new-piece-please'\n;(window as any).npp = npp\n")
    await build({
      configFile: false,
      root,
      logLevel: 'silent',
      resolve: { alias: { 'new-piece-please': SRC }, conditions: ['npp-source', 'browser', 'module', 'import', 'default'] },
      build: { outDir: out, emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 5000 }
    })
    ;[site, relay, browser] = await Promise.all([serve(out), createRelay(), launch()])
  })
  after(async () => {
    await browser?.close()
    await relay?.stop()
    await site?.close()
  })

  const newPage = async (): Promise<Page> => {
    const context = await browser.newContext()
    await context.route('**/*', async route => {
      const host = new URL(route.request().url()).hostname
      if (host === '127.0.0.1' || host === 'localhost' || host === '[::1]') return await route.continue()
      await route.abort()
    })
    const page = await context.newPage()
    await page.goto(site.url)
    await page.waitForFunction(() => (window as any).npp != null, undefined, { timeout: 30_000 })
    return page
  }

  it('a new instance right after stop() (not awaited) starts on the same directory, with the same peer id', async () => {
    const page = await newPage()
    const result = await page.evaluate(async (relay: string) => {
      const { createNewPiecePlease } = (window as any).npp
      const a = await createNewPiecePlease({ relay, directory: 'strict-mode' })
      await a.addNewPiece('QmMounted', 'Ukulele')
      const stopping = a.stop() // StrictMode's cleanup: not awaited before the next mount
      try {
        const b = await createNewPiecePlease({ relay, directory: 'strict-mode' })
        const same = b.peerId === a.peerId
        const piece = await b.getPieceByHash('QmMounted')
        await stopping
        await b.stop()
        return { ok: true, same, piece }
      } catch (err: any) {
        await stopping
        return { ok: false, error: `${String(err?.name)}: ${String(err?.message)}` }
      }
    }, `${relay.httpUrl}/config`)
    assert.deepEqual(result, { ok: true, same: true, piece: { hash: 'QmMounted', instrument: 'Ukulele' } })
    await page.context().close()
  })

  it('a second instance while the first runs is refused with StorageLockedError naming this page, not another tab', async () => {
    const page = await newPage()
    const result = await page.evaluate(async (relay: string) => {
      const { createNewPiecePlease } = (window as any).npp
      const a = await createNewPiecePlease({ relay, directory: 'twice' })
      try {
        await createNewPiecePlease({ relay, directory: 'twice' })
        return { name: 'none', message: 'a second instance started' }
      } catch (err: any) {
        return { name: String(err?.name), message: String(err?.message) }
      } finally {
        await a.stop()
      }
    }, `${relay.httpUrl}/config`)
    assert.equal(result.name, 'StorageLockedError', result.message)
    assert.match(result.message, /another instance in this page/)
    assert.doesNotMatch(result.message, /another tab/)
    await page.context().close()
  })
})
