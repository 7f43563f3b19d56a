import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { serveStatic } from '../../scripts/static-server.ts'
import { build } from 'vite'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

/** Build the browser demo into `outDir` (a temporary directory: never the working tree). */
export async function buildDemo (outDir: string): Promise<void> {
  await build({ configFile: join(import.meta.dirname, '../../vite.config.ts'), logLevel: 'silent', build: { outDir, emptyOutDir: true } })
}

/** Serve `dir` on 127.0.0.1 with an ephemeral port. */
export async function serve (dir: string): Promise<{ url: string, close(): Promise<void> }> {
  return await serveStatic(dir)
}

export async function launch (): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not at ${CHROMIUM}: install Debian's chromium (npm test does it via scripts/ensure-chromium.sh as root) or set CHROMIUM_PATH`)
  }
  return await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS })
}

/** A browser with a profile on disk (`userDataDir`): closing it and launching again is a browser restart. */
export async function launchWithProfile (userDataDir: string): Promise<BrowserContext> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not at ${CHROMIUM}`)
  return await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, args: CHROMIUM_FLAGS })
}

/**
 * Open the demo at `url` in a fresh context of `browser` (a new profile, so a
 * new peer) and wait until it is ready. The page's console errors (all of
 * its console with `NPP_PAGE_DEBUG`, which also becomes its `localStorage.debug`)
 * go to stderr.
 */
export async function openDemo (browser: Browser, url: string): Promise<Page> {
  const page = await (await browser.newContext()).newPage()
  page.on('console', msg => { if (msg.type() === 'error' || process.env.NPP_PAGE_DEBUG != null) process.stderr.write(`[page ${Date.now() % 100000}] ${msg.text()}\n`) })
  if (process.env.NPP_PAGE_DEBUG != null) await page.addInitScript((d: string) => { localStorage.debug = d }, process.env.NPP_PAGE_DEBUG)
  await page.goto(url)
  await page.waitForFunction(() => ['ready', 'failed'].includes(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 30_000 })
  if (await page.textContent('#status') !== 'ready') throw new Error(`page failed: ${await page.textContent('#error')}`)
  return page
}
