/**
 * The fault-injection checker: `npm run chaos -- --duration 10m --seed 7`.
 *
 *   --duration <n>[ms|s|m]  how long faults run (default 2m); start-up, healing and the final
 *                           reads come on top
 *   --seed <n>              the fault schedule and the users' choices (default 1)
 *   --write async|sync      memcached.write of every sidecar (default async)
 *   --revalidate-ms <n>     cache.revalidateMs of every sidecar (default 1000)
 *   --users <n>             simulated users (default 16)
 *   --overlap               faults may overlap: beyond the guarantee; anomalies are classified
 *   --async-window-ms <n>   write: async: an update lost when its sidecar was killed up to this
 *                           long after answering is excused and counted apart (default 50)
 *   --no-scale-out          no memcached nodes and sidecars added mid-run
 *   --out <file>            the JSON report (default chaos/results/<seed>-<write>[-overlap].json)
 *
 * Prints the fault timeline, a summary table and the anomalies; the JSON report also has the
 * schedule, every anomaly, the requests of the sessions concerned and the sidecars' logs when
 * there are anomalies. Exit status: 1 when an anomaly happened inside the guarantee, else 0.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, isAbsolute, join } from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT } from '../harness/index.js'
import { runChaos, type ChaosResult } from './lib/experiment.js'
import { details, summary, timeline } from './lib/report.js'

function fail (message: string): never {
  process.stderr.write(`chaos: ${message}\n`)
  process.exit(2)
}

function duration (text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim())
  if (m === null) fail(`--duration: "${text}" is not a duration (90s, 10m, 5000ms)`)
  const n = Number(m[1])
  const ms = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000
  if (ms < 5000 || ms > 3_600_000) fail('--duration must be between 5s and 60m')
  return ms
}

function integer (name: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${name} must be an integer in [${min}, ${max}], got "${text}"`)
  return n
}

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string', default: '2m' },
    seed: { type: 'string' },
    write: { type: 'string', default: 'async' },
    'revalidate-ms': { type: 'string' },
    users: { type: 'string' },
    overlap: { type: 'boolean', default: false },
    'async-window-ms': { type: 'string' },
    'no-scale-out': { type: 'boolean', default: false },
    'log-level': { type: 'string', default: 'warn' },
    out: { type: 'string' }
  }
})
if (flags.write !== 'async' && flags.write !== 'sync') fail('--write must be async or sync')
const options = {
  seed: integer('seed', flags.seed, 1, 0, 0xffffffff),
  durationMs: duration(flags.duration),
  write: flags.write,
  revalidateMs: integer('revalidate-ms', flags['revalidate-ms'], 1000, 100, 60_000),
  overlap: flags.overlap,
  users: integer('users', flags.users, 16, 1, 200),
  asyncWindowMs: integer('async-window-ms', flags['async-window-ms'], 50, 0, 60_000),
  scaleOut: !flags['no-scale-out'],
  logLevel: flags['log-level'],
  progress: (line: string) => process.stdout.write(`  ${line}\n`)
} as const
const out = flags.out === undefined
  ? join(ROOT, 'chaos', 'results', `${options.seed}-${options.write}${options.overlap ? '-overlap' : ''}.json`)
  : isAbsolute(flags.out) ? flags.out : join(process.cwd(), flags.out)

// Ctrl-C: the run's processes die with us (the cluster's exit hook kills them by pid).
process.once('SIGINT', () => process.exit(130))
process.once('SIGTERM', () => process.exit(143))

console.log(`chaos: seed ${options.seed}, write: ${options.write}, ${flags.duration} of faults${options.overlap ? ', overlapping' : ''}`)
const result = await runChaos(options)
console.log('\nfault timeline (as run):')
console.log(timeline(result))
console.log(`\n${summary(result)}\n`)
console.log(details(result))
writeReport(result, out)
console.log(`\nreport: ${out}`)
process.exit(result.findings.some((f) => f.verdict === 'within') ? 1 : 0)

function writeReport (r: ChaosResult, file: string): void {
  const concerned = new Set(r.findings.map((f) => f.session))
  // The requests of those sessions, and the logins that created or ended them (sent with the previous session's cookie).
  const related = new Set(r.sessions.filter((s) => concerned.has(s.id)).flatMap((s) => [s.createdBy, s.endRid ?? '']))
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, JSON.stringify({
    options: { ...r.options, progress: undefined },
    wallT0: r.wallT0,
    summary: summary(r),
    schedule: r.schedule.faults,
    faults: r.faults,
    findings: r.findings,
    notes: r.notes,
    counters: r.counters,
    sessions: r.sessions.filter((s) => concerned.has(s.id)),
    exchanges: r.exchanges.filter((e) => (e.session !== undefined && concerned.has(e.session)) || related.has(e.rid)).map((e) => ({ ...e, view: e.view === undefined ? undefined : { ...e.view, items: Array.from(e.view.items) } })),
    logs: r.findings.length > 0 ? r.logs : undefined
  }, null, 1))
}
