import type { MemcachedProcess } from '../../test/helpers/memcached.js'
import { memcachedOps, run, type LoadOptions, type LoadResult } from './load.js'
import { cpuMeter } from './process-cpu.js'
import type { ScenarioResult } from './report.js'
import type { BenchContext, Running, Scenario } from './scenario.js'

/** How long each load runs: a warm-up, then the measured part (seconds). */
export interface Timing {
  readonly seconds: number
  readonly warmup: number
}

export interface Measured extends LoadResult {
  /** memcached get+set+touch+delete commands (all nodes counted) during the measured part. */
  readonly memcachedOps: number
  readonly memcachedOpsPerRequest: number
  /** CPU (user + system) of the row's own processes (`Running.pids`) per request sent, µs; NaN when not known. */
  readonly cpuUsPerRequest: number
  /** That CPU over the measured seconds: near 1 per process, it was the bottleneck. */
  readonly cpuBusy: number
}

/** A scenario's row: its servers started, measured (`measureRunning`) and stopped. */
export async function measure (scenario: Scenario, ctx: BenchContext, timing: Timing, progress: (text: string) => void): Promise<ScenarioResult> {
  const running = await scenario.start(ctx)
  try {
    const result = await measureRunning(running, ctx.memcached, timing, progress)
    return { id: scenario.id, ref: scenario.ref, title: scenario.title, ...result, ratioToBare: NaN, roundsReqPerSec: [result.reqPerSec] }
  } finally {
    await running.stop()
  }
}

/**
 * Warm-up, then the measured run with the memcached counters of `nodes` read around it.
 * Throws when no request completed.
 */
export async function measureRunning (running: Running, nodes: readonly MemcachedProcess[], { seconds, warmup }: Timing, progress: (text: string) => void): Promise<Measured> {
  const load = { url: running.url, cookies: running.cookies, cookieFor: running.cookieFor }
  progress(` warm-up ${warmup} s...`)
  await run({ ...load, seconds: warmup })
  await new Promise((resolve) => setTimeout(resolve, 200))
  await running.settle()
  progress(` measuring ${seconds} s...`)
  return await counted(running, nodes, { ...load, seconds }, progress)
}

/** One load (`run`) with the memcached counters of `nodes` read around it, and what it left behind settled. */
export async function counted (running: Running, nodes: readonly MemcachedProcess[], load: LoadOptions, progress: (text: string) => void): Promise<Measured> {
  const opsBefore = await memcachedOps(nodes)
  const pids = running.pids ?? []
  const cpu = cpuMeter(pids.every((p) => p !== undefined) ? pids as number[] : [])
  const result = await run(load)
  // Requests cut off at the end still finish on the server, and responses can leave async
  // writes behind: all of it belongs to this run.
  await new Promise((resolve) => setTimeout(resolve, 200))
  await running.settle()
  const ops = await memcachedOps(nodes) - opsBefore
  const cpuSeconds = cpu() ?? NaN
  const problems = result.non2xx + result.errors + result.timeouts
  progress(` ${result.reqPerSec.toLocaleString('en-US')} req/s, p99 ${result.p99Ms} ms${problems > 0 ? `, ${problems} non-2xx/errors` : ''}\n`)
  if (result.requests === 0) throw new Error('no request completed')
  return {
    ...result,
    memcachedOps: ops,
    memcachedOpsPerRequest: Math.round((ops / result.requestsSent) * 1000) / 1000,
    cpuUsPerRequest: Math.round(cpuSeconds * 1e6 / result.requestsSent),
    cpuBusy: Math.round(cpuSeconds / result.seconds * 100) / 100
  }
}
