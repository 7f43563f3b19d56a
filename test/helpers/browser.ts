import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { serveStatic } from '../../scripts/static-server.ts'
import { build } from 'vite'
import { chromium, type Browser, type BrowserContext } from 'playwright-core'

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
