/**
 * One source of truth for options: the TSDoc of `NewPiecePleaseInit` and
 * `RelayInit`. The README's option tables must list exactly their fields,
 * with the same `@default` (and the same type, where the table has a type
 * column).
 *
 * Conventions checked here (follow them when adding an option):
 *
 * - Every field has exactly one `@default` tag. Its text is what the README's
 *   `default` cell says, compared after removing backticks, unescaping `\|` and
 *   collapsing whitespace (nothing else: quotes, brackets and words must match).
 * - A field without a default value says `@default none`, optionally followed
 *   by a short note in parentheses: `@default none (built for you)`. Never
 *   `@default undefined`.
 * - Prose is allowed where a literal cannot say it all:
 *   `` @default `false`, or `true` when `relay` is set ``.
 * - In a `type` column, the cell starts with a code span holding the declared
 *   type exactly as written in the source (whitespace aside); text after it is
 *   a free note: `` `number` (ms) ``.
 * - The relay table's first column is `` `--flag` / `apiName` `` or
 *   `` `apiName` (config file) ``: the one code span that is not a `--flag`
 *   names the `RelayInit` field. A row with only `--flags` is CLI-only (such as
 *   `--config`) and is not matched against `RelayInit`.
 *
 * The interfaces are found by searching src/ for their declaration, so they
 * may move between files.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import { join, relative } from 'node:path'
import ts from 'typescript'

const ROOT = join(import.meta.dirname, '..', '..')
const README = join(ROOT, 'README.md')

interface DocumentedOption {
  name: string
  /** The declared type, as written. */
  type: string
  /** The texts of its `@default` tags (exactly one is expected). */
  defaults: string[]
  /** `src/...:line`, for messages. */
  where: string
}

interface TableRow {
  /** The cells as written. */
  cells: string[]
  line: number
}

/** A row that names an option of the interface. */
interface NamedRow {
  name: string
  type: string | undefined
  default: string | undefined
  line: number
}

interface OptionTable {
  header: string[]
  hasType: boolean
  rows: TableRow[]
  line: number
}

/** Whitespace collapsed; backticks and markdown's `\|` escape removed. */
function normaliseDefault (text: string): string {
  return text.replace(/\\\|/g, '|').replace(/`/g, '').replace(/\s+/g, ' ').trim()
}

function normaliseType (text: string): string {
  return text.replace(/\\\|/g, '|').replace(/\s+/g, ' ').trim()
}

function sourceFiles (dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter(entry => entry.isFile() && entry.name.endsWith('.ts'))
    .map(entry => join(entry.parentPath, entry.name))
}

/** The one file under src/ that declares `export interface <name>`. */
function findDeclaringFile (name: string): string {
  const pattern = new RegExp(`export\\s+interface\\s+${name}\\b`)
  const files = sourceFiles(join(ROOT, 'src')).filter(file => pattern.test(readFileSync(file, 'utf8')))
  assert.equal(files.length, 1, `expected exactly one file under src/ to declare \`export interface ${name}\`, found ${files.length}: ${files.map(f => relative(ROOT, f)).join(', ') || 'none'}`)
  return files[0]!
}

function readInterface (name: string): { file: string, options: DocumentedOption[] } {
  const file = findDeclaringFile(name)
  const rel = relative(ROOT, file)
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
  const declaration = source.statements.find((s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === name)
  assert.ok(declaration != null, `${rel} mentions \`export interface ${name}\` but the TypeScript parser finds no top-level interface of that name`)
  // inherited fields would be options too; this test reads only the interface's own members
  assert.equal(declaration.heritageClauses, undefined, `${name} (${rel}) now extends another interface; list its options in ${name} itself, or teach test/unit/options-doc.test.ts to follow \`extends\``)
  const options = declaration.members.map(member => {
    const where = `${rel}:${source.getLineAndCharacterOfPosition(member.getStart(source)).line + 1}`
    assert.ok(member.name != null && (ts.isIdentifier(member.name) || ts.isStringLiteral(member.name)), `${name} has a member without a plain name at ${where}`)
    const type = ts.isPropertySignature(member) && member.type != null ? member.type.getText(source) : member.getText(source)
    const defaults = ts.getJSDocTags(member)
      .filter(tag => tag.tagName.text === 'default')
      .map(tag => ts.getTextOfJSDocComment(tag.comment) ?? '')
    return { name: member.name.text, type: normaliseType(type), defaults, where }
  })
  return { file: rel, options }
}

/** Splits a markdown table row into its cells (`\|` is not a separator). */
function cells (line: string): string[] {
  return line.trim().replace(/^\|/, '').replace(/\|$/, '').split(/(?<!\\)\|/).map(cell => cell.trim())
}

/** Every markdown table in the README whose first header cell starts with `option`. */
function readOptionTables (markdown: string): OptionTable[] {
  const lines = markdown.split('\n')
  const tables: OptionTable[] = []
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!lines[i]!.startsWith('|') || !/^\|\s*:?-+/.test(lines[i + 1]!)) continue
    if (i > 0 && lines[i - 1]!.startsWith('|')) continue
    const header = cells(lines[i]!).map(h => h.toLowerCase())
    if (!header[0]!.startsWith('option')) continue
    const table: OptionTable = { header, hasType: header.includes('type'), rows: [], line: i + 1 }
    for (let j = i + 2; j < lines.length && lines[j]!.startsWith('|'); j++) table.rows.push({ cells: cells(lines[j]!), line: j + 1 })
    tables.push(table)
  }
  return tables
}

