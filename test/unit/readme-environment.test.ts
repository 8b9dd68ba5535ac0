import t from 'tap'
import { readFileSync } from 'node:fs'

// README, "Environment, systemd, containers": the table of environment variables is what the
// shipped configs read, with the defaults they write. A variable added to either file without a
// row, a row for a variable no file reads, or a default that drifted fails here.

const FILES = { 'default.yaml': 'config/default.yaml', 'docker.yaml': 'config/docker.yaml' } as const
type Column = keyof typeof FILES

const readme = readFileSync('README.md', 'utf8')
const table = /<!-- environment: begin -->\n([\s\S]*?)<!-- environment: end -->/.exec(readme)?.[1] ?? ''
const header = table.split('\n')[0]?.split('|').map((c) => c.trim()) ?? []
const rows = table.split('\n').slice(2).filter((l) => l.startsWith('|')).map((l) => l.split('|').map((c) => c.trim()))
const cell = (row: string[], column: string): string => row[header.indexOf(column)] ?? ''
const variables = new Map(rows.map((r) => [cell(r, 'variable').replaceAll('`', ''), r]))

/** YAML without its comment lines (which mention ${VAR} as syntax). */
const uncommented = (text: string): string => text.split('\n').filter((l) => !l.trim().startsWith('#')).join('\n')

/** What a file says of a variable: required, none (empty default), its default, or undefined when it does not read it. */
function written (text: string, name: string): string | undefined {
  const uses = [...text.matchAll(new RegExp(`\\$\\{${name}(:-([^}]*))?\\}`, 'g'))]
  if (uses.length === 0) return undefined
  const defaults = new Set(uses.map((m) => m[1] === undefined ? 'required' : m[2] === '' ? 'none' : `\`${m[2] as string}\``))
  return [...defaults].join(' / ')
}

t.test('the table lists every variable the shipped configs read, and only those', async (t) => {
  t.ok(rows.length > 0, 'the table is there')
  const read = new Set<string>()
  for (const path of Object.values(FILES)) {
    for (const m of uncommented(readFileSync(path, 'utf8')).matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)) read.add(m[1] as string)
  }
  t.same([...variables.keys()].sort(), [...read].sort())
})

t.test('each row gives the default each file writes, or says the file sets the value itself', async (t) => {
  for (const [name, row] of variables) {
    for (const [column, path] of Object.entries(FILES) as Array<[Column, string]>) {
      const expected = written(uncommented(readFileSync(path, 'utf8')), name)
      const said = cell(row, column)
      if (expected === undefined) t.match(said, /^\(.*\)$/, `${name} in ${column}: not read there, so in parentheses`)
      else t.equal(said, expected, `${name} in ${column}`)
    }
  }
})
