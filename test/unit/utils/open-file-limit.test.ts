import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { parseOpenFileLimit } from '../../../src/utils/open-file-limit.ts'

/** `/proc/self/limits` as Linux writes it, with `open` as the "Max open files" values. */
const limits = (open: string): string => [
  'Limit                     Soft Limit           Hard Limit           Units     ',
  'Max cpu time              unlimited            unlimited            seconds   ',
  'Max file size             unlimited            unlimited            bytes     ',
  'Max processes             127473               127473               processes ',
  `Max open files            ${open}               files     `,
  'Max locked memory         8388608              8388608              bytes     ',
  'Max realtime timeout      unlimited            unlimited            us        ',
  ''
].join('\n')

describe('parseOpenFileLimit', () => {
  it('reads the soft and the hard limit of "Max open files"', () => {
    assert.deepEqual(parseOpenFileLimit(limits('1024                 524288')), { soft: 1024, hard: 524288 })
    assert.deepEqual(parseOpenFileLimit(limits('20000                20000')), { soft: 20000, hard: 20000 })
  })

  it('reads "unlimited" as Infinity', () => {
    assert.deepEqual(parseOpenFileLimit(limits('65536                unlimited')), { soft: 65536, hard: Infinity })
    assert.deepEqual(parseOpenFileLimit(limits('unlimited            unlimited')), { soft: Infinity, hard: Infinity })
  })

  it('reads this process\'s own file (Linux, as every machine this suite runs on)', async () => {
    const { readFile } = await import('node:fs/promises')
    const text = await readFile('/proc/self/limits', 'utf8')
    const limit = parseOpenFileLimit(text)
    assert.ok(limit != null && limit.soft >= 1 && limit.soft <= limit.hard, JSON.stringify(limit))
  })

  it('gives undefined without the line or with values it cannot read', () => {
    assert.equal(parseOpenFileLimit(''), undefined)
    assert.equal(parseOpenFileLimit(limits('1024').replace(/^Max open files.*$/m, '')), undefined)
    assert.equal(parseOpenFileLimit(limits('1024')), undefined, 'only one value')
    assert.equal(parseOpenFileLimit(limits('-1                   1024')), undefined)
    assert.equal(parseOpenFileLimit(limits('1e3                  1024')), undefined)
    assert.equal(parseOpenFileLimit(limits('99999999999999999999 1024')), undefined)
  })
})
