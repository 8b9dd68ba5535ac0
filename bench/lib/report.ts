import type { DimensionResult } from './dimension.js'
import type { LoadResult } from './load.js'

export interface ScenarioResult extends LoadResult {
  readonly id: string
  readonly ref: string
  readonly title: string
  /** req/s relative to (b), the bare proxy. */
  readonly ratioToBare: number
  /** req/s of every round (BENCH_ROUNDS); the row shows the median one. */
  readonly roundsReqPerSec: readonly number[]
  /** memcached get+set+touch+delete commands (all nodes) per request. */
  readonly memcachedOpsPerRequest: number
  readonly memcachedOps: number
  /** CPU of the row's own processes per request, µs (NaN where /proc does not tell). */
  readonly cpuUsPerRequest: number
  /** That CPU over the measured seconds (1.00: one CPU busy all the time). */
  readonly cpuBusy: number
}

export interface ScenarioFailure {
  readonly id: string
  readonly ref: string
  readonly title: string
  readonly error: string
}

export interface HeapResult {
  /** Sessions created and measured: fewer than `requested` when its time budget ran out. */
  readonly sessions: number
  readonly requested: number
  readonly sessionJsonBytes: number
  readonly heapBytesPerSession: number
  readonly accountedBytesPerSession: number
  readonly createSeconds: number
}

/** A large body moved once, straight to the app and through the sidecar (bench/scenarios/large-upload.ts). */
export interface TransferResult {
  readonly id: string
  readonly ref: string
  readonly title: string
  readonly bytes: number
  readonly directSeconds: number
  readonly directMBps: number
  readonly sidecarSeconds: number
  readonly sidecarMBps: number
  /** Sidecar throughput relative to the app directly. */
  readonly ratioToDirect: number
  /** The sidecar's RSS (MB, 10^6 bytes) once started, after a warm-up transfer, and its peak during the transfer. */
  readonly rssFreshMB: number
  readonly rssBaselineMB: number
  readonly rssPeakMB: number
  readonly rssGrowthMB: number
  readonly rssSamples: number
  readonly sha256: string
}

export interface TargetResult {
  readonly target: string
  readonly value: number | null
  readonly limit: string
  readonly pass: boolean
}

const num = (n: number, digits = 0): string => Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a'

/** A plain-text table: first column left-aligned, the others right-aligned. */
export function table (header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => i <= 1 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)).join(' | ')} |`
  return [line(header), `|${widths.map((w, i) => i <= 1 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`).join('|')}|`, ...rows.map(line)].join('\n')
}

export function loadTable (results: ReadonlyArray<ScenarioResult | ScenarioFailure>): string {
  const rounds = results.some((r) => !('error' in r) && r.roundsReqPerSec.length > 1)
  return table(['', 'scenario', 'req/s', ...(rounds ? ['rounds min-max'] : []), 'p50 ms', 'p99 ms', 'x (b)', 'CPU µs/req', 'CPU busy', 'memcached ops/req', 'non-2xx+errors'], results.map((r) => 'error' in r
    ? [r.ref, r.title, 'FAILED', ...(rounds ? [''] : []), '', '', '', '', '', '', r.error.slice(0, 60)]
    : [r.ref, r.title, num(r.reqPerSec), ...(rounds ? [`${num(Math.min(...r.roundsReqPerSec))}-${num(Math.max(...r.roundsReqPerSec))}`] : []), num(r.p50Ms, 2), num(r.p99Ms, 2), num(r.ratioToBare, 2), num(r.cpuUsPerRequest), num(r.cpuBusy, 2), num(r.memcachedOpsPerRequest, 3), num(r.non2xx + r.errors + r.timeouts)]))
}

export function heapTable (results: readonly HeapResult[]): string {
  return table(['sessions', 'heap bytes per cached 1 KB session', 'bytes cache.maxBytes accounts', 'create s (with memcached writes)'],
    results.map((h) => [num(h.sessions), num(h.heapBytesPerSession), num(h.accountedBytesPerSession), num(h.createSeconds, 1)]))
}

/** A dimension's table: its value, the workload, the load numbers, x its workload's first row, then its own columns. */
export function growthTable (d: DimensionResult): string {
  const extras = [...new Set(d.rows.flatMap((r) => Object.keys(r.extra)))]
  const rounds = d.rows.some((r) => r.roundsReqPerSec.length > 1)
  return table([d.axis, 'workload', 'req/s', ...(rounds ? ['rounds min-max'] : []), 'p50 ms', 'p99 ms', 'x first', 'memcached ops/req', 'non-2xx+errors', ...extras], d.rows.map((r) =>
    [r.at, r.workload, num(r.reqPerSec), ...(rounds ? [`${num(Math.min(...r.roundsReqPerSec))}-${num(Math.max(...r.roundsReqPerSec))}`] : []), num(r.p50Ms, 2), num(r.p99Ms, 2), num(r.ratioToFirst, 2), num(r.memcachedOpsPerRequest, 3), num(r.failures), ...extras.map((k) => num(r.extra[k] ?? NaN, Number.isInteger(r.extra[k]) ? 0 : 1))]))
}

