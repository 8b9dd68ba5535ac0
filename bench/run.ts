/**
 * The benchmark runner: `npm run bench` (full), `npm run bench -- --smoke` or BENCH_SMOKE=1
 * (about 1 s per scenario, 1k sessions for the heap), `npm run bench -- --profile` (CPU
 * profile, node --cpu-prof, of the proxy process under the (d) 1 KB hit workload; with
 * BENCH_ONLY=<ids> of those scenarios' proxies instead, e.g. sidecar-merge-async,bare-proxy).
 *
 * The load table has the issue's scenarios (a)-(g) and, right after (b), two peers: (i) nginx
 * proxy_pass with upstream keepalive and (j) node:http + undici with no framework (kept under
 * `peers` in the JSON).
 *
 * `npm run bench -- --dimensions` or BENCH_DIMENSIONS=1 adds how cost grows, a table each
 * (about 6 more minutes; with --smoke, tiny counts in about 45 s): session-size (1/4/8 KB, hit
 * and change), memcached-nodes (the change path with 2 and 8 nodes; 8 memcached processes are
 * started), miss-load (first requests on a cold sidecar), cached-sessions (hits with 10k, 100k
 * and 1M sessions cached, scaled down when creating them would pass 3 minutes; and the heap
 * measured at 1M too). BENCH_ONLY / --only may also name dimensions, which then run alone.
 *
 * Environment: BENCH_DURATION (s, default 5; smoke 1), BENCH_WARMUP (s, default 2; smoke 0.5),
 * BENCH_ROUNDS (default 1: run the whole list N times, report each scenario's median round;
 * each dimension's points too, a round over all of them in turn, except miss-load's single pass),
 * BENCH_OUT (JSON path, default bench/results/latest.json), BENCH_ONLY (scenario ids, comma
 * separated), BENCH_SMOKE=1, BENCH_PROFILE=1, BENCH_DIMENSIONS=1. Transfer scenarios
 * (large-upload: 1 GiB through the sidecar, throughput and RSS) run only when BENCH_ONLY /
 * --only names them.
 *
 * Every server runs in its own process; the load generator (autocannon) runs here. Children
 * are killed on any exit, error or signal.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { dirname, isAbsolute, join } from 'node:path'
import { parseArgs } from 'node:util'
import { MemcachedProcess } from '../test/helpers/memcached.js'
import { announced, Children } from './lib/children.js'
import { CONNECTIONS, round2 } from './lib/load.js'
import { measure, type Timing } from './lib/measure.js'
import { summarize } from './lib/profile.js'
import { evaluate, growthTable, heapTable, loadTable, targetTable, transferTable, type HeapResult, type ScenarioFailure, type ScenarioResult, type TransferResult } from './lib/report.js'
import { BENCH_DIR, ROOT } from './lib/root.js'
import type { DimensionContext, Dimension, DimensionFailure, DimensionResult } from './lib/dimension.js'
import type { BenchContext, Scenario, TransferScenario } from './lib/scenario.js'
import { HAPROXY, NGINX, startScript } from './lib/servers.js'
import cachedSessions from './dimensions/cached-sessions.js'
import memcachedNodes from './dimensions/memcached-nodes.js'
import missLoad from './dimensions/miss-load.js'
import sessionSize from './dimensions/session-size.js'
import bareProxy from './scenarios/bare-proxy.js'
import expressSessionChange from './scenarios/express-session-change.js'
import expressSessionHit from './scenarios/express-session-hit.js'
import largeUpload from './scenarios/large-upload.js'
import minimalProxy from './scenarios/minimal-proxy.js'
import nginxProxy from './scenarios/nginx-proxy.js'
import roundRobinHit from './scenarios/round-robin-hit.js'
import sidecarHit from './scenarios/sidecar-hit.js'
import sidecarMergeAsync from './scenarios/sidecar-merge-async.js'
import sidecarMergeSync from './scenarios/sidecar-merge-sync.js'
import sidecarNoSession from './scenarios/sidecar-no-session.js'
import upstream from './scenarios/upstream.js'

/** In the order they run; (b) comes before everything that is compared to it, the peers right after it. */
const SCENARIOS: readonly Scenario[] = [
  upstream, bareProxy, nginxProxy, minimalProxy, sidecarNoSession, sidecarHit, sidecarMergeAsync, sidecarMergeSync,
  roundRobinHit, expressSessionHit, expressSessionChange
]
/** Opt-in, after the load scenarios: only when --only names them (each moves GiBs, once). */
const TRANSFERS: readonly TransferScenario[] = [largeUpload]
/** Opt-in, after the transfers: with --dimensions (all), or those --only names. The largest last. */
const DIMENSIONS: readonly Dimension[] = [sessionSize, memcachedNodes, missLoad, cachedSessions]