function codeSpans (cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map(m => m[1]!)
}

/** What a row's first cell names: an option, nothing (a CLI-only row), or a problem to report. */
type Naming = { name: string } | { name: undefined } | { problem: string }

/** Main table: the first cell is the option's name in backticks. */
function mainName (cell: string, line: number): Naming {
  const match = /^`([^`]+)`$/.exec(cell)
  if (match == null) return { problem: `README.md:${line}: the first cell of an options-table row must be the option's name in backticks, got ${JSON.stringify(cell)}` }
  return { name: match[1]! }
}

/** Relay table: `--flag` / `apiName`, `apiName` (config file), or a CLI-only `--flag`. */
function relayName (cell: string, line: number): Naming {
  const spans = codeSpans(cell)
  const names = spans.filter(span => !span.startsWith('--'))
  if (names.length > 1) return { problem: `README.md:${line}: a relay-options row names more than one API option (${names.join(', ')}); write \`--flag\` / \`apiName\`` }
  if (names.length === 0 && spans.length === 0) return { problem: `README.md:${line}: a relay-options row must name its option in backticks (\`--flag\` / \`apiName\`, or \`apiName\` (config file)), got ${JSON.stringify(cell)}` }
  return { name: names[0] }
}

interface Spec {
  interfaceName: string
  /** Which README table documents it. */
  what: string
  pick: (tables: OptionTable[]) => OptionTable[]
  nameOf: (cell: string, line: number) => Naming
  /** The first cell of a new row, for the message that asks for one. */
  rowLabel: (name: string) => string
  /** Whether the README table has a type column to check (the relay's has none). */
  typed: boolean
}

const specs: Spec[] = [
  {
    interfaceName: 'NewPiecePleaseInit',
    what: 'the createNewPiecePlease options table (header `| option | type | default | meaning |`)',
    pick: tables => tables.filter(t => !t.header[0]!.includes('createrelay')),
    nameOf: mainName,
    rowLabel: name => `\`${name}\``,
    typed: true
  },
  {
    interfaceName: 'RelayInit',
    what: 'the relay options table (header `| option (CLI / `createRelay` ...) | default | meaning |`)',
    pick: tables => tables.filter(t => t.header[0]!.includes('createrelay')),
    nameOf: relayName,
    rowLabel: name => `\`--flag\` / \`${name}\` (or \`${name}\` (config file) when the CLI has no flag for it)`,
    typed: false
  }
]

const markdown = readFileSync(README, 'utf8')

