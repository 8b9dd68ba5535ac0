import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'

// The benchmark's smoke mode (issue 5) still runs end to end: every scenario measured, JSON
// written with numbers in every field. No timing is asserted: this machine's speed and load
// are not the code's behaviour.

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SCENARIOS = [
  'upstream', 'bare-proxy', 'sidecar-no-session', 'sidecar-hit', 'sidecar-merge-async',
  'sidecar-merge-sync', 'round-robin-hit', 'express-session-hit', 'express-session-change'
]
const NUMERIC = ['requests', 'requestsSent', 'seconds', 'reqPerSec', 'p50Ms', 'p99Ms', 'non2xx', 'errors', 'timeouts', 'ratioToBare', 'memcachedOps', 'memcachedOpsPerRequest', 'cpuUsPerRequest', 'cpuBusy']

// No coverage from the benchmark's processes: bench/ is a tool, not the product, and its
// files would count against the coverage floor. (tap's processinfo reads this variable in
// every process it instruments; the runner's children inherit it.)
const env = { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0' }

t.setTimeout(300_000)

t.test('npm run bench -- --smoke finishes, exits 0 and writes every scenario as numbers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // What `npm run bench` does, minus rebuilding dist/ (other test files run the built CLI).
  await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.bench.json'], { cwd: ROOT, env, timeout: 120_000 })
  const out = join(dir, 'smoke.json')
  const child = spawn(process.execPath, [join(ROOT, 'dist-bench', 'bench', 'run.js'), '--smoke', '--out', out], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr.on('data', (c: Buffer) => { output += c.toString() })
  t.teardown(() => {
    // A runner still going (the test failed or timed out) stops its own children on SIGTERM.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
  })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  if (code !== 0) t.comment(output)
  t.equal(code, 0, 'exit 0')
  t.match(output, /\[1\/\d+\] \(a\) upstream app directly.*warm-up.*measuring/, 'progress is printed')

  const json = JSON.parse(readFileSync(out, 'utf8')) as {
    smoke: boolean
    scenarios: Array<Record<string, unknown>>
    heap: Array<Record<string, unknown>>
    targets: Array<Record<string, unknown>>
  }
  t.equal(json.smoke, true)
  t.same(json.scenarios.map((s) => s.id), SCENARIOS, 'every scenario, in order')
  for (const s of json.scenarios) {
    const bad = NUMERIC.filter((k) => typeof s[k] !== 'number' || !Number.isFinite(s[k]))
    t.same(bad, [], `${String(s.id)}: numeric ${NUMERIC.join(', ')}`)
    t.ok((s.cpuUsPerRequest as number) > 0, `${String(s.id)}: its own processes' CPU per request is measured (${String(s.cpuUsPerRequest)} µs)`)
  }
  t.equal(json.heap.length, 1, 'one heap measurement in smoke mode')
  for (const h of json.heap) {
    t.equal(h.sessions, 1000)
    t.ok(typeof h.heapBytesPerSession === 'number' && Number.isFinite(h.heapBytesPerSession), 'heap bytes per session is a number')
  }
  t.ok(json.targets.length >= 5 && json.targets.every((x) => typeof x.pass === 'boolean'), 'every target evaluated as PASS or MISS')
})
