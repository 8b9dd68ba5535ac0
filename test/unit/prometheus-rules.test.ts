import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { ALERTS, dashboardQueries } from '../helpers/deploy-queries.js'

// deploy/prometheus/alerts.yml is valid for Prometheus and its alerts fire as its unit tests
// (alerts.test.yml) say; the dashboard's queries are valid PromQL. promtool comes with Debian's
// `prometheus` package, which .ci/run installs: without it this test fails, it never skips.

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'sidecar-promtool-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function promtool (...args: string[]): { status: number | null, output: string } {
  const res = spawnSync('promtool', args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  if (res.error !== undefined) throw new Error(`promtool could not run (${res.error.message}): install the Debian package prometheus (.ci/run does)`)
  return { status: res.status, output: `${res.stdout}${res.stderr}` }
}

t.test('promtool check rules: the alert rules are valid', async (t) => {
  const res = promtool('check', 'rules', ALERTS)
  t.equal(res.status, 0, res.output)
  t.match(res.output, /SUCCESS: \d+ rules found/)
})

t.test('promtool test rules: the alerts fire when and where alerts.test.yml says, and only then', async (t) => {
  const res = promtool('test', 'rules', 'deploy/prometheus/alerts.test.yml')
  t.equal(res.status, 0, res.output)
  t.match(res.output, /SUCCESS/)
})

t.test('every dashboard query is valid PromQL (checked as recording rules, Grafana\'s variables filled in)', async (t) => {
  const queries = dashboardQueries()
  const rules = queries.map((query, i) => ({
    record: `dashboard:query_${i}`,
    expr: query.expr.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*')
  }))
  const file = join(dir, 'dashboard-rules.yml')
  writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules }] }))
  const res = promtool('check', 'rules', file)
  t.equal(res.status, 0, res.output)
  t.match(res.output, `SUCCESS: ${queries.length} rules found`)
})

t.test('and the check would catch an invalid rule', async (t) => {
  const file = join(dir, 'broken.yml')
  writeFileSync(file, stringify({ groups: [{ name: 'broken', rules: [{ alert: 'Broken', expr: 'sum(rate(sidecar_requests_total[5m])' }] }] }))
  const res = promtool('check', 'rules', file)
  t.not(res.status, 0, 'promtool fails it')
  t.match(res.output, /FAILED|parse error/i)
})

t.test('.ci/run installs promtool (Debian\'s prometheus package) when it is missing, and prints its version', async (t) => {
  const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8')
  t.match(ci, /^command -v promtool >\/dev\/null 2>&1 \|\| need\+=\(prometheus\)$/m)
  t.match(ci, /^promtool --version/m)
})
