import t from 'tap'
import { pino } from 'pino'
import { Browser, q, rawRequest } from '../helpers/client.js'
import { alertQueries, dashboardQueries, parseQuery, type Query } from '../helpers/deploy-queries.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { SECRET, testConfig } from '../helpers/sidecar.js'
import { TestApp } from '../helpers/upstream.js'
import { CookieCodec } from '../../src/session/cookie.js'
import { mintKey } from '../../src/session/key.js'
import { startSidecar } from '../../src/sidecar.js'

// deploy/grafana/session-sidecar.json and deploy/prometheus/alerts.yml may only query what the
// sidecar really exports: a running sidecar (Node's default metrics on, as in production) is
// driven through the outcomes the queries filter on, then every metric name, label and
// exact-match label value in the queries is looked up in its /metrics.

/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = new Set(['instance', 'job'])

interface Family { type: string, labels: Map<string, Set<string>> }

function parseExposition (text: string): Map<string, Family> {
  const families = new Map<string, Family>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(m[1] as string, { type: m[2] as string, labels: new Map() })
  for (const m of text.matchAll(/^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? \S+$/gm)) {
    const family = families.get(m[1] as string) ?? families.get((m[1] as string).replace(/_(bucket|sum|count)$/, ''))
    if (family === undefined) throw new Error(`a sample of no declared family: ${m[0]}`)
    for (const [, label, value] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      const values = family.labels.get(label as string) ?? new Set<string>()
      values.add(value as string)
      family.labels.set(label as string, values)
    }
  }
  return families
}

/**
 * The family a queried name reads, or why it reads none: a counter or gauge by its name, a
 * histogram only through _bucket, _sum and _count (a summary through _sum and _count).
 */
function resolve (families: Map<string, Family>, name: string): { family: Family, base: string } | string {
  const exact = families.get(name)
  if (exact !== undefined) return exact.type === 'histogram' || exact.type === 'summary' ? `${name} is a ${exact.type}: it has no series of that name (use _bucket, _sum or _count)` : { family: exact, base: name }
  const suffix = /^(.*)_(bucket|sum|count)$/.exec(name)
  const base = families.get(suffix?.[1] ?? '')
  if (suffix === null || base === undefined) return `${name} is not exported`
  if (base.type === 'histogram' || (base.type === 'summary' && suffix[2] !== 'bucket')) return { family: base, base: suffix[1] as string }
  return `${name}: ${suffix[1] as string} is a ${base.type}, it has no _${suffix[2] as string} series`
}

/** The problems of one query against the exported families. */
function problems (families: Map<string, Family>, query: Query): string[] {
  const found: string[] = []
  const { selectors, grouping } = parseQuery(query.expr)
  if (selectors.length === 0) found.push('no metric at all')
  const readable = new Set(TARGET_LABELS)
  for (const { name, matchers } of selectors) {
    const resolved = resolve(families, name)
    if (typeof resolved === 'string') {
      found.push(resolved)
      continue
    }
    const labels = resolved.family.labels
    for (const label of labels.keys()) readable.add(label)
    for (const { label, op, value } of matchers) {
      if (TARGET_LABELS.has(label)) continue
      const values = labels.get(label)
      if (values === undefined) found.push(`${name} has no label ${label} (labels seen: ${[...labels.keys()].join(', ') || 'none'})`)
      else if (op === '=' && !values.has(value)) found.push(`${name}{${label}="${value}"}: no such series (values seen: ${[...values].join(', ')})`)
    }
  }
  for (const label of [...grouping, ...(query.labels ?? [])]) {
    if (!readable.has(label)) found.push(`groups by ${label}, a label none of its metrics has`)
  }
  return found
}

t.test('every metric, label and label value the dashboard and the alert rules query is exported', async (t) => {
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const sidecar = await startSidecar(testConfig(app.url, [m.address]), pino({ level: 'silent' }))
  t.teardown(() => sidecar.close())

  // The outcomes the queries select on, for real.
  const user = new Browser()
  t.equal((await user.get(sidecar.url, `/login?set=${q({ user: 'ada' })}`)).status, 200, 'a new session (requests, memcached commands, app timings)')
  await user.get(sidecar.url, '/?rawSet=!!!')
  t.equal((await rawRequest(`${sidecar.url}/big?pad=x-big:200000`)).status, 502, 'a 502 the sidecar answered itself')
  await sidecar.store.flush(2000)
  await m.stop()
  // A signed cookie for a session this sidecar never held: memcached must produce it, and is down.
  const cookie = new CookieCodec([SECRET]).encode({ key: mintKey(), primary: m.address, backup: undefined, version: 1 })
  const degraded = await rawRequest(`${sidecar.url}/`, [['Cookie', `sid=${cookie}`]])
  t.equal(degraded.status, 200, 'a request whose session memcached could not produce (degraded, a memcached error)')

  const families = parseExposition(await (await fetch(`${sidecar.adminUrl}/metrics`)).text())
  const queries = [...dashboardQueries(), ...alertQueries()]
  t.ok(queries.length >= 20, `${queries.length} queries found`)
  for (const query of queries) t.same(problems(families, query), [], `${query.where}: ${query.expr.replace(/\s+/g, ' ')}`)
})

