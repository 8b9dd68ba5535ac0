import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Metrics } from './metrics.js'
import type { SessionStore } from './session/store.js'

export interface AdminDeps {
  readonly log: Logger
  readonly metrics: Metrics
  readonly store: SessionStore
  /** False once a drain has begun. */
  readonly isReady: () => boolean
  /** False while the app refuses connections (http/app-reachability.ts). */
  readonly appUp: () => boolean
}

/** The operator's listener: liveness, readiness and Prometheus metrics. */
export function buildAdmin ({ log, metrics, store, isReady, appUp }: AdminDeps): FastifyInstance {
  const app = Fastify({ loggerInstance: log as FastifyBaseLogger, logController: new Fastify.LogController({ disableRequestLogging: true }) })
  app.get('/healthz', async (_req, reply) => await reply.type('text/plain').send('ok\n'))
  app.get('/readyz', async (_req, reply) => {
    if (!isReady()) return await reply.code(503).type('text/plain').send('draining\n')
    if (!appUp()) return await reply.code(503).type('text/plain').send('app unreachable\n')
    return await reply.type('text/plain').send('ready\n')
  })
  app.get('/metrics', async (_req, reply) => {
    metrics.cachedSessions.set(store.size)
    metrics.cachedBytes.set(store.bytes)
    metrics.pendingWrites.set(store.pendingWrites)
    return await reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })
  return app
}
