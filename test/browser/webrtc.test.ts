import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { tempDir } from '../helpers/peers.ts'
import { buildDemo } from '../helpers/browser.ts'
import { makeNamespace, type Namespace } from '../helpers/netns.ts'

const scenario = fileURLToPath(new URL('./webrtc-scenario.ts', import.meta.url))
const guard = fileURLToPath(new URL('../setup/guard.ts', import.meta.url))

describe('two browsers over WebRTC (in a network namespace)', () => {
  let ns: Namespace | string = ''
  let site = ''
  /** Run a scenario script in the namespace; its last stdout line is its JSON report. Killed after `ms`. */
  const runScenario = async (ns: Namespace, script: string, ms: number): Promise<{ code: number | null, report: any, err: string }> => {
    const [cmd, ...argv] = ns.exec(process.execPath, '--conditions=npp-source', '--import', guard, script, site)
    const child = spawn(cmd!, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', d => { out += String(d) })
    child.stderr.on('data', d => { err += String(d) })
    const timer = setTimeout(() => child.kill('SIGKILL'), ms)
    const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
    clearTimeout(timer)
    return { code, report: JSON.parse(out.trim().split('\n').pop() ?? '{}'), err }
  }
  before(async () => {
    ns = makeNamespace(`npp-test-${process.pid}`)
    site = await tempDir()
    await buildDemo(site)
  })
  after(() => { if (typeof ns !== 'string') ns.remove() })

  it('two pages find each other through the relay, link directly over WebRTC, search each other; a Node peer joins and both pages find it; A leaves, B still answers from its replica; A returns with the same id and data', async (t) => {
    if (typeof ns === 'string') {
      // WebRTC gathers no candidates on a loopback-only host: without a namespace this cannot run
      process.stderr.write(`\n!!! SKIPPING the WebRTC browser test: ${ns}\n\n`)
      t.skip(ns)
      return
    }
    const { code, report, err } = await runScenario(ns, scenario, 170_000)
    assert.equal(code, 0, `${report.error ?? ''}\n${err.slice(-3000)}`)
    t.diagnostic(`page B load to ready ${report.loadToReadyMs} ms, discovery ${report.discoveryMs} ms, query ${report.queryMs} ms`)
    assert.ok(report.connections.some((c: any) => c.addr.includes('/webrtc') && !c.limited), `a direct WebRTC connection: ${JSON.stringify(report.connections)}`)
    assert.equal(report.fromA, 100, 'B sees all of A\'s Piano pieces, owned by A')
    t.diagnostic(`page B sees all of A's 200 pieces ${report.seeAll200Ms} ms after it was opened`)
    assert.equal(report.allFromA, 200, 'and all 200 of A\'s pieces')
    t.diagnostic(`a Node peer joins: both pages and it are companions after ${report.nodeDiscoveryMs} ms`)
    for (const links of report.nodeConnections) {
      assert.ok(links.some((c: any) => c.addr.includes('/webrtc') && !c.limited), `each page links to the Node peer over direct WebRTC: ${JSON.stringify(report.nodeConnections)}`)
    }
    assert.equal(report.fromNode, 30, 'B\'s search returns the Node peer\'s pieces')
    assert.deepEqual(report.nodeFromPages, [100, 20], 'the Node peer\'s search returns both pages\' Piano pieces')
    // B's demo page, searched by clicking: one line per source (B, A, the Node peer), each answered
    assert.equal(report.pageProgress.length, 3, `a progress line per source: ${JSON.stringify(report.pageProgress)}`)
    assert.ok(report.pageProgress.every((l: string) => /: ok, \d+ in \d+ ms \[\d\/3\]/.test(l)), JSON.stringify(report.pageProgress))
    assert.equal(report.pageSummary, '150 result(s)', '20 of B\'s, 100 of A\'s and 30 of the Node peer\'s Piano pieces')
    assert.equal(report.pageResultsFromNode, 30)
    assert.ok(report.pagePeers.some((l: string) => l.includes('node-peer') && l.includes('WebRTC')), `the Node peer listed as linked over WebRTC: ${JSON.stringify(report.pagePeers)}`)
    assert.ok(report.pagePeers.some((l: string) => /^relay /.test(l) && l.includes('WebSocket')), JSON.stringify(report.pagePeers))
    t.diagnostic(`with A gone: query ${report.offlineQueryMs} ms`)
    assert.ok(report.offlineQueryMs < 3000, 'answers within its timeout with A gone')
    assert.equal(report.offlineFromA, 100, 'A\'s replicated pieces still answer')
    assert.equal(report.offlineSourceOnline, false, 'A shown offline')
    assert.equal(report.pageShowsAOffline, true, 'in B\'s page too')
    assert.equal(report.reloadedSameId, true, 'A comes back with the same peer id')
    assert.equal(report.reloadedPieces, 200, 'and its pieces')
    assert.equal(report.reloadedKnowsB, true, 'and its companions')
    assert.equal(report.backOnline, true, 'and B sees it online again')
    assert.equal(report.pageShowsAOnline, true, 'in its page too')
  })
})
