import type { MemcachedProcess } from '../../test/helpers/memcached.js'
import type { Measured, Timing } from './measure.js'
import type { BenchContext } from './scenario.js'

/** What a dimension gets from the runner besides the shared servers. */
export interface DimensionContext extends BenchContext {
  readonly timing: Timing
  /** BENCH_ROUNDS: each point measured this many times, its median round kept. */
  readonly rounds: number
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
  /** req/s of every round (BENCH_ROUNDS); the row is the median one. */
  readonly roundsReqPerSec: readonly number[]
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

/** A row from a measured load (its median round, with every round's req/s); its ratio is filled in by `withRatios`. */
export function growthRow (at: string, workload: string, m: Measured | Rounds, extra: Record<string, number> = {}): GrowthRow {
  const { median, reqPerSec } = 'median' in m ? m : { median: m, reqPerSec: [m.reqPerSec] }
  return { at, workload, reqPerSec: median.reqPerSec, p50Ms: median.p50Ms, p99Ms: median.p99Ms, memcachedOpsPerRequest: median.memcachedOpsPerRequest, requests: median.requests, failures: median.non2xx + median.errors + median.timeouts, ratioToFirst: NaN, roundsReqPerSec: reqPerSec, extra }
}

/** A point measured in several rounds: the round with the median req/s, and every round's req/s. */
export interface Rounds {
  readonly median: Measured
  readonly reqPerSec: readonly number[]
}

/**
 * Measures each point `rounds` times, a round going over all points in turn (so a slow spell
 * of a shared machine touches every point, not one), and keeps each point's median round.
 */
export async function inRounds<P> (points: readonly P[], rounds: number, measureOne: (point: P) => Promise<Measured>): Promise<Rounds[]> {
  const all = points.map((): Measured[] => [])
  for (let round = 0; round < rounds; round++) {
    for (const [i, point] of points.entries()) all[i]?.push(await measureOne(point))
  }
  return all.map((ms) => {
    const sorted = ms.slice().sort((a, b) => a.reqPerSec - b.reqPerSec)
    return { median: sorted[Math.floor((sorted.length - 1) / 2)] as Measured, reqPerSec: ms.map((m) => m.reqPerSec) }
  })
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
