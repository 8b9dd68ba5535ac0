import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { buildAdmin } from './admin.js'
import { AppReachability } from './http/app-reachability.js'
import type { SidecarConfig } from './config/index.js'
import { codes } from './errors.js'
import { DnsDiscovery, type Resolver } from './memcached/discovery.js'
import { NodePool } from './memcached/pool.js'
import { Metrics } from './metrics.js'
import { buildProxy } from './proxy.js'
import { CopySeal } from './session/sealed-copy.js'
import { keyring } from './session/secrets.js'
import { SessionStore } from './session/store.js'

export interface Sidecar {
  readonly proxy: FastifyInstance
  readonly admin: FastifyInstance
  readonly store: SessionStore
  readonly metrics: Metrics
  /** Client-facing address once listening, e.g. http://127.0.0.1:8080. */
  readonly url: string
  readonly adminUrl: string
  /**
   * Replaces the configured memcached nodes (SIGHUP re-reads the file), with what derives from
   * them: `replicas` and the `allow` list, when given (a new config's). New sessions go to the
   * new list at once; sessions on removed nodes stay readable, their address is in the cookie.
   */
  setNodes: (nodes: readonly string[], settings?: { readonly replicas: 1 | 2, readonly allow: readonly string[] }) => void
  /**
   * Graceful stop: readiness goes 503 at once while requests are still served as usual for
   * shutdown.delayMs; then the listener stops accepting, in-flight requests finish, queued
   * memcached writes are flushed (within shutdown.timeoutMs); the last log line, `stopped`,
   * says how many were flushed and left, how many requests were cut, and how long the stop
   * took. Resolves with what shutdown.timeoutMs left undone: the writes still pending plus the
   * requests still in flight when their connections were closed (0 for a clean drain).
   */
  close: () => Promise<number>
}

