/**
 * Heap bytes per cached 1 KB session, in a process of its own (`node --expose-gc`): creates
 * N sessions through the store API exactly as the proxy does for an X-Session-Set (apply,
 * then the issued cookie memoised on the record), lets every memcached write finish, and
 * divides the growth of heapUsed by N. argv: <N> <memcached node,...> [budget s]: with a budget,
 * creation stops at the first batch that ends past it and N is what was created by then (a
 * million sessions take minutes on a small machine). Prints one JSON line.
 */
import { pino } from 'pino'
import { createLogger } from '../src/logger.js'
import { Metrics } from '../src/metrics.js'
import { NodePool } from '../src/memcached/pool.js'
import { CookieCodec } from '../src/session/cookie.js'
import { CopySeal } from '../src/session/sealed-copy.js'
import { SessionStore } from '../src/session/store.js'
import { sessionData, SESSION_JSON_BYTES } from './lib/session-data.js'
import { SECRET } from './lib/sidecar.js'

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc')
const n = Number(process.argv[2])
const nodes = (process.argv[3] ?? '').split(',').filter((a) => a !== '')
const budgetMs = process.argv[4] === undefined ? Infinity : Number(process.argv[4]) * 1000
if (!Number.isInteger(n) || n <= 0 || nodes.length === 0 || !(budgetMs > 0)) throw new Error('usage: heap <sessions> <memcached node,...> [budget s]')

const BATCH = 1000

function settle (): number {
  for (let i = 0; i < 4; i++) gc?.()
  return process.memoryUsage().heapUsed
}

// Log lines go to stderr: stdout carries the result.
const log = createLogger('error', pino.destination(2))
const metrics = new Metrics(false)
const pool = new NodePool({ nodes, replicas: nodes.length > 1 ? 2 : 1, allow: [], timeoutMs: 2000, ttl: 1800, log, ops: metrics })
const seal = new CopySeal([SECRET], true)
const store = new SessionStore({
  pool,
  keyPrefix: 'bench-heap:',
  seal,
  idleTimeout: 1800,
  revalidateMs: 30_000,
  // Room for every session: the measurement is of what they cost, not of eviction.
  cacheMaxBytes: 4 * 1024 ** 3,
  maxBytes: 8192,
  log,
  metrics
})
const codec = new CookieCodec([SECRET])
const change = (i: number): { set: Record<string, unknown>, merge: undefined, regenerate: false } => ({ set: sessionData(i), merge: undefined, regenerate: false })

// Warm the code paths and connections first, then take the baseline.
for (let i = 0; i < 200; i++) store.apply(undefined, 0, change(-1 - i))
await store.flush(30_000)
store.close() // clears the cache; the writer's timers are idle
const fresh = new SessionStore({ pool, keyPrefix: 'bench-heap:', seal, idleTimeout: 1800, revalidateMs: 30_000, cacheMaxBytes: 4 * 1024 ** 3, maxBytes: 8192, log, metrics })
const before = settle()
const started = Date.now()
let created = 0
for (let done = 0; done < n && Date.now() - started < budgetMs; done += BATCH) {
  const end = Math.min(n, done + BATCH)
  for (let i = done; i < end; i++) {
    const applied = fresh.apply(undefined, 0, change(i))
    if (applied === undefined) throw new Error('store.apply created no session')
    // What the proxy's cookieFor does for the response's Set-Cookie.
    applied.record.cookie ??= codec.encode(applied.record)
  }
  const left = await fresh.flush(30_000)
  if (left > 0) throw new Error(`${left} memcached writes still pending after 30 s`)
  created = end
}
const after = settle()
if (fresh.size !== created) throw new Error(`expected ${created} cached sessions, found ${fresh.size}`)
process.stdout.write(`${JSON.stringify({
  sessions: created,
  requested: n,
  sessionJsonBytes: SESSION_JSON_BYTES,
  heapBefore: before,
  heapAfter: after,
  heapBytesPerSession: Math.round((after - before) / created),
  // What cache.maxBytes accounting charges per session (header length + 160).
  accountedBytesPerSession: Math.round(fresh.bytes / created),
  createSeconds: (Date.now() - started) / 1000
})}\n`)
fresh.close()
pool.close()
