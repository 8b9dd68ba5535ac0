import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import proxy from '@fastify/http-proxy'
import { METHODS, STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import type { Logger } from 'pino'
import type { SidecarConfig } from './config/index.js'
import { codes, RefusedUpdate, upstreamErrorBodies } from './errors.js'
import { AppRequestHeaders } from './http/app-request.js'
import { AppCookieDomain, SessionCookieHeaders } from './http/cookies.js'
import { Forwarding } from './http/forwarding.js'
import { stripResponseHopByHop } from './http/hop-by-hop.js'
import { HeaderProtocol, type AppUpdates } from './http/protocol.js'
import { clientErrorHandler, serverOptions, watchBodyIdle } from './http/timeouts.js'
import { CLIENT_REQUEST, clientTarget, trailersOf, UpstreamHop } from './http/upstream.js'
import { upstreamErrorsOnce, upstreamFailure } from './http/upstream-errors.js'
import type { Metrics } from './metrics.js'
import type { NodePool } from './memcached/pool.js'
import { CookieCodec, type CookieFields, type VerifiedCookie } from './session/cookie.js'
import { decodeJson, decodeObject, isObject, mergePatch, type SessionObject } from './session/data.js'
import type { SessionRecord } from './session/record.js'
import { keyHash } from './session/key.js'
import { keyring } from './session/secrets.js'
import type { Change, SessionStore } from './session/store.js'

/** What the sidecar knows about one request's session, from the cookie to the response. */
class RequestSession {
  /** The session served to the app, if any. */
  record: SessionRecord | undefined = undefined
  /** The client's verified cookie, if it sent one. */
  cookie: CookieFields | undefined = undefined
  /** A Set-Cookie to send even without a change: reissue (old secret, newer state) or clear. */
  setCookie: string | undefined = undefined
  /** Set while the response waits for memcached (write: sync). */
  pending: Promise<void> | undefined = undefined
  /** When the request first waited on memcached: one timeoutMs budget covers load and write. */
  memcachedSince = 0
  /** How the session was found; counted once the response is under way. */
  outcome: Outcome | undefined = undefined
  /** A verified cookie whose session memcached could not produce in time (not a miss). */
  unavailable = false
}

type Outcome = 'hit' | 'loaded' | 'created' | 'none' | 'ignored' | 'stale' | 'degraded'

// Requests on ignored paths share one marker: no allocation, no session work.
const IGNORED = new RequestSession()

declare module 'fastify' {
  interface FastifyRequest {
    session: RequestSession | null
  }
}

export interface ProxyDeps {
  readonly config: SidecarConfig
  readonly log: Logger
  readonly store: SessionStore
  readonly pool: NodePool
  readonly metrics: Metrics
}

/** The client-facing fastify app: one catch-all proxy route with the session hooks around it. */
export async function buildProxy ({ config, log, store, pool, metrics }: ProxyDeps): Promise<FastifyInstance> {
  const { session, memcached, upstream, listen } = config
  const codec = new CookieCodec(keyring(session))
  const protocol = new HeaderProtocol(session.headerPrefix)
  const cookies = new SessionCookieHeaders(session.cookie)
  const appCookieDomain = config.cookies.domain === undefined ? undefined : new AppCookieDomain(config.cookies.domain, config.cookies.names)
  const ignore = session.ignore
  const sync = memcached.write === 'sync'
  const outcome = {
    hit: metrics.requests.labels('hit'),
    loaded: metrics.requests.labels('miss-loaded'),
    created: metrics.requests.labels('new'),
    none: metrics.requests.labels('none'),
    ignored: metrics.requests.labels('ignored'),
    stale: metrics.requests.labels('stale'),
    degraded: metrics.requests.labels('degraded')
  }

  const generated = metrics.generated
  const appHeaders = new AppRequestHeaders(protocol, cookies, new Forwarding(listen.trustProxies, listen.forwarded))
  const hop = new UpstreamHop({
    url: upstream.url,
    timeoutMs: upstream.timeoutMs,
    headersFor: (request) => {
      const state = request.session
      return state === null || state === IGNORED ? appHeaders.build(request.raw, undefined, false) : appHeaders.build(request.raw, state.record, state.unavailable)
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
    // RFC 9112 section 3.2: two Host lines are refused (which one would the app believe?).
    if (hostLines(request.raw.rawHeaders) > 1 || !acceptTarget(request.raw)) {
      generated(400, 'bad-request')
      reply.code(400).header('connection', 'close').type('text/plain; charset=utf-8').send('Bad Request\n')
      return
    }
    watchBodyIdle(request, reply, listen.bodyIdleTimeoutMs, generated)
    done()
  })
  app.addHook('onClose', async () => { await hop.close() })
  // Whatever fails before the app's response is under way (its body erroring before the first
  // byte, say) is answered like an unusable upstream response: short, plain, counted; never
  // fastify's JSON with an internal error code.
  app.setErrorHandler((err: Error & { statusCode?: number }, request, reply) => {
    const status = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 502
    request.log.warn({ code: codes.UPSTREAM_BAD_RESPONSE, cause: err.message, status }, 'request failed before the response began')
    generated(status, status === 502 ? 'upstream-bad-response' : 'bad-request')
    reply.code(status).type('text/plain; charset=utf-8').send(`${STATUS_CODES[status] ?? 'Error'}\n`)
  })

  /** The session cookie to send for a record, memoised so a repeat request skips the HMAC. */
  const cookieFor = (record: SessionRecord): string => {
    record.cookie ??= codec.encode(record)
    return record.cookie
  }

  /** Serve `record` for a request that carried `value` (verified as `cookie`). */
  const serve = (state: RequestSession, record: SessionRecord, cookie: CookieFields, value: string, oldSecret: boolean): void => {
    state.record = record
    if (record.version < cookie.version) {
      // Never lower the client's version: after a stale read the cookie stays ahead. A cookie
      // signed with an old secret is still reissued, at its own version.
      if (oldSecret) state.setCookie = cookies.set(codec.encode({ key: record.key, primary: record.primary, backup: record.backup, version: cookie.version }))
      return
    }
    const current = cookieFor(record)
    if (current !== value || oldSecret) state.setCookie = cookies.set(current)
  }

  const loadSession = (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void => {
    // TRACE echoes the request back: the app would hand the session's data to the client.
    if ((ignore !== null && ignore.test(pathOf(clientTarget(request.raw)))) || request.raw.method === 'TRACE') {
      request.session = IGNORED
      outcome.ignored.inc()
      done()
      return
    }
    const state = new RequestSession()
    request.session = state
    const header = request.headers.cookie
    const values = cookies.mayHold(header) ? cookies.readAll(header) : NO_VALUES
    if (values.length === 0) {
      state.outcome = 'none'
      done()
      return
    }
    if (values.length > 1) {
      fromSeveral(request, state, values, done)
      return
    }
    const value = values[0] as string
    const now = performance.now()
    // The exact cookie this node issued or verified for this state: no parsing, no HMAC. (The
    // key sits at a fixed place in format 1: `1~` + 22 characters.)
    const issued = value.length > 24 ? store.local(value.slice(2, 24)) : undefined
    if (issued !== undefined && issued.cookie !== undefined && sameText(issued.cookie, value) && store.fresh(issued, issued.version, now)) {
      state.record = issued
      state.cookie = issued
      state.outcome = 'hit'
      done()
      return
    }
    const verified = verifyAllowed(value)
    if (verified === undefined) return forged(request, done)
    fromVerified(request, state, value, verified, done)
  }

  /** A cookie that parses, verifies and names only allowed addresses; undefined otherwise. */
  const verifyAllowed = (value: string): VerifiedCookie | undefined => {
    const verified = codec.verify(value)
    if (verified === undefined) return undefined
    if (!pool.allows(verified.primary) || (verified.backup !== undefined && !pool.allows(verified.backup))) return undefined
    return verified
  }

  const fromVerified = (request: FastifyRequest, state: RequestSession, value: string, verified: VerifiedCookie, done: (err?: Error) => void): void => {
    const local = store.local(verified.key)
    state.cookie = verified
    const now = performance.now()
    if (local !== undefined && store.fresh(local, verified.version, now)) {
      serve(state, local, verified, value, verified.oldSecret)
      state.outcome = 'hit'
      done()
      return
    }
    // One budget per request, however many cookies it takes to find the session.
    if (state.memcachedSince === 0) state.memcachedSince = performance.now()
    store.load(verified, local).then((loaded) => {
      switch (loaded.outcome) {
        case 'gone':
          state.setCookie = cookies.clear
          state.outcome = 'none'
          break
        case 'unavailable':
          state.outcome = 'degraded'
          state.unavailable = true
          break
        default:
          serve(state, loaded.record as SessionRecord, verified, value, verified.oldSecret)
          state.outcome = loaded.outcome === 'miss-loaded' ? 'loaded' : loaded.outcome
      }
      done()
    }, (err: unknown) => {
      request.log.error({ err, code: codes.SESSION_LOAD_FAILED }, 'session load failed; serving without a session')
      state.unavailable = true
      // Counted like memcached not answering: the request still has an outcome.
      state.outcome = 'degraded'
      done()
    })
  }

  /**
   * Several session cookies (path or domain variants): one that verifies wins; for one key the
   * highest version, across keys the first whose session is live (held here, then loaded).
   */
  const fromSeveral = (request: FastifyRequest, state: RequestSession, values: readonly string[], done: (err?: Error) => void): void => {
    const best = new Map<string, { value: string, verified: VerifiedCookie }>()
    let forgeries = 0
    // A browser holds a few path/domain variants; more is someone making the sidecar work.
    for (const value of values.length > MAX_SESSION_COOKIES ? values.slice(0, MAX_SESSION_COOKIES) : values) {
      const verified = verifyAllowed(value)
      if (verified === undefined) {
        forgeries++
        continue
      }
      const seen = best.get(verified.key)
      if (seen === undefined || verified.version > seen.verified.version) best.set(verified.key, { value, verified })
    }
    // Counted once per request, like a single forged cookie.
    if (forgeries > 0) metrics.forgedCookies.inc()
    // Sessions held here first: no memcached read to find out they are live.
    const candidates = [...best.values()].map((c) => ({ ...c, held: store.local(c.verified.key) !== undefined })).sort((a, b) => Number(b.held) - Number(a.held))
    if (candidates.length === 0) {
      state.outcome = 'none'
      request.log.debug('no session cookie verified; treated as absent')
      done()
      return
    }
    const attempt = (i: number): void => {
      const { value, verified } = candidates[i] as { value: string, verified: VerifiedCookie }
      fromVerified(request, state, value, verified, (err) => {
        if (state.record !== undefined || i + 1 >= candidates.length) {
          done(err)
          return
        }
        state.cookie = undefined
        state.setCookie = undefined
        state.outcome = undefined
        attempt(i + 1)
      })
    }
    attempt(0)
  }

  const forged = (request: FastifyRequest, done: () => void): void => {
    metrics.forgedCookies.inc()
    if (request.session !== null) request.session.outcome = 'none'
    request.log.debug('session cookie did not verify; treated as absent')
    done()
  }

  // The upstream hop builds the app's headers from the client's raw lines; it only needs the request.
  const rewriteRequestHeaders = (request: FastifyRequest, headers: IncomingHttpHeaders): IncomingHttpHeaders => {
    (headers as Record<symbol, unknown>)[CLIENT_REQUEST] = request
    return headers
  }

  const rewriteHeaders = (headers: IncomingHttpHeaders, request?: FastifyRequest): IncomingHttpHeaders => {
    // The upstream's connection headers describe its connection to us, not the client's.
    stripResponseHopByHop(headers as Record<string, unknown>)
    const updates = protocol.takeUpdates(headers as Record<string, string | string[] | undefined>)
    const state = request?.session
    // Applied here, not in onResponse: reply-from skips onResponse when the client has gone,
    // and a logout or a regeneration must not be lost with it.
    if (updates !== undefined && state != null && state !== IGNORED && request !== undefined) {
      try {
        state.pending = applyUpdates(request, state, updates)
      } catch (err) {
        // Nothing the app sends may take the process down; the previous session stays.
        request.log.error({ err: { type: (err as Error).name, message: (err as Error).message }, code: codes.SESSION_UPDATE_FAILED }, 'session update failed; previous session kept')
      }
    }
    if (appCookieDomain !== undefined && headers['set-cookie'] !== undefined) {
      headers['set-cookie'] = appCookieDomain.rewrite(headers['set-cookie']) as string[]
    }
    return headers
  }

  const count = (state: RequestSession | null): void => {
    if (state !== null && state.outcome !== undefined) outcome[state.outcome].inc()
  }

  const onResponse = (request: FastifyRequest, reply: FastifyReply, res: { stream: NodeJS.ReadableStream }): void => {
    forwardTrailers(reply, res.stream, protocol)
    const state = request.session
    if (state === null || state === IGNORED) {
      reply.send(res.stream)
      return
    }
    const pending = state.pending
    count(state)
    if (pending === undefined) {
      if (state.setCookie !== undefined) reply.header('set-cookie', state.setCookie)
      reply.send(res.stream)
      return
    }
    pending.then(() => {
      if (state.setCookie !== undefined) reply.header('set-cookie', state.setCookie)
      reply.send(res.stream)
    }, (err: unknown) => {
      request.log.error({ err }, 'session update failed')
      reply.send(res.stream)
    })
  }

  /** What is left of the request's memcached budget. */
  const budget = (state: RequestSession): number =>
    state.memcachedSince === 0 ? memcached.timeoutMs : Math.max(0, memcached.timeoutMs - (performance.now() - state.memcachedSince))

  /** Applies the app's updates; returns a promise only when the response must wait (sync). */
  const applyUpdates = (request: FastifyRequest, state: RequestSession, updates: AppUpdates): Promise<void> | undefined => {
    const record = state.record
    if (updates.destroy) {
      // Whatever memcached.write says, a logout is durable when answered: the response waits
      // (within the budget) for the primary to hold the tombstone.
      if (record !== undefined) {
        state.setCookie = cookies.clear
        state.record = undefined
        return withTimeout(store.destroy(record, state.cookie), budget(state))
      } else if (state.cookie !== undefined) {
        // memcached did not answer when this request began: end it wherever the cookie says.
        state.setCookie = cookies.clear
        return withTimeout(store.destroyByCookie(state.cookie), budget(state))
      }
      return undefined
    }
    if (record === undefined && state.unavailable && !updates.regenerate) {
      // The user has a session we could not read in time: a Set or Merge now would mint a new
      // key and replace it. Refused; the cookie stays, and the next request tries again. With
      // Regenerate (a login) the app asks for a new key anyway: that goes through.
      metrics.refusedUpdates.labels('session-unavailable').inc()
      request.log.warn({ code: codes.SESSION_UPDATE_REFUSED, reason: 'session-unavailable', session: keyHash(state.cookie?.key ?? '') }, 'session update refused: the session could not be loaded in time; cookie kept')
      return undefined
    }
    let change: Change
    try {
      change = decodeChange(updates, session.maxBytes)
    } catch (err) {
      if (!(err instanceof RefusedUpdate)) throw err
      metrics.refusedUpdates.labels(err.reason).inc()
      request.log.error({ code: codes.SESSION_UPDATE_REFUSED, header: err.header, reason: err.reason, session: record === undefined ? undefined : keyHash(record.key) }, 'session update refused; previous session kept')
      // Regeneration protects against fixation: honour it even when the data was refused.
      if (!updates.regenerate) return undefined
      change = { set: undefined, merge: undefined, regenerate: true }
    }
    let applied
    try {
      applied = store.apply(record, state.cookie?.version ?? 0, change)
    } catch (err) {
      if (!(err instanceof RefusedUpdate)) throw err
      metrics.refusedUpdates.labels(err.reason).inc()
      request.log.error({ code: codes.SESSION_UPDATE_REFUSED, header: err.header, reason: err.reason }, 'session update refused; previous session kept')
      return undefined
    }
    if (applied === undefined) return undefined
    if (record === undefined) state.outcome = 'created'
    state.record = applied.record
    state.setCookie = cookies.set(cookieFor(applied.record))
    if (!sync || applied.written === undefined) return undefined
    const finalRecord = applied.record
    return withTimeout(applied.written, budget(state)).then(() => {
      // A conflict may have given the write a higher version or other nodes: say so.
      const now = store.local(finalRecord.key)
      if (now !== undefined && now !== finalRecord && now.version >= finalRecord.version) state.setCookie = cookies.set(cookieFor(now))
    })
  }

  /**
   * WebSocket upgrades: the session is loaded by the same preHandler, and the app's upgrade
   * request gets what an HTTP request gets (the client's lines, Origin included, Host,
   * forwarding and session headers), minus the handshake lines the WebSocket client writes
   * itself. (The session cannot change over a WebSocket: there are no response headers.)
   */
  const rewriteWsHeaders = (base: Record<string, string> | undefined, request: FastifyRequest): Record<string, string> => {
    const headers: Record<string, string> = { ...base }
    const state = request.session
    const lines = state === null || state === IGNORED ? appHeaders.build(request.raw, undefined, false) : appHeaders.build(request.raw, state.record, state.unavailable)
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
    preHandler: loadSession,
    httpMethods: PROXIED_METHODS,
    // No body parsers at all: fastify never reads a body (every method is "bodyless" above).
    proxyPayloads: false,
    websocket: true,
    wsClientOptions: { rewriteRequestHeaders: rewriteWsHeaders },
    undici: hop,
    replyOptions: {
      rewriteRequestHeaders,
      rewriteHeaders,
      onResponse,
      // Never replay a request: the app may have acted on it, and its session headers with it.
      retryDelay: () => null,
      onError: (reply, { error }) => {
        if (reply.request.session !== IGNORED) count(reply.request.session)
        if (reply.sent || reply.raw.headersSent) return
        // The client left (mid-upload, say) and its request to the app was cut with it: no
        // upstream failure, and nobody to answer.
        if (reply.raw.destroyed) {
          reply.log.debug({ errorCode: (error.cause as { code?: string } | undefined)?.code }, 'client gone before the app answered')
          return
        }
        // One line per failure (reply-from's own, with the stack, is at debug: upstreamErrorsOnce).
        const { status, code, reason, errorCode, cause } = upstreamFailure(error)
        reply.log.warn({ code, status, errorCode, cause }, 'upstream failed')
        generated(status, reason)
        reply.code(status).type('text/plain; charset=utf-8').send(upstreamErrorBodies[status])
      }
    },
    disableRequestLogging: true
  } as Parameters<typeof proxy>[1])

  return app
}

// Every method Node parses except CONNECT (a tunnel, not a request to forward).
const PROXIED_METHODS = METHODS.filter((m) => m !== 'CONNECT')
const NO_VALUES: readonly string[] = []
const MAX_SESSION_COOKIES = 8

/** Copies the app's trailers (declared in its Trailer header) to the client when the body ends. */
function forwardTrailers (reply: FastifyReply, body: NodeJS.ReadableStream, protocol: HeaderProtocol): void {
  const trailers = trailersOf(body)
  if (trailers === undefined || reply.getHeader('trailer') === undefined) return
  // Registered before fastify pipes the body, so it runs before the response is ended.
  body.once('end', () => {
    const lines: Array<[string, string]> = []
    for (const [name, value] of Object.entries(trailers)) {
      // The app's session headers never reach the client, not even as trailers.
      if (value === undefined || protocol.isPrefixed(name.toLowerCase())) continue
      for (const v of Array.isArray(value) ? value : [value]) lines.push([name, v])
    }
    if (lines.length > 0) reply.raw.addTrailers(lines)
  })
}

function hostLines (raw: string[]): number {
  let n = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    if (name.length === 4 && name.toLowerCase() === 'host') n++
  }
  return n
}

/**
 * An absolute-form target (`GET http://host/path`) names the host itself: RFC 9112 section
 * 3.2.2 has it win over the Host line, so the app gets it as Host. One that does not parse is
 * refused (the app would otherwise get some other path). `OPTIONS *` passes (as `OPTIONS /`:
 * undici cannot send the asterisk form).
 */
function acceptTarget (raw: IncomingMessage): boolean {
  const target = clientTarget(raw)
  if (target.charCodeAt(0) === 47 /* / */ || (target === '*' && raw.method === 'OPTIONS')) return true
  let url: URL
  try {
    url = new URL(target)
  } catch {
    return false
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false
  raw.headers.host = url.host
  return true
}

/** A target fastify and @fastify/http-proxy accept: origin form, valid escapes, no dot segments. */
function routable (url: string): boolean {
  if (url.charCodeAt(0) !== 47 /* / */ || url.charCodeAt(1) === 47) return false
  // The common case costs two scans.
  if (!url.includes('%') && !url.includes('..') && !url.includes('\\')) return true
  try {
    const q = url.indexOf('?')
    decodeURIComponent(q < 0 ? url : url.slice(q + 1))
    return !decodeURIComponent(q < 0 ? url : url.slice(0, q)).replaceAll('\\', '/').split('/').includes('..')
  } catch {
    return false
  }
}

function decodeChange (updates: AppUpdates, maxBytes: number): Change {
  let set: SessionObject | undefined
  let merge: SessionObject | undefined
  if (updates.set !== undefined) set = decodeObject(updates.set, 'X-Session-Set', maxBytes)
  if (updates.merge !== undefined) {
    const patch = decodeJson(updates.merge, 'X-Session-Merge', maxBytes)
    if (!isObject(patch)) throw new RefusedUpdate('not-an-object', 'X-Session-Merge')
    if (set !== undefined) set = mergePatch(set, patch) as SessionObject
    else merge = patch
  }
  return { set, merge, regenerate: updates.regenerate }
}

/**
 * Constant-time equality of two strings, without allocating: the fast path compares a client's
 * cookie to the one this node issued, and must not reveal how much of a MAC was right.
 */
function sameText (a: string, b: string): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}

function pathOf (url: string): string {
  const q = url.indexOf('?')
  return q < 0 ? url : url.slice(0, q)
}

async function withTimeout (work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([work, new Promise((resolve) => { timer = setTimeout(resolve, ms) })])
  clearTimeout(timer)
}
