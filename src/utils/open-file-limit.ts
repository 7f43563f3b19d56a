/**
 * A process's open-file limit (`ulimit -n`), as Linux states it in
 * `/proc/self/limits`. Pure: the caller reads the file (there is none on
 * other systems) and hands its text here.
 */

/** The soft limit (what the process may open now) and the hard one (how far it may raise the soft one). `Infinity` for `unlimited`. */
export interface OpenFileLimit {
  soft: number
  hard: number
}

const MAX_OPEN_FILES = /^Max open files[ \t]+(\S+)[ \t]+(\S+)/m

function limitValue (text: string): number | undefined {
  if (text === 'unlimited') return Infinity
  if (!/^\d+$/.test(text)) return undefined
  const n = Number(text)
  return Number.isSafeInteger(n) ? n : undefined
}

/**
 * The "Max open files" line of `/proc/<pid>/limits`:
 *
 *     Limit                     Soft Limit           Hard Limit           Units
 *     Max open files            1024                 524288               files
 *
 * `undefined` when `text` has no such line, or one whose values are neither
 * a count nor `unlimited`.
 */
export function parseOpenFileLimit (text: string): OpenFileLimit | undefined {
  const found = MAX_OPEN_FILES.exec(text)
  if (found == null) return undefined
  const soft = limitValue(found[1]!)
  const hard = limitValue(found[2]!)
  if (soft === undefined || hard === undefined) return undefined
  return { soft, hard }
}
