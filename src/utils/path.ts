/** Join path segments with `/` (no Node `path`, so it works in browsers too). */
export function joinPath (...parts: string[]): string {
  return parts
    .filter(p => p.length > 0)
    .map((p, i) => i === 0 ? p.replace(/\/+$/, '') : p.replace(/^\/+|\/+$/g, ''))
    .join('/')
}
