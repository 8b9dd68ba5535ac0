// tap enforces 100% or nothing; this keeps the floor we have reached instead (branches sit
// about 1.5 points above theirs: timing-dependent retry paths vary a little per run). Raise it when
// coverage goes up, never lower it to make a change pass.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

const FLOOR = { lines: 97, branches: 92.5, functions: 98.5 }

execFileSync('npx', ['tap', 'report', 'json-summary'], { stdio: 'ignore' })
const { total } = JSON.parse(readFileSync('.tap/report/coverage-summary.json', 'utf8'))
const short = Object.entries(FLOOR).filter(([k, floor]) => total[k].pct < floor)
for (const [k, floor] of Object.entries(FLOOR)) console.log(`coverage ${k}: ${total[k].pct}% (floor ${floor}%)`)
if (short.length > 0) {
  console.error(`coverage below the floor: ${short.map(([k]) => k).join(', ')}`)
  process.exit(1)
}
