import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify'
import proxy from '@fastify/http-proxy'
import type { Dispatcher } from 'undici'
import { METHODS, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { IncomingHttpHeaders as Http2IncomingHttpHeaders } from 'node:http2'
import type { Logger } from 'pino'
import type { Socket } from 'node:net'
import type { SidecarConfig } from './config/index.js'
import { acceptHost, acceptTarget, routable } from './http/client-request.js'
import { AppCookieDomain, OwnCookieGuard } from './http/cookies.js'
import { stripResponseHopByHop } from './http/hop-by-hop.js'
import type { HeaderProtocol } from './http/protocol.js'
import { clientErrorHandler, serverOptions, watchBodyIdle } from './http/timeouts.js'
import { CLIENT_REQUEST, trailersOf, UpstreamHop, type HookReply, type HookRequest } from './http/upstream.js'
import { codes } from './errors.js'
import { failedBeforeResponse, upstreamErrorReply, upstreamErrorsOnce } from './http/upstream-errors.js'
import type { AppReachability } from './http/app-reachability.js'
import type { Metrics } from './metrics.js'
import type { NodePool } from './memcached/pool.js'
import { SessionFlow } from './request/flow.js'
import type { SessionStore } from './session/store.js'

/** The last response begun on a client connection: a request pipelined behind it waits for it. */
const PREVIOUS_RESPONSE = Symbol('previous response on this connection')
type PipelinedSocket = Socket & { [PREVIOUS_RESPONSE]?: ServerResponse }

export interface ProxyDeps {
  readonly config: SidecarConfig
  readonly log: Logger
  readonly store: SessionStore
  readonly pool: NodePool
  readonly metrics: Metrics
  /** Told what each request to the app found: whether the app accepts connections (/readyz). */
  readonly app: AppReachability
  /** False from SIGTERM on (/readyz 503): responses then close their connection. */
  readonly isReady: () => boolean
}

/**
 * The client-facing fastify app: one catch-all @fastify/http-proxy route to the app over the
 * undici hop, with the request's session flow (request/flow.ts) hooked in at each step.
 */
export async function buildProxy ({ config, log, store, pool, metrics, app: reachability, isReady }: ProxyDeps): Promise<FastifyInstance> {
  const { upstream, listen } = config
  const flow = new SessionFlow({ config, store, pool, metrics })
  const appCookieDomain = config.cookies.domain === undefined ? undefined : new AppCookieDomain(config.cookies.domain, config.cookies.names)
  const ownCookie = new OwnCookieGuard(config.session.cookie.name)
  // An app that sets the session cookie's name does it on every response: one line a minute.
  let ownCookieWarnedAt = -Infinity
  const generated = metrics.generated
  const hop = new UpstreamHop({
    url: upstream.url,
    timeoutMs: upstream.timeoutMs,
    headersFor: (request) => flow.appHeaders(request),
    cleanHints: (headers) => {
      stripResponseHopByHop(headers)
      for (const name of Object.keys(headers)) if (flow.protocol.isPrefixed(name.toLowerCase())) delete headers[name]
    },
    timed: metrics.upstream
  })

  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    logController: new Fastify.LogController({ disableRequestLogging: true }),
    childLoggerFactory: upstreamErrorsOnce,
    http: serverOptions(listen),
    keepAliveTimeout: listen.keepAliveTimeoutMs,
    clientErrorHandler: clientErrorHandler(generated),
    // Draining answers are the sidecar's own: sent (and counted) by the onRequest hook below.
    return503OnClosing: false,
    // fastify's router answers 400 for a target it cannot decode, and the proxy plugin for one
    // with dot segments. The app decides about its own URLs: such a target is routed as `/`
    // and reaches the app verbatim (the hop sends raw.originalUrl).
    rewriteUrl: (req) => (routable(req.url ?? '/') ? req.url ?? '/' : '/')
  })
  // Node keeps the first 2,000 header lines and silently drops the rest (a Content-Length or
  // Authorization among them included): every line within the header size limit (431 past it)
  // reaches the app, as it would without the sidecar.
  app.server.maxHeadersCount = 0
  app.decorateRequest('session', null)
  // Every method is "bodyless" to fastify, so no content-type parser, body limit or 415 ever
  // applies: the upstream hop streams the body of any method from the socket, untouched.
  for (const method of PROXIED_METHODS) app.addHttpMethod(method, { hasBody: false, overrideExisting: true })

  // fastify's close (preClose) comes shutdown.delayMs after readiness went 503 (sidecar.ts):
  // load balancers no longer route here, and a request still sent on a kept-alive connection
  // is told to go elsewhere.
  let draining = false
  app.addHook('preClose', (done) => {
    draining = true
    done()
  })
  app.addHook('onRequest', (request, reply, done) => {
    if (draining) {
      generated(503, 'draining')
      reply.code(503).header('connection', 'close').type('text/plain; charset=utf-8').send('Service Unavailable\n')
      return
    }
    if (!acceptHost(request.raw) || !acceptTarget(request.raw)) {
      generated(400, 'bad-request')
      reply.code(400).header('connection', 'close').type('text/plain; charset=utf-8').send('Bad Request\n')
      return
    }
    if (!onlyChunked(request.raw.headers['transfer-encoding'])) {
      // A coding the hop would silently drop (undici frames the body anew): the app would get
      // still-encoded bytes as the plain body. RFC 9112 6.1: 501.
      generated(501, 'unsupported-transfer-coding')
      reply.code(501).header('connection', 'close').type('text/plain; charset=utf-8').send('Not Implemented\n')
      return
    }
    // Pipelined requests (sent before the previous response): Node hands each over at once,
    // where an app server alone runs one connection's requests in turn; a later one must see
    // the session an earlier one changed, and a POST must not overtake the one before it.
    const socket = request.raw.socket as PipelinedSocket
    const previous = socket[PREVIOUS_RESPONSE]
    socket[PREVIOUS_RESPONSE] = reply.raw
    const go = (): void => {
      watchBodyIdle(request, reply, listen.bodyIdleTimeoutMs, generated)
      done()
    }
    if (previous === undefined || previous.writableFinished || previous.destroyed) go()
    else previous.once('close', go)
  })
  app.addHook('onClose', async () => { await hop.close() })
  app.setErrorHandler(failedBeforeResponse(generated))

  // The upstream hop builds the app's headers from the client's raw lines; it only needs the request.
  const rewriteRequestHeaders = (request: HookRequest, headers: AnyHeaders): AnyHeaders => {
    (headers as Record<symbol, unknown>)[CLIENT_REQUEST] = request
    return headers
  }

  const rewriteHeaders = (headers: AnyHeaders, request?: HookRequest): AnyHeaders => {
    const lines: NodeJS.Dict<string | string[]> = headers
    // The upstream's connection headers describe its connection to us, not the client's.
    stripResponseHopByHop(lines)
    flow.fromApp(lines, request)
    if (lines['set-cookie'] !== undefined && ownCookie.strip(lines) > 0 && performance.now() - ownCookieWarnedAt > 60_000) {
      ownCookieWarnedAt = performance.now()
      log.warn({ code: codes.APP_SET_SESSION_COOKIE, cookie: ownCookie.name }, 'the app set a cookie named as the session cookie; removed (it would replace the session cookie and log the user out): rename the app\'s cookie or session.cookie.name (logged at most once a minute)')
    }
    if (appCookieDomain !== undefined && lines['set-cookie'] !== undefined) {
      lines['set-cookie'] = appCookieDomain.rewrite(lines['set-cookie'])
    }
    // Draining (shutdown.delayMs): served as usual, but the client's next request comes on a
    // new connection, which the load balancer sends elsewhere, rather than on this one, which
    // the listener's close would cut.
    if (!isReady()) lines.connection = 'close'
    return headers
  }

  const onResponse = (request: HookRequest, reply: HookReply, res: { stream: NodeJS.ReadableStream }): void => {
    reachability.answered()
    forwardTrailers(request, reply, res.stream, flow.protocol)
    flow.respond(request, reply, res.stream)
  }

  const upstreamError = upstreamErrorReply(generated, (failure) => { reachability.failed(failure.errorCode) })

  // @fastify/http-proxy reads wsClientOptions.rewriteRequestHeaders (index.js) but its types leave it out.
  const wsClientOptions: NonNullable<HttpProxyOptions['wsClientOptions']> & { rewriteRequestHeaders: typeof rewriteWsHeaders } = { rewriteRequestHeaders: rewriteWsHeaders }

  /**
   * WebSocket upgrades: the session is loaded by the same preHandler, and the app's upgrade
   * request gets what an HTTP request gets (the client's lines, Origin included, Host,
   * forwarding and session headers), minus the handshake lines the WebSocket client writes
   * itself. (The session cannot change over a WebSocket: there are no response headers.)
   */
  function rewriteWsHeaders (base: Record<string, string> | undefined, request: FastifyRequest): Record<string, string> {
    const headers: Record<string, string> = { ...base }
    const lines = flow.appHeaders(request)
    for (let i = 0; i < lines.length; i += 2) {
      const name = (lines[i] as string).toLowerCase()
      const value = lines[i + 1] as string
      if (name.startsWith('sec-websocket-') || name === 'content-length') continue
      const previous = headers[name]
      headers[name] = previous === undefined ? value : `${previous}${name === 'cookie' ? '; ' : ', '}${value}`
    }
    return headers
  }

  await app.register(proxy, {
    upstream: upstream.url,
    preHandler: flow.load,
    httpMethods: PROXIED_METHODS,
    // No body parsers at all: fastify never reads a body (every method is "bodyless" above).
    proxyPayloads: false,
    websocket: true,
    wsClientOptions,
    // reply-from calls only request(opts, callback) on it (lib/request.js); its types ask for all of undici's overloads.
    undici: hop as unknown as { request: Dispatcher['request'] },
    replyOptions: {
      rewriteRequestHeaders,
      rewriteHeaders,
      onResponse,
      // reply-from never replays a request (the app may have acted on it, and on its session
      // headers); the hop alone resends one, narrowly: see UpstreamHop.request.
      retryDelay: () => null,
      onError: (reply, context) => {
        flow.failed(reply.request)
        upstreamError(reply, context)
      }
    },
    disableRequestLogging: true
  })

  return app
}

