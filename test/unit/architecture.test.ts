import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

// ARCHITECTURE.md gives every file in src/ one line: a file added without one, or a line left
// for a file that was moved or removed, fails here.

const root = fileURLToPath(new URL('../../', import.meta.url))
const page = readFileSync(`${root}ARCHITECTURE.md`, 'utf8')
const sources = (readdirSync(`${root}src`, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => `src/${f.replaceAll('\\', '/')}`).sort()
const named = new Set([...page.matchAll(/`(src\/[^`\s]+\.ts)`/g)].map((m) => m[1] as string))

t.test('ARCHITECTURE.md has a line for every file in src/', async (t) => {
  t.ok(sources.length > 20, `src/ holds ${sources.length} files`)
  t.same(sources.filter((f) => !named.has(f)), [], 'every src/ file is named')
  const rows = new Set([...page.matchAll(/^\| `(src\/[^`]+)` \| [^|]{10,}\|$/gm)].map((m) => m[1] as string))
  for (const file of sources) t.ok(rows.has(file), `${file} has a row that says what it does`)
})

t.test('ARCHITECTURE.md names no file that does not exist', async (t) => {
  t.same([...named].filter((f) => !existsSync(`${root}${f}`)), [], 'every src/ path it names exists')
})
