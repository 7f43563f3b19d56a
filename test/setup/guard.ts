/**
 * Test-wide network guard, preloaded with `--import` into every test process
 * (and every peer process a test spawns). Any TCP connection to an address
 * outside the loopback range is refused before a packet leaves, recorded,
 * and fails the process at exit; so a leak fails the test run.
 */
import net from 'node:net'
import dgram from 'node:dgram'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

// the library's default data folder must never appear in the working tree
// during tests: they use memory storage or temporary directories
const defaultDataDir = join(process.cwd(), '.npp')
const hadDataDir = existsSync(defaultDataDir)

export const violations: string[] = []

export function isLoopback (host: string | undefined): boolean {
  if (host == null || host === '' || host === 'localhost') return true
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4)
}

function record (what: string): never {
  violations.push(what)
  process.exitCode = 1
  const err = new Error(`network guard: refused ${what} (tests may only talk to loopback)`)
  ;(err as any).code = 'ENETGUARD'
  throw err
}

const connect = net.Socket.prototype.connect
net.Socket.prototype.connect = function guardedConnect (this: net.Socket, ...args: any[]) {
  // net.connect() passes its normalised arguments as one array
  const first = Array.isArray(args[0]) ? args[0][0] : args[0]
  let host: string | undefined
  if (first != null && typeof first === 'object') {
    if (typeof first.path === 'string') return (connect as any).apply(this, args) // unix socket
    host = first.host
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    host = typeof args[1] === 'string' ? args[1] : undefined
  } else if (typeof first === 'string') {
    return (connect as any).apply(this, args) // unix socket path
  }
  if (!isLoopback(host)) record(`a TCP connection to ${String(host)}`)
  return (connect as any).apply(this, args)
} as typeof net.Socket.prototype.connect

const send = dgram.Socket.prototype.send
dgram.Socket.prototype.send = function guardedSend (this: dgram.Socket, ...args: any[]) {
  const address = args.find((a, i) => i > 0 && typeof a === 'string')
  if (!isLoopback(address)) record(`a UDP datagram to ${String(address)}`)
  return (send as any).apply(this, args)
} as typeof dgram.Socket.prototype.send

;(globalThis as any).__nppNetworkGuard = { violations, isLoopback }

process.on('exit', () => {
  if (!hadDataDir && existsSync(defaultDataDir)) {
    process.stderr.write(`\nworking-tree guard: ${defaultDataDir} was created by this test process\n`)
    process.exitCode = 1
  }
  if (violations.length > 0) {
    process.stderr.write(`\nnetwork guard: ${violations.length} non-loopback attempt(s):\n  ${violations.join('\n  ')}\n`)
    process.exitCode = 1
  }
})