/** Builds and starts everything one sidecar process runs. */
export async function startSidecar (config: SidecarConfig, log: Logger, options: { defaultMetrics?: boolean, resolver?: Resolver } = {}): Promise<Sidecar> {
  const metrics = new Metrics(options.defaultMetrics ?? true)
  const pool = new NodePool({
    nodes: config.memcached.nodes,
    replicas: config.memcached.replicas,
    allow: config.memcached.allow,
    timeoutMs: config.memcached.timeoutMs,
    ttl: config.session.idleTimeout,
    log,
    ops: metrics
  })
  // At most one line a minute: a forger or a misconfigured fleet would otherwise fill the log.
  let rejectedSince = 0
  let rejectedLoggedAt = -Infinity
  const seal = new CopySeal(keyring(config.session), config.memcached.encrypt, () => {
    metrics.rejectedCopies.inc()
    rejectedSince++
    const now = performance.now()
    if (now - rejectedLoggedAt < 60_000) return
    log.warn({ code: codes.STORED_COPY_REJECTED, rejected: rejectedSince }, 'copies read from memcached did not open (forged, sealed by a secret not configured here, or damaged); treated as missing (sidecar_rejected_copies_total; logged at most once a minute)')
    rejectedLoggedAt = now
    rejectedSince = 0
  })
  const store = new SessionStore({
    pool,
    keyPrefix: config.memcached.keyPrefix,
    seal,
    idleTimeout: config.session.idleTimeout,
    revalidateMs: config.cache.revalidateMs,
    cacheMaxBytes: config.cache.maxBytes,
    maxBytes: config.session.maxBytes,
    log,
    metrics
  })
  // Placement = the configured nodes plus whatever DNS discovery finds.
  let configured: readonly string[] = config.memcached.nodes
  let discovered: readonly string[] = []
  const place = (settings?: { readonly replicas: 1 | 2, readonly allow: readonly string[] }): void => {
    const { added, removed, refused } = pool.setPlacement([...configured, ...discovered], settings)
    if (added.length + removed.length > 0) log.info({ added, removed, nodes: pool.placement }, 'memcached placement changed')
    void pool.connect(added)
    if (refused.length > 0) log.warn({ refused }, 'memcached nodes refused by memcached.allow')
  }
  const { dns, intervalMs } = config.memcached.discovery
  const discovery = dns === undefined
    ? undefined
    : new DnsDiscovery({ target: dns, intervalMs, log, resolver: options.resolver, onChange: (addresses) => { discovered = addresses; place() } })
  await discovery?.start()
  await pool.connect()

  let ready = false
  const app = new AppReachability(config.upstream.url, log)
  const proxy = await buildProxy({ config, log, store, pool, metrics, app, isReady: () => ready })
  const admin = buildAdmin({ log, metrics, store, isReady: () => ready, appUp: () => app.up })
  const adminUrl = await admin.listen({ host: config.admin.host, port: config.admin.port })
  const url = await proxy.listen({ host: config.listen.host, port: config.listen.port })
  ready = true
  log.info({ url, adminUrl, upstream: config.upstream.url, nodes: config.memcached.nodes, write: config.memcached.write }, 'session-sidecar listening')

  // Requests in flight, for a drain that runs out of time to say how many it cut.
  let inFlight = 0
  const finished = (): void => { inFlight-- }
  // 'close' comes once per response: one shared listener, no closure per request.
  proxy.server.on('request', (_req, res) => {
    inFlight++
    res.on('close', finished)
  })

  let closing: Promise<number> | undefined
  const close = async (): Promise<number> => {
    ready = false
    const started = performance.now()
    const { delayMs, timeoutMs } = config.shutdown
    if (delayMs > 0) {
      // Load balancers stop routing here once they see /readyz 503; until then every request
      // is served as usual (refusing or answering 503 now would fail requests still routed here).
      log.info({ delayMs }, 'not ready: serving on for shutdown.delayMs while load balancers stop routing here')
      await new Promise((resolve) => setTimeout(resolve, delayMs))
    }
    discovery?.stop()
    const deadline = performance.now() + timeoutMs
    // fastify.close waits for in-flight requests (their async writes are queued by then), but
    // closes idle keep-alive connections only once: a connection busy at that moment would
    // then hold the drain until the client hangs up. Keep closing the ones that turn idle,
    // and cut the rest when the budget runs out.
    const idle = setInterval(() => proxy.server.closeIdleConnections(), 50)
    let cut: NodeJS.Timeout | undefined
    let requestsCut = 0
    await Promise.race([
      proxy.close(),
      new Promise<void>((resolve) => {
        cut = setTimeout(() => {
          requestsCut = inFlight
          proxy.server.closeAllConnections()
          resolve()
        }, Math.max(0, deadline - performance.now()))
      })
    ])
    clearInterval(idle)
    clearTimeout(cut)
    if (requestsCut > 0) log.error({ code: codes.SHUTDOWN_REQUESTS_CUT, requests: requestsCut }, 'shutdown ran out of shutdown.timeoutMs with requests in flight: their connections were closed')
    // Every request has finished: the writes pending now are the drain's to flush.
    const pending = store.pendingWrites
    const left = await store.flush(Math.max(0, deadline - performance.now()))
    if (left > 0) log.error({ code: codes.SHUTDOWN_PENDING_WRITES, pending: left }, 'shutdown timed out with session writes still pending')
    await admin.close()
    app.close()
    store.close()
    pool.close()
    log.info({ writesFlushed: Math.max(0, pending - left), writesLeft: left, requestsCut, durationMs: Math.round(performance.now() - started) }, 'stopped')
    return left + requestsCut
  }
  return {
    proxy,
    admin,
    store,
    metrics,
    url: httpUrl(proxy),
    adminUrl: httpUrl(admin),
    setNodes: (nodes, settings) => {
      configured = nodes
      place(settings)
    },
    close: async () => (closing ??= close())
  }
}

function httpUrl (app: FastifyInstance): string {
  const address = app.server.address()
  if (address === null || typeof address === 'string') return String(address)
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `http://${host}:${address.port}`
}