const { values: flags } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: process.env.BENCH_SMOKE === '1' },
    profile: { type: 'boolean', default: process.env.BENCH_PROFILE === '1' },
    out: { type: 'string', default: process.env.BENCH_OUT },
    only: { type: 'string', default: process.env.BENCH_ONLY },
    dimensions: { type: 'boolean', default: process.env.BENCH_DIMENSIONS === '1' }
  }
})
const smoke = flags.smoke === true
const profiling = flags.profile === true
const seconds = positive('BENCH_DURATION', smoke ? 1 : 5)
const warmup = positive('BENCH_WARMUP', smoke ? 0.5 : 2)
const timing: Timing = { seconds, warmup }
const rounds = Math.round(positive('BENCH_ROUNDS', 1, 'rounds', 20))
const out = flags.out === undefined ? join(ROOT, 'bench', 'results', 'latest.json') : isAbsolute(flags.out) ? flags.out : join(process.cwd(), flags.out)
const only = flags.only?.split(',').map((s) => s.trim()).filter((s) => s !== '')
const scenarios = profiling && only === undefined ? [sidecarHit] : SCENARIOS.filter((s) => only === undefined || only.includes(s.id))
const transfers = profiling || only === undefined ? [] : TRANSFERS.filter((s) => only.includes(s.id))
const dimensions = profiling ? [] : DIMENSIONS.filter((d) => flags.dimensions === true || only?.includes(d.id) === true)
if (scenarios.length === 0 && transfers.length === 0 && dimensions.length === 0) fail(`no scenario matches ${String(flags.only)}; ids: ${[...SCENARIOS, ...TRANSFERS, ...DIMENSIONS].map((s) => s.id).join(', ')}${profiling ? ' (--profile: load scenarios only)' : ''}`)
/** Heap per session at these counts; a million too when the cached-sessions dimension runs (not in smoke mode). */
const heapCounts = smoke ? [1000] : [10_000, 100_000, ...(dimensions.includes(cachedSessions) ? [1_000_000] : [])]
/** Beyond 100k sessions the heap measurement stops creating after this long (s) and measures what it has. */
const HEAP_BUDGET_S = 180
/** memcached processes: 2, or 8 for the memcached-nodes dimension (the scenarios use the first 2). */
const memcachedCount = dimensions.includes(memcachedNodes) ? 8 : 2
/** memcached -m (MB): room for a million sessions' copies when the cached-sessions dimension runs, else the helper's 64. */
const memcachedMb = dimensions.includes(cachedSessions) ? 3072 : 64

function positive (name: string, fallback: number, unit = 'seconds', max = 600): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isFinite(n) || n <= 0 || n > max) fail(`${name} must be a number of ${unit} in (0, ${max}], got "${raw}"`)
  return n
}

function fail (message: string): never {
  process.stderr.write(`bench: ${message}\n`)
  process.exit(2)
}

const progress = (text: string): void => { process.stderr.write(text) }

const children = new Children()
const scratch = mkdtempSync(join(tmpdir(), 'sidecar-bench-'))
let cleaned = false
/** Synchronous last resort: kill every child by pid, remove the scratch folder. */
function cleanupNow (): void {
  if (cleaned) return
  cleaned = true
  children.killAllNow()
  rmSync(scratch, { recursive: true, force: true })
}
process.on('exit', cleanupNow)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    progress(`\nbench: ${signal}, stopping every child process\n`)
    cleanupNow()
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1))
  })
}