for (const spec of specs) {
  describe(`${spec.interfaceName}: TSDoc and README agree`, () => {
    let declared: ReturnType<typeof readInterface>
    try {
      declared = readInterface(spec.interfaceName)
    } catch (err) {
      it(`src/ declares ${spec.interfaceName} once, as an interface of its own`, () => { throw err })
      return
    }
    const { file, options } = declared
    const found = spec.pick(readOptionTables(markdown))
    const table = found[0]
    const typeColumn = table?.header.indexOf('type') ?? -1
    const defaultColumn = table?.header.indexOf('default') ?? -1
    const namingProblems: string[] = []
    const rows: NamedRow[] = []
    for (const row of table?.rows ?? []) {
      const naming = spec.nameOf(row.cells[0] ?? '', row.line)
      if ('problem' in naming) namingProblems.push(naming.problem)
      else if (naming.name !== undefined) {
        rows.push({ name: naming.name, type: row.cells[typeColumn], default: row.cells[defaultColumn], line: row.line })
      }
    }

    it(`README.md has exactly one table for ${spec.interfaceName}`, () => {
      assert.equal(found.length, 1, `expected one ${spec.what} in README.md, found ${found.length}${found.length > 0 ? ` (at lines ${found.map(t => t.line).join(', ')})` : ''}`)
    })

    it(`every ${spec.interfaceName} field has one @default in its TSDoc (\`none\` when there is no default)`, () => {
      const problems: string[] = []
      for (const option of options) {
        if (option.defaults.length === 0) {
          problems.push(`${spec.interfaceName}.${option.name} (${option.where}) has no @default in its TSDoc: add \`@default <value>\`, or \`@default none\` when it has no default value`)
        } else if (option.defaults.length > 1) {
          problems.push(`${spec.interfaceName}.${option.name} (${option.where}) has ${option.defaults.length} @default tags: keep one`)
        } else {
          const text = normaliseDefault(option.defaults[0]!)
          if (text === '') problems.push(`${spec.interfaceName}.${option.name} (${option.where}) has an empty @default: write the value, or \`none\``)
          if (/^undefined\b/.test(text)) problems.push(`${spec.interfaceName}.${option.name} (${option.where}) says \`@default ${text}\`: this project writes \`@default none\` for an option without a default value`)
        }
      }
      assert.equal(problems.length, 0, problems.join('\n'))
    })

    it(`every ${spec.interfaceName} field is in the README table and every row is a field`, () => {
      assert.ok(table != null, `no ${spec.what} in README.md`)
      const problems: string[] = [...namingProblems]
      const byName = new Map(options.map(o => [o.name, o]))
      const seen = new Map<string, number>()
      for (const row of rows) {
        if (seen.has(row.name)) problems.push(`README.md:${row.line}: option \`${row.name}\` is listed twice (also at line ${seen.get(row.name)})`)
        seen.set(row.name, row.line)
        if (!byName.has(row.name)) problems.push(`README.md:${row.line}: option \`${row.name}\` is in the README table but not in ${spec.interfaceName} (${file}): remove the row, or add the field with TSDoc and @default`)
      }
      for (const option of options) {
        if (!seen.has(option.name)) {
          const given = option.defaults[0]
          const defaultCell = given === undefined ? '<its @default>' : given.includes('`') || given.startsWith('none') ? given : `\`${given}\``
          const suggestion = table.hasType
            ? `| ${spec.rowLabel(option.name)} | \`${option.type.replace(/\|/g, '\\|')}\` | ${defaultCell} | ... |`
            : `| ${spec.rowLabel(option.name)} | ${defaultCell} | ... |`
          problems.push(`${spec.interfaceName}.${option.name} (${option.where}) is missing from ${spec.what} (README.md:${table.line}): add a row such as ${suggestion}`)
        }
      }
      assert.equal(problems.length, 0, problems.join('\n'))
    })

    it(`README defaults equal the ${spec.interfaceName} @default tags`, () => {
      assert.ok(table != null, `no ${spec.what} in README.md`)
      assert.ok(table.header.includes('default'), `${spec.what} (README.md:${table.line}) has no \`default\` column`)
      const problems: string[] = []
      for (const row of rows) {
        const option = options.find(o => o.name === row.name)
        if (option === undefined || option.defaults.length !== 1) continue // reported above
        const readme = normaliseDefault(row.default ?? '')
        const tsdoc = normaliseDefault(option.defaults[0]!)
        if (readme !== tsdoc) {
          problems.push(`default of \`${row.name}\` differs: ${spec.interfaceName} (${option.where}) says @default ${JSON.stringify(tsdoc)}, README.md:${row.line} says ${JSON.stringify(readme)} (compared without backticks and extra whitespace)`)
        }
      }
      assert.equal(problems.length, 0, problems.join('\n'))
    })

    if (spec.typed) {
      it(`README types equal the ${spec.interfaceName} declared types`, () => {
        assert.ok(table != null, `no ${spec.what} in README.md`)
        assert.ok(table.hasType, `${spec.what} has lost its type column`)
        const problems: string[] = []
        for (const row of rows) {
          const option = options.find(o => o.name === row.name)
          if (option === undefined) continue // reported above
          const cell = row.type ?? ''
          const match = /^`([^`]+)`/.exec(cell)
          if (match == null) {
            problems.push(`type of \`${row.name}\`: README.md:${row.line} must start with the declared type in backticks, \`${option.type}\` (from ${option.where}); got ${JSON.stringify(cell)}`)
            continue
          }
          const readme = normaliseType(match[1]!)
          if (readme !== option.type) {
            problems.push(`type of \`${row.name}\` differs: ${spec.interfaceName} (${option.where}) declares \`${option.type}\`, README.md:${row.line} says \`${readme}\``)
          }
        }
        assert.equal(problems.length, 0, problems.join('\n'))
      })
    }
  })
}
