/**
 * `npm run bench:browser [-- --runs N] [-- --write]`: the library in headless
 * Chromium. Builds the demo page (bundle size, raw and gzip), then runs the
 * WebRTC scenario of the browser tests N times (default 3) in a network
 * namespace it makes (root and `ip` needed; without them only the bundle is
 * measured): two pages and a Node peer meeting through a relay on loopback.
 * In the same runs, page A writes 200 pieces as raw OrbitDB `Documents` and
 * as our catalog and page B replicates both over the same WebRTC link: that
 * is the baseline for the ratio. Prints medians; `--write` replaces the
 * browser section of bench/RESULTS.md.
 */
import { execFileSync, spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir, cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { buildDemo, CHROMIUM } from '../test/helpers/browser.ts'
import { makeNamespace } from '../test/helpers/netns.ts'
import { writeSection } from './results.ts'

const args = process.argv.slice(2)
const runsArg = args.indexOf('--runs')
const RUNS = runsArg >= 0 ? Number(args[runsArg + 1]) : 3
if (!Number.isInteger(RUNS) || RUNS < 1 || RUNS > 20) throw new Error('--runs takes 1 to 20')
const scenario = fileURLToPath(new URL('../test/browser/webrtc-scenario.ts', import.meta.url))
const guard = fileURLToPath(new URL('../test/setup/guard.ts', import.meta.url))

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]! }
const fmt = (ms: number): string => ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`
const kb = (bytes: number): string => `${(bytes / 1000).toLocaleString('en', { maximumFractionDigits: 0 })} KB`

const site = await mkdtemp(join(tmpdir(), 'npp-bench-site-'))
const rows: string[] = []
const row = (scenario: string, baseline: string, ours: string, ratio: string, note: string): void => {
  rows.push(`| ${scenario} | ${baseline} | ${ours} | ${ratio} | ${note} |`)
  console.log(`${scenario.padEnd(62)} ${baseline.padStart(10)} ${ours.padStart(18)} ${ratio.padStart(7)}  ${note}`)
}
let chromiumVersion = 'Chromium'
try {
  chromiumVersion = execFileSync(CHROMIUM, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
} catch {}
console.log(`new-piece-please browser benchmark on ${cpus().length} x ${cpus()[0]?.model}, Node ${process.version}, ${chromiumVersion}\n`)

try {
  // 1. the demo's production bundle
  await buildDemo(site)
  const assets = join(site, 'assets')
  const js = (await readdir(assets)).filter(f => f.endsWith('.js'))
  const bytes = await Promise.all(js.map(async f => await readFile(join(assets, f))))
  const raw = bytes.reduce((n, b) => n + b.byteLength, 0)
  const gzip = bytes.reduce((n, b) => n + gzipSync(b, { level: 9 }).byteLength, 0)
  row(`demo page bundle (${js.length} JS file${js.length === 1 ? '' : 's'}), raw / gzip -9`, 'n/a', `${kb(raw)} / ${kb(gzip)}`, '', 'about 300 KB gzip (Helia light composition)')

  // 2. the WebRTC scenario
  const ns = makeNamespace(`npp-bench-${process.pid}`)
  if (typeof ns === 'string') {
    console.log(`\n!!! the browser scenario needs a network namespace: ${ns}; only the bundle was measured`)
  } else {
    const reports: any[] = []
    try {
      for (let r = 0; r < RUNS; r++) {
        const [cmd, ...argv] = ns.exec(process.execPath, '--conditions=npp-source', '--import', guard, scenario, site)
        const child = spawn(cmd!, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NPP_SCENARIO_BASELINE: '1' } })
        let out = ''
        child.stdout.on('data', d => { out += String(d) })
        const timer = setTimeout(() => child.kill('SIGKILL'), 180_000)
        const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
        clearTimeout(timer)
        const report = JSON.parse(out.trim().split('\n').pop() ?? '{}')
        if (code !== 0) throw new Error(`scenario run ${r + 1} failed: ${report.error ?? `exit ${code}`}`)
        reports.push(report)
        console.log(`(run ${r + 1}/${RUNS} done)`)
      }
    } finally {
      ns.remove()
    }
    const m = (key: string): number => median(reports.map(r => r[key]))
    console.log('')
    row('page load to ready (fresh profile, through the relay)', 'n/a', fmt(m('loadToReadyMs')), '', 'module load, IndexedDB open, 4 databases')
    row('discovery: page B opened → page A recorded as companion', 'n/a', fmt(m('discoveryMs')), '', 'relay reservation, WebRTC link, verification')
    row('page B opened → its search returns all 200 of A\'s pieces', 'n/a', fmt(m('seeAll200Ms')), '', 'includes load and discovery')
    const rawRep = m('replicate200RawMs')
    const oursRep = m('replicate200OursMs')
    row('B replicates 200 pieces from A over WebRTC (raw `Documents` vs ours)', fmt(rawRep), fmt(oursRep), `${(rawRep / oursRep).toFixed(1)}x`, 'same link, same run')
    row('a Node peer joins: it and both pages are companions', 'n/a', fmt(m('nodeDiscoveryMs')), '', 'browser ↔ Node over WebRTC')
    row('B\'s search across its companions (Piano, 100 matches from A)', 'n/a', fmt(m('queryMs')), '', '')
    row('the same with A\'s tab closed (from B\'s replica)', 'n/a', fmt(m('offlineQueryMs')), '', 'on time, A shown offline')
  }

  if (args.includes('--write')) {
    const table = ['| scenario | baseline | new-piece-please | ratio | notes |', '|---|---|---|---|---|', ...rows].join('\n')
    await writeSection('browser', `Produced by \`npm run bench:browser -- --write\` on ${new Date().toISOString().slice(0, 10)}: ${cpus().length} x ${cpus()[0]?.model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${chromiumVersion} headless. Medians of ${RUNS} runs of the WebRTC scenario (test/browser/webrtc-scenario.ts) in a network namespace: relay and pages on one machine, so these are lower bounds for a real network.\n\n${table}`)
  }
} finally {
  await rm(site, { recursive: true, force: true })
}
process.exit(0)
