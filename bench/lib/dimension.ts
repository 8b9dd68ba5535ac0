import type { MemcachedProcess } from '../../test/helpers/memcached.js'
import type { Measured, Timing } from './measure.js'
import type { BenchContext } from './scenario.js'

/** What a dimension gets from the runner besides the shared servers. */
export interface DimensionContext extends BenchContext {
  readonly timing: Timing
  /** Smoke mode: tiny counts, the numbers mean nothing. */
  readonly smoke: boolean
  /** memcached processes started beyond `memcached` (the memcached-nodes dimension's), empty when it does not run. */
  readonly spareMemcached: readonly MemcachedProcess[]
  /** Appends to the runner's progress line. */
  readonly progress: (text: string) => void
}

/** One measured point: a workload at one value of the dimension. */
export interface GrowthRow {
  /** The dimension's value, e.g. "4 KB", "8 nodes", "100,000". */
  readonly at: string
  /** e.g. "hit", "change, write async". */
  readonly workload: string
  readonly reqPerSec: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly memcachedOpsPerRequest: number
  readonly requests: number
  /** non-2xx + errors + timeouts. */
  readonly failures: number
  /** req/s relative to the table's first row of the same workload: how cost grows. */
  readonly ratioToFirst: number
  /** The dimension's own numbers (a column each), e.g. seconds to create the sessions. */
  readonly extra: Readonly<Record<string, number>>
}

/** A dimension's table: how cost grows with one thing (session bytes, nodes, sessions). */
export interface DimensionResult {
  readonly id: string
  readonly title: string
  /** The first column's header, e.g. "session JSON". */
  readonly axis: string
  readonly rows: readonly GrowthRow[]
  /** One line each, printed under the table and kept in the JSON. */
  readonly notes: readonly string[]
}

export interface DimensionFailure {
  readonly id: string
  readonly title: string
  readonly error: string
}

export interface Dimension {
  /** Stable id in the JSON output and for --only. */
  readonly id: string
  readonly title: string
  run: (ctx: DimensionContext) => Promise<DimensionResult>
}

/** A row from a measured load; its ratio is filled in by `withRatios`. */
export function growthRow (at: string, workload: string, m: Measured, extra: Record<string, number> = {}): GrowthRow {
  return { at, workload, reqPerSec: m.reqPerSec, p50Ms: m.p50Ms, p99Ms: m.p99Ms, memcachedOpsPerRequest: m.memcachedOpsPerRequest, requests: m.requests, failures: m.non2xx + m.errors + m.timeouts, ratioToFirst: NaN, extra }
}

/** Each row's req/s relative to the first row of its workload (or, `byWorkload` false, to the first row). */
export function withRatios (rows: readonly GrowthRow[], byWorkload = true): GrowthRow[] {
  return rows.map((r) => {
    const first = rows.find((f) => !byWorkload || f.workload === r.workload) as GrowthRow
    return { ...r, ratioToFirst: Math.round((r.reqPerSec / first.reqPerSec) * 100) / 100 }
  })
}

export const kb = (bytes: number): string => `${bytes / 1024} KB`
export const count = (n: number): string => n.toLocaleString('en-US')