export function targetTable (targets: readonly TargetResult[]): string {
  return table(['', 'target', 'measured', 'limit'], targets.map((t) => [t.pass ? 'PASS' : 'MISS', t.target, t.value === null ? 'n/a' : num(t.value, 3), t.limit]))
}

export function transferTable (results: ReadonlyArray<TransferResult | ScenarioFailure>): string {
  return table(['', 'transfer', 'app directly MB/s', 'through sidecar MB/s', 'x direct', 'sidecar RSS fresh MB', 'after warm-up MB', 'peak MB', 'growth MB'], results.map((r) => 'error' in r
    ? [r.ref, r.title, 'FAILED', r.error.slice(0, 60), '', '', '', '', '']
    : [r.ref, r.title, num(r.directMBps), num(r.sidecarMBps), num(r.ratioToDirect, 2), num(r.rssFreshMB, 1), num(r.rssBaselineMB, 1), num(r.rssPeakMB, 1), num(r.rssGrowthMB, 1)]))
}

/** The issue's targets, from whatever scenarios ran (a missing one is a MISS with no value). */
export function evaluate (results: ReadonlyArray<ScenarioResult | ScenarioFailure>, heap: readonly HeapResult[], transfers: ReadonlyArray<TransferResult | ScenarioFailure> = []): TargetResult[] {
  const ok = (id: string): ScenarioResult | undefined => results.find((r): r is ScenarioResult => r.id === id && !('error' in r))
  const bare = ok('bare-proxy')
  const hit = ok('sidecar-hit')
  const mergeAsync = ok('sidecar-merge-async')
  const mergeSync = ok('sidecar-merge-sync')
  const expressChange = ok('express-session-change')
  // Issue 12's targets, all ratios within one run.
  const targets: TargetResult[] = [
    { target: '(d) hit req/s vs (b)', value: hit?.ratioToBare ?? null, limit: '>= 1.00x', pass: hit !== undefined && bare !== undefined && hit.ratioToBare >= 1 },
    { target: '(d) hit p99 - (b) p99, ms', value: hit !== undefined && bare !== undefined ? Math.round((hit.p99Ms - bare.p99Ms) * 100) / 100 : null, limit: '<= 1 ms', pass: hit !== undefined && bare !== undefined && hit.p99Ms <= bare.p99Ms + 1 },
    { target: '(d) hit memcached ops per request', value: hit?.memcachedOpsPerRequest ?? null, limit: '<= 0.02', pass: hit !== undefined && hit.memcachedOpsPerRequest <= 0.02 },
    { target: '(e) change, async write, req/s vs (b)', value: mergeAsync?.ratioToBare ?? null, limit: '>= 0.75x', pass: mergeAsync !== undefined && bare !== undefined && mergeAsync.ratioToBare >= 0.75 },
    { target: '(e) change, sync write, req/s vs (b)', value: mergeSync?.ratioToBare ?? null, limit: '>= 0.60x', pass: mergeSync !== undefined && bare !== undefined && mergeSync.ratioToBare >= 0.6 },
    { target: '(e) change, async write, req/s vs (g) change', value: mergeAsync !== undefined && expressChange !== undefined ? Math.round(mergeAsync.reqPerSec / expressChange.reqPerSec * 1000) / 1000 : null, limit: '> 1.00x', pass: mergeAsync !== undefined && expressChange !== undefined && mergeAsync.reqPerSec > expressChange.reqPerSec },
    { target: '(e) change memcached ops per request', value: mergeAsync?.memcachedOpsPerRequest ?? null, limit: '<= 2.02', pass: mergeAsync !== undefined && mergeAsync.memcachedOpsPerRequest <= 2.02 }
  ]
  for (const h of heap) {
    targets.push({ target: `heap per cached 1 KB session at ${num(h.sessions)}, bytes`, value: h.heapBytesPerSession, limit: '<= 3072', pass: h.heapBytesPerSession <= 3072 })
  }
  for (const r of transfers) {
    const value = 'error' in r ? null : r.rssGrowthMB
    targets.push({ target: `${r.ref} sidecar RSS growth over a 1 GiB upload, MB`, value, limit: '< 50', pass: value !== null && value < 50 })
  }
  return targets
}