/** `metric{label="value"}` for every selector of the queries, and the bare names. */
const selected = (queries: Query[]): Set<string> => new Set(queries.flatMap((query) => parseQuery(query.expr).selectors.flatMap((s) => [s.name, ...s.matchers.filter((m) => m.op === '=').map((m) => `${s.name}{${m.label}="${m.value}"}`)])))

t.test('the dashboard shows what the README says it shows', async (t) => {
  const names = selected(dashboardQueries())
  for (const needed of [
    'sidecar_requests_total', 'sidecar_generated_responses_total', 'sidecar_upstream_duration_seconds_bucket{result="response"}',
    'sidecar_memcached_node_up', 'sidecar_memcached_op_seconds_count', 'sidecar_pending_writes', 'sidecar_write_failures_total',
    'sidecar_dropped_writes_total', 'sidecar_stale_reads_total', 'sidecar_requests_total{outcome="degraded"}', 'sidecar_forged_cookies_total',
    'process_resident_memory_bytes'
  ]) t.ok(names.has(needed), `it queries ${needed}`)
})

t.test('the alert rules are the ones the README lists, each on its metric', async (t) => {
  const expected: Record<string, string> = {
    SessionSidecarMemcachedNodeDown: 'sidecar_memcached_node_up',
    SessionSidecarMemcachedErrors: 'sidecar_memcached_op_seconds_count{result="error"}',
    SessionSidecarWriteFailures: 'sidecar_write_failures_total',
    SessionSidecarWritesDropped: 'sidecar_dropped_writes_total',
    SessionSidecarPendingWrites: 'sidecar_pending_writes',
    SessionSidecarStaleReads: 'sidecar_stale_reads_total',
    SessionSidecarSessionsUnavailable: 'sidecar_requests_total{outcome="degraded"}',
    SessionSidecarForgedCookies: 'sidecar_forged_cookies_total',
    SessionSidecarRejectedCopies: 'sidecar_rejected_copies_total',
    SessionSidecarUpstreamErrors: 'sidecar_generated_responses_total'
  }
  const alerts = alertQueries()
  t.same(alerts.map((a) => a.where.replace(/^alert /, '')).sort(), Object.keys(expected).sort(), 'these alerts, no others')
  for (const alert of alerts) {
    const name = alert.where.replace(/^alert /, '')
    t.ok(selected([alert]).has(expected[name] as string), `${name} reads ${expected[name] as string}`)
  }
})

t.test('the check itself catches a wrong name, a wrong suffix, a wrong label and an unseen value', async (t) => {
  const families = parseExposition([
    '# TYPE a_total counter', 'a_total{outcome="hit"} 1',
    '# TYPE h_seconds histogram', 'h_seconds_bucket{result="ok",le="+Inf"} 1', 'h_seconds_sum{result="ok"} 1', 'h_seconds_count{result="ok"} 1',
    '# TYPE g gauge', 'g 1', ''
  ].join('\n'))
  const check = (expr: string): string[] => problems(families, { where: 'test', expr })
  t.same(check('sum by (outcome) (rate(a_total{outcome="hit", instance=~"$instance"}[5m]))'), [], 'a good query passes')
  t.same(check('histogram_quantile(0.9, sum by (le) (rate(h_seconds_bucket{result="ok"}[$__rate_interval])))'), [], 'a histogram through _bucket')
  t.match(check('rate(b_total[5m])'), [/b_total is not exported/])
  t.match(check('h_seconds'), [/is a histogram/], 'a bare histogram name')
  t.match(check('a_total_count'), [/a_total is a counter, it has no _count series/], '_count of a counter')
  t.match(check('rate(a_total{reason="x"}[5m])'), [/has no label reason/])
  t.match(check('rate(a_total{outcome="miss"}[5m])'), [/no such series/])
  t.match(check('sum by (node) (g)'), [/groups by node/])
  t.same(check('a_total{outcome!="miss"} offset 5m and g'), [], 'negative matchers and offsets')
})
