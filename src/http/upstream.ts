import type { FastifyReply, FastifyRequest, RawServerBase, RouteGenericInterface } from 'fastify'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { Pool, errors, type Dispatcher } from 'undici'
import type { UpstreamResult } from '../metrics.js'

/**
 * reply-from hands the request to a "requestable" `undici` option (its lib/request.js,
 * handleUndici) with a copy of the headers that rewriteRequestHeaders returned; a symbol
 * property survives that copy and carries the client's request to the hop.
 */
export const CLIENT_REQUEST = Symbol('session-sidecar.clientRequest')

/**
 * A request and its reply as reply-from's hooks type them: for any server, HTTP/2 included.
 * (The sidecar's is HTTP/1.1; what takes these needs nothing HTTP/1-only.)
 */
export type HookRequest = FastifyRequest<RouteGenericInterface, RawServerBase>
export type HookReply = FastifyReply<RouteGenericInterface, RawServerBase>

/** The field of reply-from's call that the hop reads. */
export interface HopRequest {
  readonly headers: Record<string | symbol, unknown>
}

export interface HopResponse {
  readonly statusCode: number
  readonly headers: IncomingHttpHeaders
  readonly body: Readable
}

export interface UpstreamHopOptions {
  readonly url: string
  /** Longest the app may take to answer (and to accept request-body bytes, and between response chunks). */
  readonly timeoutMs: number
  /** The header lines the app receives for this request. */
  readonly headersFor: (request: FastifyRequest) => string[]
  /** Hears how each request to the app ended and how long it took to its response headers (ms). */
  readonly timed: (result: UpstreamResult, ms: number) => void
  /** Removes from an app's 103 Early Hints what must not reach the client (its session and hop-by-hop headers), in place. */
  readonly cleanHints: (headers: Record<string, string | string[]>) => void
}

// Methods a request of which the app may get twice (RFC 9110 9.2.2).
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])
// undici's errors for a connection the other side closed or reset.
const CLOSED_BY_PEER = new Set(['UND_ERR_SOCKET', 'ECONNRESET'])

const trailersByBody = new WeakMap<Readable, Record<string, string | string[] | undefined>>()
const watches = new WeakMap<IncomingMessage, BodyWatch>()

/**
 * Aborts the app's request for a client request whose body will never be complete (the
 * client was cut off), so the app does not wait for the rest of it.
 */
export function abortUpstream (raw: IncomingMessage, reason: Error): void {
  watches.get(raw)?.abort(reason)
}

// A 204 or 304 has no body whatever its Content-Length says (RFC 9110 6.4.1); undici would
// fail the response over the missing bytes.
const NO_BODY = new Set([204, 304])

/** The app's trailers of a response body, filled in when the body ends. */
export function trailersOf (body: unknown): Record<string, string | string[] | undefined> | undefined {
  return trailersByBody.get(body as Readable)
}

/** The request target as the client sent it (fastify's rewriteUrl may route an odd one as `/`). */
export function clientTarget (raw: IncomingMessage): string {
  return (raw as IncomingMessage & { originalUrl?: string }).originalUrl ?? raw.url ?? '/'
}

/** Absolute-form targets (`GET http://host/path`, checked by the proxy) go on in origin form. */
function originForm (url: string): string {
  if (url === '*') return '/'
  const parsed = new URL(url)
  return parsed.pathname + parsed.search
}