type HttpProxyOptions = proxy.FastifyHttpProxyOptions
type AnyHeaders = IncomingHttpHeaders | Http2IncomingHttpHeaders

// Every method Node parses except CONNECT (a tunnel, not a request to forward).
const PROXIED_METHODS = METHODS.filter((m) => m !== 'CONNECT')

/**
 * Copies the app's trailers (declared in its Trailer header) to the client when the body ends.
 * Only a chunked response carries trailers, and Node throws from inside res.end (where nothing
 * catches it: the process dies) when one that is not chunked declares them: a HEAD, a 204 or
 * 304, a body with a Content-Length, an HTTP/1.0 client. Those lose the Trailer header.
 */
function forwardTrailers (request: HookRequest, reply: HookReply, body: NodeJS.ReadableStream, protocol: HeaderProtocol): void {
  const declared = reply.getHeader('trailer')
  if (declared === undefined) return
  // reply-from types the reply for HTTP/2 too; this server's is HTTP/1.1.
  const raw = reply.raw as ServerResponse
  const chunked = raw.useChunkedEncodingByDefault && request.method !== 'HEAD' && !BODILESS_STATUS.has(reply.statusCode) && reply.getHeader('content-length') === undefined
  // The app's session headers are removed, so the Trailer header does not name them either.
  const names = String(declared).split(',').map((name) => name.trim()).filter((name) => name !== '' && !protocol.isPrefixed(name.toLowerCase()))
  if (!chunked || names.length === 0) {
    reply.removeHeader('trailer')
    return
  }
  reply.header('trailer', names.join(', '))
  const trailers = trailersOf(body)
  if (trailers === undefined) return
  // Registered before fastify pipes the body, so it runs before the response is ended.
  body.once('end', () => {
    const lines: Array<[string, string]> = []
    for (const [name, value] of Object.entries(trailers)) {
      // The app's session headers never reach the client, not even as trailers.
      if (value === undefined || protocol.isPrefixed(name.toLowerCase())) continue
      for (const v of Array.isArray(value) ? value : [value]) lines.push([name, v])
    }
    // Its addTrailers keeps repeated names.
    if (lines.length > 0) raw.addTrailers(lines)
  })
}

/** No Transfer-Encoding, or exactly `chunked` (Node's parser has refused what it cannot frame). */
function onlyChunked (value: string | undefined): boolean {
  return value === undefined || value.trim().toLowerCase() === 'chunked'
}

// Statuses whose responses have no body (RFC 9110 6.4.1), so no chunks and no trailers.
const BODILESS_STATUS = new Set([204, 304])
