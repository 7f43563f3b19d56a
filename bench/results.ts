/**
 * bench/RESULTS.md holds generated sections between markers
 * (`<!-- bench:<name>:begin -->` ... `<!-- bench:<name>:end -->`) and
 * hand-written notes around them; `--write` replaces only its own section.
 */
import { readFile, writeFile } from 'node:fs/promises'

const FILE = new URL('RESULTS.md', import.meta.url)

export async function writeSection (name: string, content: string): Promise<void> {
  const begin = `<!-- bench:${name}:begin -->`
  const end = `<!-- bench:${name}:end -->`
  let md = ''
  try {
    md = await readFile(FILE, 'utf8')
  } catch {
    md = '# Benchmark results\n'
  }
  const block = `${begin}\n${content.trim()}\n${end}`
  const from = md.indexOf(begin)
  const to = md.indexOf(end)
  md = from >= 0 && to > from
    ? md.slice(0, from) + block + md.slice(to + end.length)
    : `${md.trimEnd()}\n\n${block}\n`
  await writeFile(FILE, md)
}

/** `work`, or undefined once `limit` ms have passed (a bench records what did not finish rather than failing). */
export async function within<T> (limit: number, work: Promise<T>): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([work, new Promise<undefined>(resolve => { timer = setTimeout(() => { resolve(undefined) }, limit) })])
  } finally {
    clearTimeout(timer)
  }
}
