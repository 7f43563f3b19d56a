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
    const urls = await new Promise<[string, string]>((resolve, reject) => {
      child.stdout.on('data', () => {
        const found = /Open the demo: (\S+)\nand, in another tab, a second peer: (\S+)/.exec(out)
        if (found != null) resolve([found[1]!, found[2]!])
      })
      child.on('exit', () => { reject(new Error(`npm start exited: ${out} ${err}`)) })
    })
    const browser = await launch()
    try {
      // two tabs of one browser, as the printed URLs say: two peers
      const context = await browser.newContext()
      const ids = []
      for (const url of urls) {
        const page = await context.newPage()
        await page.goto(url)
        await page.waitForFunction(() => ['ready', 'failed'].includes(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 30_000 })
        assert.equal(await page.textContent('#status'), 'ready', await page.textContent('#error') ?? '')
        ids.push(await page.textContent('#peer-id'))
      }
      assert.notEqual(ids[0], ids[1])
    } finally {
      await browser.close()
    }
    child.kill('SIGTERM')
    assert.equal(await exited, 0, err)
  })
})
