import t from 'tap'
import { readFileSync } from 'node:fs'
import { codes } from '../../src/errors.js'

// Operators look codes up in the README: a code the sidecar can log must be there, and the
// README must not promise one that no longer exists.

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
const section = readme.slice(readme.indexOf('## Error codes'), readme.indexOf('\n## ', readme.indexOf('## Error codes') + 1))

t.test('the README lists every error code, with a meaning and an action', async (t) => {
  t.ok(section.length > 100, 'an Error codes section')
  const rows = new Map([...section.matchAll(/^\| `(SIDECAR_ERR_[A-Z_]+)` \| ([^|]+) \| ([^|]+) \|$/gm)].map((m) => [m[1], m]))
  for (const code of Object.values(codes)) {
    const row = rows.get(code)
    t.ok(row !== undefined && (row[2] ?? '').trim().length > 10 && (row[3] ?? '').trim().length > 5, `${code} has a row with a meaning and an action`)
  }
  t.same([...rows.keys()].filter((code) => !(Object.values(codes) as string[]).includes(code as string)), [], 'no row for a code that does not exist')
})

t.test('codes are unique: one code, one meaning', async (t) => {
  const values = Object.values(codes)
  t.equal(new Set(values).size, values.length)
})
