/**
 * The package as a web app gets it: compiled to `dist/` (into a temporary
 * directory, never the working tree), resolved through package.json
 * `exports` and `browser` like an installed dependency, and bundled for the
 * browser by esbuild, webpack and Vite with no configuration beyond an entry
 * point: no Node built-in shims, no aliases, no plugins.
 */
import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { installedPackage } from '../helpers/package.ts'

/** Modules that must never reach a browser bundle: the Node platform, its TCP transport, node-datachannel, Node built-ins (or Vite's stand-ins for them). */
const NODE_ONLY = [/platform\/node\.js$/, /\/@libp2p\/tcp\//, /\/node-datachannel\//, /^node:/, /__vite-browser-external/, /^(fs|net|os|dgram|child_process|path|crypto|stream)$/]

describe('bundling the published package for the browser', () => {
  let app = ''
  let out = ''
  before(async () => {
    const installed = await installedPackage()
    app = installed.app
    out = join(installed.tmp, 'out')
    await writeFile(join(app, 'main.js'), "import { createNewPiecePlease } from 'new-piece-please'\nglobalThis.start = () => createNewPiecePlease({ relay: 'http://127.0.0.1:9090/config' })\n")
    await writeFile(join(app, 'index.html'), '<!doctype html><script type="module" src="./main.js"></script>\n')
  })

  /** `modules`: every module the bundler put in the bundle. */
  const check = (modules: string[]): void => {
    assert.ok(modules.length > 200, `the library is in the bundle (${modules.length} modules)`)
    assert.ok(modules.some(m => m.endsWith('platform/browser.js')), 'the browser platform, from the published dist/')
    for (const pattern of NODE_ONLY) {
      assert.deepEqual(modules.filter(m => pattern.test(m)), [], `no Node-only module (${String(pattern)})`)
    }
  }

  it('esbuild', async () => {
    const esbuild = await import('esbuild')
    const result = await esbuild.build({ entryPoints: [join(app, 'main.js')], absWorkingDir: app, bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent' })
    assert.deepEqual(result.errors, [])
    check(Object.keys(result.metafile.inputs))
  })

  it('webpack', async () => {
    const { default: webpack } = await import('webpack')
    const stats = await new Promise<any>((resolve, reject) => {
      webpack({ mode: 'production', context: app, entry: './main.js', target: 'web', output: { path: join(out, 'webpack') } }, (err, s) => { err != null ? reject(err) : resolve(s) })
    })
    const info = stats.toJson({ all: false, errors: true, modules: true, nestedModules: true })
    assert.deepEqual(info.errors.map((e: any) => e.message.slice(0, 300)), [])
    const names: string[] = []
    const walk = (ms: any[] = []): void => { for (const m of ms) { names.push(String(m.name)); walk(m.modules) } }
    walk(info.modules)
    check(names.filter(n => !n.includes(' + ')).map(n => n.replace(/^\.\//, '')))
  })

  it('Vite', async () => {
    const { build } = await import('vite')
    const modules: string[] = []
    // only watches: records the modules the build took in
    const record = { name: 'record-modules', buildEnd (this: any) { modules.push(...this.getModuleIds()) } }
    await build({ configFile: false, root: app, logLevel: 'silent', plugins: [record], build: { outDir: join(out, 'vite'), target: 'es2022' } })
    check(modules.map(m => m.replace(/\?.*$/, '')))
  })
})
