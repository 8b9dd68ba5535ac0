import t from 'tap'
import { readFileSync } from 'node:fs'

// README, Quick start: exactly two copy-paste lines for a machine with only Node and apt. The
// first installs and runs the demo; the second installs every system package the tests need
// and runs the test command, the one .ci/run ends with. The package list must be .ci/run's.

const readme = readFileSync('README.md', 'utf8')
const section = /## Quick start\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? ''
const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? ''
const lines = block.split('\n').filter((l) => l.trim() !== '')
const ci = readFileSync('.ci/run', 'utf8')

t.test('the quick start is two lines: the demo, then the tests', async (t) => {
  t.equal(lines.length, 2, 'two lines')
  t.equal(lines[0], 'npm ci && npm run demo', 'the first installs and runs the demo')
  t.match(lines[1], /&& npm ci && npm test$/, 'the second ends with the test command')
})

t.test('the second line installs exactly the packages .ci/run installs when missing, and .ci/run runs the same test command', async (t) => {
  const apt = /apt-get install -y --no-install-recommends ([a-z0-9 .+-]+?) &&/.exec(lines[1] ?? '')?.[1]?.split(' ') ?? []
  const needed = [...ci.matchAll(/need\+=\(([^)]+)\)/g)].flatMap((m) => (m[1] as string).split(' '))
  t.ok(needed.length > 5, `.ci/run installs ${needed.length} packages`)
  t.same([...apt].sort(), [...needed].sort())
  t.match(ci.trim().split('\n').at(-1), /^npm test$/, '.ci/run ends with npm test')
})
