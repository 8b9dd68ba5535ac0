import autocannon from 'autocannon'
import type { MemcachedProcess } from '../../test/helpers/memcached.js'
import type { CookiePool } from './sessions.js'

export const CONNECTIONS = 50

/** memcached commands a request can cause: reads, writes (set/add/cas), touches, deletes. */
export async function memcachedOps (nodes: readonly MemcachedProcess[]): Promise<number> {
  let total = 0
  for (const node of nodes) {
    const s = await node.stats()
    total += s.cmd_get + s.cmd_set + s.cmd_touch + (s.delete_hits ?? 0) + (s.delete_misses ?? 0)
  }
  return total
}

export interface LoadOptions {
  readonly url: string
  /** How long (ignored with `amount`). */
  readonly seconds: number
  /** Stop after this many requests instead of after `seconds`. */
  readonly amount?: number
  /** One user per connection, its cookie kept current (a browser each). */
  readonly cookies?: CookiePool | undefined
  /** Or a cookie chosen for every request (many users, each request someone's). */
  readonly cookieFor?: () => string
}

export interface LoadResult {
  /** Responses received in the run. */
  readonly requests: number
  /** Requests sent, including those still in flight when the run stopped (the server did their work). */
  readonly requestsSent: number
  readonly seconds: number
  readonly reqPerSec: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly non2xx: number
  readonly errors: number
  readonly timeouts: number
}

/**
 * One autocannon run: 50 connections, pipelining 1, `seconds` long. Latency percentiles
 * come from every response's own timer (float ms): autocannon's histogram rounds to 1 ms,
 * too coarse for a 1 ms target.
 */
export async function run ({ url, seconds, amount, cookies, cookieFor }: LoadOptions): Promise<LoadResult> {
  cookies?.rewind()
  let latencies = new Float64Array(1 << 16)
  let count = 0
  let finished: (err: unknown, result: autocannon.Result) => void = () => {}
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    finished = (err, result) => { if (err !== null && err !== undefined) reject(err); else resolve(result) }
  })
  // The callback form returns the instance, whose events the promise form hides.
  const instance = autocannon({
    url,
    connections: CONNECTIONS,
    pipelining: 1,
    ...(amount === undefined ? { duration: seconds } : { amount }),
    timeout: 10,
    ...(cookies === undefined ? {} : { setupClient: cookies.setupClient }),
    ...(cookieFor === undefined ? {} : { requests: [{ setupRequest: (req: autocannon.Request) => ({ ...req, headers: { ...req.headers, cookie: cookieFor() } }) }] })
  }, (err, result) => finished(err, result))
  instance.on('response', (_client, _status, _bytes, ms) => {
    if (count === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2)
      bigger.set(latencies)
      latencies = bigger
    }
    latencies[count++] = ms
  })
  const result = await done
  const sorted = latencies.subarray(0, count).sort()
  const pct = (p: number): number => count === 0 ? NaN : round2(sorted[Math.min(count - 1, Math.ceil((p / 100) * count) - 1)] as number)
  const elapsed = (result.finish.getTime() - result.start.getTime()) / 1000
  return {
    requests: result.requests.total,
    requestsSent: (result.requests as { sent?: number }).sent ?? result.requests.total,
    seconds: round2(elapsed),
    reqPerSec: Math.round(result.requests.total / elapsed),
    p50Ms: pct(50),
    p99Ms: pct(99),
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts
  }
}

export const round2 = (n: number): number => Math.round(n * 100) / 100