async function main (): Promise<number> {
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 1024 ** 3), node: process.version, platform: `${process.platform} ${process.arch}` }
  const generatorNote = `load: autocannon in the runner process, ${CONNECTIONS} connections, pipelining 1, warm-up ${warmup} s then ${seconds} s per scenario${rounds > 1 ? `, ${rounds} rounds (median round shown)` : ''}`
  const serverNote = 'servers: each in its own process (the sidecar is the built CLI, dist/cli.js, with a YAML config), so the load generator never shares their event loop'
  const cpuNote = `machine: ${machine.cpus} CPUs shared by the load generator, the proxies, the app and ${memcachedCount} memcached processes (${machine.cpuModel}); compare rows with each other, not with other machines`
  const busy = await cpuBusy(1000)
  const loadNote = busy > 25 ? `WARNING: the CPUs were ${busy}% busy before the run started: other work is competing, numbers will be low and noisy` : undefined
  progress(`session-sidecar benchmarks${smoke ? ' (smoke mode: short runs, numbers not meaningful)' : ''}\n  ${generatorNote}\n  ${serverNote}\n  ${cpuNote}\n${loadNote === undefined ? '' : `  ${loadNote}\n`}`)

  const memcached: MemcachedProcess[] = []
  for (let i = 0; i < memcachedCount; i++) {
    const m = await MemcachedProcess.start('127.0.0.1', undefined, memcachedMb)
    children.adopt('memcached', m.pid)
    memcached.push(m)
  }
  const app = await startScript(children, 'upstream', [])
  const ctx: BenchContext = {
    children,
    dir: scratch,
    upstream: app.url,
    upstreamPid: app.pid,
    memcached: memcached.slice(0, 2),
    nodes: memcached.slice(0, 2).map((m) => m.address),
    users: CONNECTIONS,
    nodeFlags: []
  }
  const steps = rounds * scenarios.length + transfers.length + dimensions.length + (profiling ? 0 : heapCounts.length)
  const measured = new Map<string, Array<ScenarioResult | ScenarioFailure>>(scenarios.map((s) => [s.id, []]))
  let step = 0
  for (let round = 1; round <= rounds; round++) {
    for (const scenario of scenarios) {
      progress(`[${++step}/${steps}] ${scenario.ref} ${scenario.title}${rounds > 1 ? ` (round ${round}/${rounds})` : ''}: starting...`)
      let result: ScenarioResult | ScenarioFailure
      try {
        const profileDir = join(scratch, `profile-${scenario.id}`)
        const scenarioCtx = profiling ? { ...ctx, nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : ctx
        result = await measure(scenario, scenarioCtx, timing, progress)
      } catch (err) {
        progress(` FAILED: ${(err as Error).message}\n`)
        result = { id: scenario.id, ref: scenario.ref, title: scenario.title, error: (err as Error).message }
      }
      measured.get(scenario.id)?.push(result)
    }
  }
  // Per scenario, the round with the median req/s (its latencies with it); any failed round fails it.
  const results = scenarios.map((s): ScenarioResult | ScenarioFailure => {
    const all = measured.get(s.id) ?? []
    const failure = all.find((r): r is ScenarioFailure => 'error' in r)
    if (failure !== undefined) return failure
    const ok = (all as ScenarioResult[]).slice().sort((a, b) => a.reqPerSec - b.reqPerSec)
    const median = ok[Math.floor((ok.length - 1) / 2)] as ScenarioResult
    return { ...median, roundsReqPerSec: (all as ScenarioResult[]).map((r) => r.reqPerSec) }
  })

  if (profiling) {
    await app.stop()
    for (const m of memcached) { await m.stop(); children.forget(m.pid) }
    return reportProfile(results)
  }

  const moved: Array<TransferResult | ScenarioFailure> = []
  for (const transfer of transfers) {
    progress(`[${++step}/${steps}] ${transfer.ref} ${transfer.title}: starting...`)
    try {
      const r = await transfer.measure(ctx, progress)
      progress(` ${r.sidecarMBps.toLocaleString('en-US')} MB/s, sidecar RSS +${r.rssGrowthMB} MB\n`)
      moved.push(r)
    } catch (err) {
      progress(` FAILED: ${(err as Error).message}\n`)
      moved.push({ id: transfer.id, ref: transfer.ref, title: transfer.title, error: (err as Error).message })
    }
  }

  const grown: Array<DimensionResult | DimensionFailure> = []
  const dimensionCtx: DimensionContext = { ...ctx, timing, rounds, smoke, spareMemcached: memcached.slice(2), progress }
  for (const dimension of dimensions) {
    progress(`[${++step}/${steps}] ${dimension.title}\n`)
    try {
      grown.push(await dimension.run(dimensionCtx))
    } catch (err) {
      progress(` FAILED: ${(err as Error).message}\n`)
      grown.push({ id: dimension.id, title: dimension.title, error: (err as Error).message })
    }
  }

  const heap: HeapResult[] = []
  let heapFailed = false
  for (const n of heapCounts) {
    progress(`[${++step}/${steps}] heap per cached 1 KB session, ${n.toLocaleString('en-US')} sessions (node --expose-gc, store API): creating...`)
    try {
      // A million sessions need more than Node's default heap limit leaves room for.
      const big = n > 100_000 ? { flags: ['--max-old-space-size=6144'], budget: [String(HEAP_BUDGET_S)] } : { flags: [], budget: [] }
      const child = children.spawn('heap', process.execPath, ['--expose-gc', ...big.flags, join(BENCH_DIR, 'heap.js'), String(n), ctx.nodes.join(','), ...big.budget], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
      const h = await announced<HeapResult>('heap measurement', child, 300_000 + HEAP_BUDGET_S * 1000)
      heap.push(h)
      progress(` ${h.heapBytesPerSession.toLocaleString('en-US')} bytes/session${h.sessions < n ? ` (${h.sessions.toLocaleString('en-US')} created within ${HEAP_BUDGET_S} s)` : ''}\n`)
    } catch (err) {
      heapFailed = true
      progress(` FAILED: ${(err as Error).message}\n`)
    }
  }

  await app.stop()
  for (const m of memcached) { await m.stop(); children.forget(m.pid) }

  // Ratios once (b) is known, whatever the order.
  const bare = results.find((r): r is ScenarioResult => r.id === 'bare-proxy' && !('error' in r))
  for (const [i, r] of results.entries()) {
    if (!('error' in r)) results[i] = { ...r, ratioToBare: bare === undefined ? NaN : round2(r.reqPerSec / bare.reqPerSec) }
  }
  const targets = evaluate(results, heap, moved)
  const peerIds = new Set(SCENARIOS.filter((s) => s.peer === true).map((s) => s.id))
  const failed = results.filter((r) => 'error' in r).length + moved.filter((r) => 'error' in r).length + grown.filter((d) => 'error' in d).length
  const report = [
    '',
    `session-sidecar benchmarks, ${new Date().toISOString()}${smoke ? ' (SMOKE MODE: too short to mean anything)' : ''}`,
    `  ${generatorNote}`,
    `  ${serverNote}`,
    `  ${cpuNote}`,
    `  memcached: ${memcachedCount} real memcached ${memcachedVersion()} processes (the scenarios use 2); ops/req = (cmd_get+cmd_set+cmd_touch+delete_hits+delete_misses over all nodes) / requests sent`,
    `  sessions: 1 KB of JSON each, one per connection (${CONNECTIONS} users); the sidecar revalidates a cached session once per cache.revalidateMs (30 s)`,
    ...(loadNote === undefined ? [] : [`  ${loadNote}`]),
    `  peers: (i) ${nginxVersion()}, one process (as one worker), keepalive 64 to the app; (j) node:http + undici Pool (bench/servers/minimal-proxy.ts)`,
    `  (f) balancer: ${HAPROXY === undefined ? 'node:http round-robin proxy (bench/servers/balancer.ts)' : `HAProxy ${HAPROXY}, roundrobin`}; (g) is the app itself (no proxy in front)`,
    '',
    ...(results.length > 0 ? [loadTable(results), ''] : []),
    ...(moved.length > 0 ? [transferTable(moved), ''] : []),
    ...grown.flatMap((d) => 'error' in d ? [`${d.title}: FAILED: ${d.error}`, ''] : [`${d.title}:`, growthTable(d), ...d.notes.map((n) => `  ${n}`), '']),
    heapTable(heap),
    ...heap.filter((h) => h.sessions < h.requested).map((h) => `  ${h.requested.toLocaleString('en-US')} asked: ${h.sessions.toLocaleString('en-US')} created within the ${HEAP_BUDGET_S} s budget (${h.createSeconds.toFixed(0)} s), measured at that`),
    '',
    targetTable(targets),
    ''
  ].join('\n')
  process.stdout.write(report)
  if (targets.some((t) => !t.pass)) process.stdout.write('A target was missed: `npm run bench -- --profile` profiles the sidecar under the (d) workload (BENCH_ONLY=<ids> for others).\n')

  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, `${JSON.stringify({
    date: new Date().toISOString(),
    smoke,
    machine: { ...machine, cpuBusyPercentBeforeRun: busy },
    settings: { seconds, warmupSeconds: warmup, rounds, connections: CONNECTIONS, pipelining: 1, users: CONNECTIONS, sessionJsonBytes: 1024, heapCounts, dimensions: dimensions.map((d) => d.id), memcachedProcesses: memcachedCount, balancer: HAPROXY === undefined ? 'node' : 'haproxy', sidecar: 'built CLI child process (dist/cli.js)' },
    scenarios: results.filter((r) => !peerIds.has(r.id)),
    peers: results.filter((r) => peerIds.has(r.id)),
    transfers: moved,
    dimensions: grown,
    heap,
    targets
  }, null, 2)}\n`)
  process.stdout.write(`JSON: ${out}\n`)
  return failed > 0 || heapFailed ? 1 : 0
}

