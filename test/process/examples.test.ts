import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../', import.meta.url))
const guard = fileURLToPath(new URL('../setup/guard.ts', import.meta.url))

async function run (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, ['--conditions=npp-source', '--import', guard, ...args], { cwd: root })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', d => { stdout += String(d) })
  child.stderr.on('data', d => { stderr += String(d) })
  child.stdin.end()
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

describe('README, demo and REPL', () => {
  it('the README quick start is examples/quick-start.ts, and it runs', async () => {
    const readme = await readFile(new URL('README.md', `file://${root}`), 'utf8')
    const example = await readFile(new URL('examples/quick-start.ts', `file://${root}`), 'utf8')
    const block = /<!-- quick-start -->\s*```ts\n([\s\S]*?)```/.exec(readme)?.[1]
    assert.equal(block, example, 'README quick start and examples/quick-start.ts must be the same code')
    const { code, stdout, stderr } = await run(['examples/quick-start.ts'])
    assert.equal(code, 0, stderr)
    assert.match(stdout, /QmNR2n4zywCV61MeMLB6JwPueAPqheqpfiA4fLPMxouEmQ ana/)
    assert.match(stdout, /QmRn99VSCVdCWmyQCFFpgvQFgi8R4Hqd4c9UeB1dU4qhcZ ben/)
    assert.match(stdout, /: ok, .*: ok/)
  })

  it('npm run demo:node (three Node peers) discovers, queries and narrates with timings', async () => {
    const { code, stdout, stderr } = await run(['examples/node-demo.ts'])
    assert.equal(code, 0, stderr)
    assert.match(stdout, /companions in \d+ ms/)
    assert.match(stdout, /Clair de lune .* from ana/)
    assert.match(stdout, /Gymnopédie No. 1 .* from ben/)
    assert.match(stdout, /Nocturne Op. 9 No. 2 .* from cai/)
    assert.match(stdout, /cai online: false/)
    assert.match(stdout, /Done\./)
    // stopping peers mid-replication cancels reads on purpose: that is not an error to print
    assert.doesNotMatch(stderr, /AbortError|was aborted/, stderr)
  })

  it('npm run repl binds a started instance to NPP, with top-level await', async () => {
    const child = spawn(process.execPath, ['--conditions=npp-source', '--import', guard, 'scripts/repl.ts'], { cwd: root, env: { ...process.env, NPP_STORAGE: 'memory' } })
    let stdout = ''
    let stderr = ''
    let onOutput = (): void => {}
    child.stdout.on('data', d => { stdout += String(d); onOutput() })
    child.stderr.on('data', d => { stderr += String(d) })
    const exited = new Promise<number | null>(resolve => child.on('exit', resolve))
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    // type one line at a time, as a person does: wait for the answer and the next prompt
    const type = async (line: string): Promise<string> => {
      const from = stdout.length
      child.stdin.write(line + '\n')
      await new Promise<void>(resolve => {
        onOutput = () => { if (stdout.slice(from).includes('npp> ')) resolve() }
        onOutput()
      })
      return stdout.slice(from)
    }
    await new Promise<void>(resolve => { onOutput = () => { if (stdout.includes('npp> ')) resolve() }; onOutput() })
    assert.match(stdout, /is ready as NPP/)
    assert.match(await type('await NPP.addNewPiece("QmRepl", "Ukulele")'), /hash: 'QmRepl'/)
    assert.match(await type('(await NPP.getByInstrument("Ukulele")).length'), /\b1\b/)
    assert.match(await type('NPP.peerId.startsWith("12D3")'), /true/)
    child.stdin.write('.exit\n')
    assert.equal(await exited, 0, stderr)
    clearTimeout(timer)
    assert.match(stdout, /stopped/)
  })
})
