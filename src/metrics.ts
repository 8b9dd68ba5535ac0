import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export type OpResult = 'ok' | 'miss' | 'error'

/**
 * Why the sidecar answered a request itself (the `reason` of sidecar_generated_responses_total):
 * 502 upstream-unavailable (refused, reset) or upstream-bad-response (headers too large, not
 * valid HTTP or an unsolicited 100, a bad status, failed before its first byte); 504
 * upstream-timeout; 408 client-timeout; 503 draining; 400 bad-request; 431 headers-too-large;
 * 501 unsupported-transfer-coding.
 */
export type GeneratedReason = 'upstream-unavailable' | 'upstream-bad-response' | 'upstream-timeout' | 'client-timeout' | 'draining' | 'bad-request' | 'headers-too-large' | 'unsupported-transfer-coding'

/** Counts a response the sidecar answered itself. */
export type Generated = (status: number, reason: GeneratedReason) => void

/**
 * How a request's session was found or made: the `outcome` of sidecar_requests_total, and the
 * one vocabulary the request flow and the store use for it. hit: the local copy, fresh;
 * miss-loaded: read from memcached (or revalidated there); new: created by this request;
 * none: no session (no cookie, or its session is gone); stale: only copies older than the
 * cookie were found, served anyway; degraded: memcached did not answer in time (the local copy
 * served as it is, or the app told the session is unavailable); ignored: a path with no session
 * work (session.ignore).
 */
export const REQUEST_OUTCOMES = ['hit', 'miss-loaded', 'new', 'none', 'stale', 'degraded', 'ignored'] as const
export type RequestOutcome = typeof REQUEST_OUTCOMES[number]

/** How a request to the app ended, for sidecar_upstream_duration_seconds. */
export type UpstreamResult = 'response' | 'timeout' | 'error'

/** What a memcached node reports about each command. */
export interface MemcachedOps {
  observe: (node: string, command: string, result: OpResult, ms: number) => void
  /** Drops a node's series (a node learnt from cookies, idle and forgotten). */
  forget: (node: string) => void
}

/**
 * The sidecar's Prometheus metrics, in a registry of its own so several sidecars can live in
 * one process (tests) without colliding in prom-client's global one.
 */
export class Metrics implements MemcachedOps {
  readonly registry = new Registry()
  readonly requests = new Counter({ name: 'sidecar_requests_total', help: 'Requests by session outcome', labelNames: ['outcome'], registers: [this.registry] })
  readonly forgedCookies = new Counter({ name: 'sidecar_forged_cookies_total', help: 'Session cookies that failed to parse or verify, or named a disallowed address', registers: [this.registry] })
  readonly refusedUpdates = new Counter({ name: 'sidecar_refused_updates_total', help: 'Session updates from the app refused, by reason', labelNames: ['reason'], registers: [this.registry] })
  readonly staleReads = new Counter({ name: 'sidecar_stale_reads_total', help: 'Sessions served from a copy older than the cookie version', registers: [this.registry] })
  readonly failovers = new Counter({ name: 'sidecar_failovers_total', help: 'Sessions served while a node named in the cookie failed', registers: [this.registry] })
  readonly relocations = new Counter({ name: 'sidecar_relocations_total', help: 'Sessions moved to other memcached nodes because a node was down', registers: [this.registry] })
  readonly generatedResponses = new Counter({ name: 'sidecar_generated_responses_total', help: 'Responses the sidecar answered itself instead of the app (502, 504, 408, 503 while draining, 400/431 for malformed requests, 501 for a transfer coding other than chunked), by status and reason', labelNames: ['status', 'reason'], registers: [this.registry] })
  readonly upstreamDuration = new Histogram({
    name: 'sidecar_upstream_duration_seconds',
    help: 'From sending a request to the app until its response headers (an upload included), by result: response, timeout (504) or error (502, or the client gone)',
    labelNames: ['result'],
    // From a loopback app's millisecond answers to upstream.timeoutMs (default 30 s).
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry]
  })

  readonly rejectedCopies = new Counter({ name: 'sidecar_rejected_copies_total', help: 'Copies read from memcached that did not open (forged, sealed by an unknown secret, moved to another key, damaged): treated as missing', registers: [this.registry] })
  readonly restoredCopies = new Counter({ name: 'sidecar_restored_copies_total', help: 'Sessions stored again because memcached had lost their copy (restart, eviction) while this sidecar held them', registers: [this.registry] })
  readonly droppedWrites = new Counter({ name: 'sidecar_dropped_writes_total', help: 'Writes kept during a memcached outage that were dropped because they exceeded cache.maxBytes (oldest first)', registers: [this.registry] })
  readonly writeFailures = new Counter({ name: 'sidecar_write_failures_total', help: 'Session writes that reached no memcached node (kept locally, retried)', registers: [this.registry] })
  readonly memcachedOps = new Histogram({
    name: 'sidecar_memcached_op_seconds',
    help: 'memcached commands by node, command and result',
    labelNames: ['node', 'command', 'result'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry]
  })

  readonly memcachedNodeUp = new Gauge({ name: 'sidecar_memcached_node_up', help: 'By node: 1 when the last command sent to it was answered, 0 when it failed or timed out (the node is then marked down and probed until it answers)', labelNames: ['node'], registers: [this.registry] })
  readonly pendingWrites = new Gauge({ name: 'sidecar_pending_writes', help: 'Session writes queued or in flight to memcached', registers: [this.registry] })
  readonly cachedSessions = new Gauge({ name: 'sidecar_cached_sessions', help: 'Sessions in the local cache', registers: [this.registry] })
  readonly cachedBytes = new Gauge({ name: 'sidecar_cached_bytes', help: 'Bytes accounted to the local cache', registers: [this.registry] })

  constructor (defaults = true) {
    if (defaults) collectDefaultMetrics({ register: this.registry })
  }

  /** Counts a response the sidecar answered itself, so operators can tell it from the app's. */
  readonly generated: Generated = (status, reason) => { this.generatedResponses.labels(String(status), reason).inc() }

  /** Times a request to the app (performance.now() milliseconds). */
  readonly upstream = (result: UpstreamResult, ms: number): void => { this.#upstreamSeries[result].observe(ms / 1000) }

  readonly #upstreamSeries = {
    response: this.upstreamDuration.labels('response'),
    timeout: this.upstreamDuration.labels('timeout'),
    error: this.upstreamDuration.labels('error')
  }

  observe (node: string, command: string, result: OpResult, ms: number): void {
    // Label children resolved once per series: prom-client otherwise hashes the labels per call.
    const id = `${node} ${command} ${result}`
    let child = this.#opSeries.get(id)
    if (child === undefined) {
      child = this.memcachedOps.labels(node, command, result)
      this.#opSeries.set(id, child)
    }
    child.observe(ms / 1000)
    const up = result === 'error' ? 0 : 1
    if (this.#nodeUp.get(node) !== up) {
      this.#nodeUp.set(node, up)
      this.memcachedNodeUp.labels(node).set(up)
    }
  }

  forget (node: string): void {
    for (const id of this.#opSeries.keys()) {
      if (!id.startsWith(`${node} `)) continue
      const [, command, result] = id.split(' ')
      this.memcachedOps.remove(node, command as string, result as string)
      this.#opSeries.delete(id)
    }
    if (this.#nodeUp.delete(node)) this.memcachedNodeUp.remove(node)
  }

  readonly #opSeries = new Map<string, { observe: (value: number) => void }>()
  /** Per node, the value its up gauge holds: set only when it changes. */
  readonly #nodeUp = new Map<string, number>()
}