/** How busy all CPUs were over `ms` (%), before we add any load: someone else's work skews everything. */
async function cpuBusy (ms: number): Promise<number> {
  const total = (): { idle: number, all: number } => cpus().reduce((acc, c) => ({ idle: acc.idle + c.times.idle, all: acc.all + c.times.user + c.times.nice + c.times.sys + c.times.irq + c.times.idle }), { idle: 0, all: 0 })
  const a = total()
  await new Promise((resolve) => setTimeout(resolve, ms))
  const b = total()
  return b.all === a.all ? 0 : Math.round(100 * (1 - (b.idle - a.idle) / (b.all - a.all)))
}

function memcachedVersion (): string {
  try {
    return execFileSync('memcached', ['-V'], { encoding: 'utf8' }).trim().replace(/^memcached\s*/, '')
  } catch {
    return ''
  }
}

/** "nginx 1.22.1" (nginx -v answers on stderr). */
function nginxVersion (): string {
  if (NGINX === undefined) return 'nginx (not installed)'
  const answer = spawnSync(NGINX, ['-v'], { encoding: 'utf8' })
  return `nginx ${/nginx\/(\S+)/.exec(answer.stderr)?.[1] ?? ''}`.trim()
}

/** Summaries of the CPU profiles the measured proxies wrote when they exited. */
function reportProfile (results: ReadonlyArray<ScenarioResult | ScenarioFailure>): number {
  let code = 0
  for (const r of results) {
    const dir = join(scratch, `profile-${r.id}`)
    const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort() : []
    if ('error' in r || files.length === 0) {
      process.stderr.write(`bench: ${r.ref} ${r.title}: no profile${'error' in r ? ` (${r.error})` : ' (is this scenario served by a proxy process?)'}\n`)
      code = 1
      continue
    }
    for (const [i, file] of files.entries()) {
      const kept = join(ROOT, 'bench', 'results', `${r.id}${files.length > 1 ? `-${i + 1}` : ''}.cpuprofile`)
      mkdirSync(dirname(kept), { recursive: true })
      copyFileSync(join(dir, file), kept)
      const summary = summarize(kept)
      process.stdout.write(`\nCPU profile (node --cpu-prof) of the proxy process, ${r.ref} ${r.title}: startup, warm-up ${warmup} s and ${seconds} s of load at ${r.reqPerSec.toLocaleString('en-US')} req/s\n`)
      process.stdout.write(`busy (non-idle) CPU ${summary.busyMs} ms; ${kept} opens in Chrome DevTools\n\ntop self time (% of busy):\n`)
      for (const f of summary.top) process.stdout.write(`  ${f.percent.toFixed(1).padStart(5)}%  ${f.name}  ${f.where}\n`)
      process.stdout.write('\nself time by origin:\n')
      for (const o of summary.byOrigin) process.stdout.write(`  ${o.percent.toFixed(1).padStart(5)}%  ${o.origin}\n`)
      if (summary.ownInclusive.length > 0) {
        process.stdout.write('\nsession-sidecar functions (src/), inclusive time (% of busy; loadSession and onResponse hand over to fastify synchronously, so theirs include the proxying after them):\n')
        for (const f of summary.ownInclusive) process.stdout.write(`  ${f.percent.toFixed(1).padStart(5)}%  ${f.name}  ${f.where}\n`)
      }
    }
  }
  return code
}

main().then((code) => {
  cleanupNow()
  process.exit(code)
}, (err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`)
  cleanupNow()
  process.exit(1)
})
