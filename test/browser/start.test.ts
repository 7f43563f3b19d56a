import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tempDir } from '../helpers/peers.ts'
import { launch } from '../helpers/browser.ts'

const start = fileURLToPath(new URL('../../scripts/start.ts', import.meta.url))
const guard = fileURLToPath(new URL('../setup/guard.ts', import.meta.url))

describe('npm start', () => {
  it('starts the relay, serves the demo page, prints the URL to open, and stops on SIGTERM', async () => {
    const dir = await tempDir()
    const child = spawn(process.execPath, ['--conditions=npp-source', '--import', guard, start], {
      env: { ...process.env, NPP_RELAY_HTTP_PORT: '0', NPP_WEB_PORT: '0', NPP_RELAY_KEY: join(dir, 'relay.key') },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let out = ''
    let err = ''
    child.stdout.on('data', d => { out += String(d) })
    child.stderr.on('data', d => { err += String(d) })
    const exited = new Promise<number | null>(resolve => child.on('exit', resolve))
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', () => {
        const found = /Open the demo: (\S+)/.exec(out)?.[1]
        if (found != null) resolve(found)
      })
      child.on('exit', () => { reject(new Error(`npm start exited: ${out} ${err}`)) })
    })
    const browser = await launch()
    try {
      const page = await browser.newPage()
      await page.goto(url)
      await page.waitForFunction(() => ['ready', 'failed'].includes(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 30_000 })
      assert.equal(await page.textContent('#status'), 'ready', await page.textContent('#error') ?? '')
    } finally {
      await browser.close()
    }
    child.kill('SIGTERM')
    assert.equal(await exited, 0, err)
  })
})