/** True when a request carries a body (RFC 9112 section 6.3): any method, GET and HEAD included. */
export function hasBody (raw: IncomingMessage): boolean {
  const length = raw.headers['content-length']
  return raw.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/**
 * The hop from the sidecar to the app, on undici: the request target exactly as the client
 * wrote it (reply-from would re-encode it), the header lines built by `headersFor`, and the
 * body of any method streamed from the client's socket, never parsed or held.
 */
export class UpstreamHop {
  readonly #pool: Pool
  readonly #timeoutMs: number
  readonly #headersFor: (request: FastifyRequest) => string[]
  readonly #timed: (result: UpstreamResult, ms: number) => void
  readonly #cleanHints: (headers: Record<string, string | string[]>) => void

  constructor (options: UpstreamHopOptions) {
    this.#cleanHints = options.cleanHints
    this.#timeoutMs = options.timeoutMs
    this.#headersFor = options.headersFor
    this.#timed = options.timed
    this.#pool = new Pool(new URL(options.url).origin, {
      connections: 128,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      // Room for a large X-Session-Set, so that it can be refused gracefully instead of a 502.
      maxHeaderSize: 128 * 1024,
      connect: { timeout: Math.min(options.timeoutMs, 10_000) }
    })
  }

  /** Called by reply-from for every proxied request. */
  request (opts: HopRequest, callback: (err: Error | null, res?: HopResponse) => void): void {
    const request = opts.headers[CLIENT_REQUEST] as FastifyRequest
    const raw = request.raw
    const url = clientTarget(raw)
    const dispatch: Dispatcher.RequestOptions = {
      path: url.charCodeAt(0) === 47 /* / */ ? url : originForm(url),
      method: raw.method as Dispatcher.HttpMethod,
      headers: this.#headersFor(request),
      body: null,
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs
    }
    let watch: BodyWatch | undefined
    if (hasBody(raw)) {
      // undici's header timer runs from dispatch: a long upload from a slow client would time
      // out although the app is fine. A watch of our own blames the app only when it stops
      // taking the body, or stops answering once the body is complete.
      watch = new BodyWatch(raw, this.#timeoutMs)
      watches.set(raw, watch)
      dispatch.body = raw
      dispatch.headersTimeout = 0
      dispatch.signal = watch.signal
    }
    dispatch.onInfo = this.#onInfo(request)
    const sent = performance.now()
    // Sent again once, on another connection, when the connection it went out on was closed
    // by the app before any answer (an app's idle keep-alive timeout racing the request), as
    // nginx's proxy_next_upstream does: only a request with no body whose method is idempotent
    // (RFC 9110 9.2.2), which the app may receive twice by design.
    let retry = watch === undefined && IDEMPOTENT.has(dispatch.method)
    const answered = (err: Error | null, data: Dispatcher.ResponseData): void => {
      if (err !== null && retry && CLOSED_BY_PEER.has((err as { code?: string }).code as string)) {
        retry = false
        this.#pool.request(dispatch, answered)
        return
      }
      watch?.stop()
      if (err !== null) {
        this.#timed((err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT' ? 'timeout' : 'error', performance.now() - sent)
        callback(err)
        return
      }
      this.#timed('response', performance.now() - sent)
      if (NO_BODY.has(data.statusCode)) {
        data.body.on('error', noop).resume()
        callback(null, { statusCode: data.statusCode, headers: data.headers, body: Readable.from([]) })
        return
      }
      trailersByBody.set(data.body, data.trailers)
      callback(null, data)
    }
    this.#pool.request(dispatch, answered)
  }

  /**
   * Informational answers the client can use are relayed as they come: 103 Early Hints and
   * 102 Processing. (The client's 100 Continue was sent by Node's server already.)
   */
  #onInfo (request: FastifyRequest): (info: { statusCode: number, headers: Record<string, string | string[]> }) => void {
    return (info) => {
      // The response being written on the client's socket, if it is this request's (Node keeps
      // it there; with pipelining it may still be an earlier request's).
      const res = (request.raw.socket as { _httpMessage?: ServerResponse } | null)?._httpMessage
      if (res === undefined || res.req !== request.raw || res.headersSent || res.destroyed) return
      // An HTTP/1.0 client must get no 1xx (RFC 9110 15.2); its request reached the app as 1.1.
      if (request.raw.httpVersionMinor === 0 && request.raw.httpVersionMajor === 1) return
      if (info.statusCode === 103) {
        const headers = { ...info.headers }
        this.#cleanHints(headers)
        // Node refuses a Link it cannot validate: a hint is optional, so it is dropped.
        try { res.writeEarlyHints(headers) } catch {}
      } else if (info.statusCode === 102) res.writeProcessing()
    }
  }

  async close (): Promise<void> {
    await this.#pool.destroy()
  }
}

/**
 * Aborts a request with a body when the app neither takes body bytes nor answers within
 * `ms`. Bytes the client has not sent yet are the client's delay (`listen.bodyIdleTimeoutMs`
 * governs those), not the app's.
 */
class BodyWatch {
  readonly #controller = new AbortController()
  readonly #raw: IncomingMessage
  readonly #timer: NodeJS.Timeout
  #bytes = -1

  constructor (raw: IncomingMessage, ms: number) {
    this.#raw = raw
    this.#timer = setInterval(() => this.#tick(), ms)
    this.#timer.unref()
    // The app gets the whole budget once the body is complete.
    raw.once('end', () => this.#timer.refresh())
  }

  get signal (): AbortSignal { return this.#controller.signal }

  #tick (): void {
    const raw = this.#raw
    if (!raw.readableEnded) {
      // Bytes the app has taken so far (read from the socket, no longer buffered here).
      const taken = (raw.socket?.bytesRead ?? 0) - raw.readableLength
      const waitingForClient = raw.readableLength === 0 && !raw.complete
      const moved = taken !== this.#bytes
      this.#bytes = taken
      if (waitingForClient || moved) return
    }
    this.abort(new errors.HeadersTimeoutError('the app did not take the request body or answer in time'))
  }

  abort (reason: Error): void {
    this.stop()
    this.#controller.abort(reason)
  }

  stop (): void {
    clearInterval(this.#timer)
  }
}

function noop (): void {}
