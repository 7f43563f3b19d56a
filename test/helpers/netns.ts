import { execFileSync } from 'node:child_process'

/**
 * A network namespace with loopback and an internal veth pair (TEST-NET-1
 * addresses) whose default route leads nowhere: WebRTC gathers host
 * candidates there, and nothing can leave the machine. Needs root and `ip`.
 */
export interface Namespace {
  name: string
  /** `argv` to run a command inside the namespace. */
  exec(...argv: string[]): string[]
  remove(): void
}

/** Make one, or say why it cannot be made here. */
export function makeNamespace (name: string): Namespace | string {
  if (process.getuid?.() !== 0) return 'not root'
  const ip = (...args: string[]): void => { execFileSync('ip', args, { stdio: 'pipe' }) }
  try {
    ip('netns', 'add', name)
  } catch (err: any) {
    return `cannot make a network namespace: ${err?.message ?? err}`
  }
  const remove = (): void => { try { ip('netns', 'del', name) } catch {} }
  try {
    const inNs = (...args: string[]): void => { ip('netns', 'exec', name, 'ip', ...args) }
    inNs('link', 'set', 'lo', 'up')
    inNs('link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth1')
    inNs('addr', 'add', '192.0.2.1/24', 'dev', 'veth0')
    inNs('addr', 'add', '192.0.2.2/24', 'dev', 'veth1')
    inNs('link', 'set', 'veth0', 'up')
    inNs('link', 'set', 'veth1', 'up')
    inNs('route', 'add', 'default', 'via', '192.0.2.254')
  } catch (err: any) {
    remove()
    return `cannot set up the network namespace: ${err?.message ?? err}`
  }
  return { name, exec: (...argv) => ['ip', 'netns', 'exec', name, ...argv], remove }
}
