/**
 * The churn soak's numbers and its markdown summary (bench/soak.ts): RSS
 * marks and slopes, medians, and the tables printed at the end (meant to be
 * pasted into bench/RESULTS.md).
 */

/** One RSS sample: seconds since the peers were spawned, process name, incarnation, MiB. */
export interface RssSample { t: number, name: string, incarnation: number, mib: number }

export interface RssRow {
  name: string
  /** MiB at the start of the churn, at each mark, at its end, and at the last sample (after convergence). */
  marks: Array<number | undefined>
  slopeFirst: number | undefined
  slopeSecond: number | undefined
  note?: string
}

export interface SoakSummary {
  command: string
  setup: string
  start: string
  churn: string
  writes: string
  lost: number
  lostDetail: string
  pairs: { converged: number, companions: number, total: number, maxS: number | undefined, medianS: number | undefined, timeoutS: number }
  failures: string
  /** Links, discoveries and machine load: what explains a pair that did not converge. */
  network: string
  cleanStop: string
  passed: boolean
  rssHeader: string[]
  rssRows: RssRow[]
  notConverged: string[]
  lostAtRestart: string[]
}

export const median = (xs: readonly number[]): number | undefined => {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

/** Least-squares slope of MiB over time, in MiB per minute; undefined with fewer than 3 samples. */
export function slopePerMinute (samples: ReadonlyArray<{ t: number, mib: number }>): number | undefined {
  if (samples.length < 3) return undefined
  const n = samples.length
  const mt = samples.reduce((a, s) => a + s.t, 0) / n
  const mm = samples.reduce((a, s) => a + s.mib, 0) / n
  let num = 0
  let den = 0
  for (const s of samples) {
    num += (s.t - mt) * (s.mib - mm)
    den += (s.t - mt) ** 2
  }
  return den === 0 ? undefined : (num / den) * 60
}

/**
 * Marks (minutes into the churn) for the RSS table: every minute, or every
 * few minutes on a long run so the table stays about ten columns wide.
 */
export function rssMarks (churnMinutes: number): number[] {
  const step = Math.max(1, Math.ceil(churnMinutes / 10))
  const marks = [0]
  for (let m = step; m < churnMinutes; m += step) marks.push(m)
  return marks
}

/**
 * A process's RSS at each mark (the sample nearest to it, within 15 s), at
 * the end of the churn and at the last sample, and its slope in each half of
 * the churn (the second half's slope near zero says growth levelled off).
 */
export function rssRow (name: string, samples: readonly RssSample[], churnStart: number, churnEnd: number, marks: readonly number[], note?: string): RssRow {
  const mine = samples.filter(s => s.name === name)
  const at = (t: number): number | undefined => {
    let best: RssSample | undefined
    for (const s of mine) if (Math.abs(s.t - t) <= 15 && (best == null || Math.abs(s.t - t) < Math.abs(best.t - t))) best = s
    return best?.mib
  }
  const inChurn = mine.filter(s => s.t >= churnStart && s.t <= churnEnd)
  const half = (churnStart + churnEnd) / 2
  const values = [...marks.map(m => at(churnStart + m * 60)), inChurn.at(-1)?.mib, mine.at(-1)?.mib]
  return {
    name,
    marks: values,
    slopeFirst: slopePerMinute(inChurn.filter(s => s.t <= half)),
    slopeSecond: slopePerMinute(inChurn.filter(s => s.t >= half)),
    ...(note != null ? { note } : {})
  }
}

const num = (v: number | undefined, digits = 0): string => v == null ? 'n/a' : v.toFixed(digits)
const signed = (v: number | undefined): string => v == null ? 'n/a' : `${v >= 0 ? '+' : ''}${v.toFixed(1)}`
export const seconds = (v: number | undefined): string => v == null ? 'n/a' : `${v.toFixed(1)} s`

export function markdown (s: SoakSummary): string {
  const pairs = s.pairs
  const lines = [
    `### Churn soak: \`${s.command}\``,
    '',
    '| | |',
    '|---|---|',
    `| setup | ${s.setup} |`,
    `| start | ${s.start} |`,
    `| churn | ${s.churn} |`,
    `| writes | ${s.writes} |`,
    `| lost writes | **${s.lost}**${s.lostDetail !== '' ? ` (${s.lostDetail})` : ''} |`,
    `| convergence | **${pairs.converged}/${pairs.total} pairs** within ${pairs.timeoutS} s after the writes stopped (companions ${pairs.companions}/${pairs.total}); time to converge max ${seconds(pairs.maxS)}, median ${seconds(pairs.medianS)} |`,
    `| known failures in logs | ${s.failures} |`,
    `| links and load | ${s.network} |`,
    `| clean stop | ${s.cleanStop} |`,
    `| result | **${s.passed ? 'PASS' : 'FAIL'}** |`,
    '',
    'RSS (MiB, VmRSS sampled every 10 s):',
    '',
    `| process | ${s.rssHeader.join(' | ')} | MiB/min 1st half | MiB/min 2nd half |`,
    `|---|${s.rssHeader.map(() => '---:').join('|')}|---:|---:|`,
    ...s.rssRows.map(r => `| ${r.name}${r.note != null ? ` (${r.note})` : ''} | ${r.marks.map(v => num(v)).join(' | ')} | ${signed(r.slopeFirst)} | ${signed(r.slopeSecond)} |`)
  ]
  if (s.lostAtRestart.length > 0) lines.push('', 'Acknowledged writes missing from the writer\'s own catalog right after a restart:', '', ...s.lostAtRestart.map(l => `- ${l}`))
  if (s.notConverged.length > 0) lines.push('', 'Pairs not converged (reader ← writer):', '', ...s.notConverged.map(l => `- ${l}`))
  return lines.join('\n')
}
