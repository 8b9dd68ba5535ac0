import type { FastifyError, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify'
import { STATUS_CODES } from 'node:http'
import { codes, upstreamErrorBodies } from '../errors.js'
import type { Generated, GeneratedReason } from '../metrics.js'
import type { HookReply } from './upstream.js'

/** What the client gets for a request the app did not answer, and what is logged and counted. */
export interface UpstreamFailure {
  readonly status: 502 | 504
  readonly code: string
  readonly reason: GeneratedReason
  /** The low-level error's code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, ...), when it has one. */
  readonly errorCode: string | undefined
  /** Its message (it may name the app's address: for the log, never for the client). */
  readonly cause: string
}

/**
 * The one place an upstream error becomes a status, a SIDECAR_ERR_* code and a counter reason.
 * `error` is what reply-from hands to replyOptions.onError: its own wrapper (statusCode 504
 * for a timeout) around undici's error in `cause`.
 */
export function upstreamFailure (error: Error & { statusCode?: number }): UpstreamFailure {
  const cause = error.cause as (Error & { code?: string }) | undefined
  const errorCode = cause?.code ?? (error as { code?: string }).code
  const message = cause?.message ?? error.message
  if (error.statusCode === 504) return { status: 504, code: codes.UPSTREAM_TIMEOUT, reason: 'upstream-timeout', errorCode, cause: message }
  if (badResponse(errorCode, message)) return { status: 502, code: codes.UPSTREAM_BAD_RESPONSE, reason: 'upstream-bad-response', errorCode, cause: message }
  return { status: 502, code: codes.UPSTREAM_UNAVAILABLE, reason: 'upstream-unavailable', errorCode, cause: message }
}

/**
 * reply-from's onError: answers a request the app did not answer (502 or 504, a short plain
 * body), logs it once at warn with its code, counts it, and tells `observed` (the app's
 * reachability). Nothing when the response is under way or the client has gone.
 */
export function upstreamErrorReply (generated: Generated, observed: (failure: UpstreamFailure) => void = () => {}): (reply: HookReply, context: { error: Error }) => void {
  return (reply, { error }) => {
    if (reply.sent || reply.raw.headersSent) return
    // The client left (mid-upload, say), or a drain out of time closed its connection, and
    // its request to the app was cut with it: no upstream failure, and nobody to answer.
    if (reply.raw.destroyed || reply.raw.socket?.destroyed !== false) {
      reply.log.debug({ errorCode: (error.cause as { code?: string } | undefined)?.code }, 'client gone before the app answered')
      return
    }
    // One line per failure (reply-from's own, with the stack, is at debug: upstreamErrorsOnce).
    const failure = upstreamFailure(error)
    observed(failure)
    const { status, code, reason, errorCode, cause } = failure
    reply.log.warn({ code, status, errorCode, cause }, 'upstream failed')
    generated(status, reason)
    reply.code(status).type('text/plain; charset=utf-8').send(upstreamErrorBodies[status])
  }
}

/**
 * fastify's error handler: whatever fails before the app's response is under way (its body
 * erroring before the first byte, say) is answered like an unusable upstream response: short,
 * plain, counted; never fastify's JSON with an internal error code. A client error keeps its 4xx.
 */
export function failedBeforeResponse (generated: Generated): (err: FastifyError, request: FastifyRequest, reply: FastifyReply) => void {
  return (err, request, reply) => {
    const status = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 502
    request.log.warn({ code: codes.UPSTREAM_BAD_RESPONSE, cause: err.message, status }, 'request failed before the response began')
    generated(status, status === 502 ? 'upstream-bad-response' : 'bad-request')
    reply.code(status).type('text/plain; charset=utf-8').send(`${STATUS_CODES[status] ?? 'Error'}\n`)
  }
}

/**
 * The app answered, but with something undici cannot relay: headers over the limit, bytes that
 * do not parse as HTTP (HPE_*), a body its framing contradicts (two Content-Lengths, or one with
 * Transfer-Encoding), or an answer undici refuses ("bad response": an unsolicited 100 Continue,
 * a response before any request).
 */
function badResponse (errorCode: string | undefined, message: string): boolean {
  return errorCode === 'UND_ERR_HEADERS_OVERFLOW' || errorCode === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' || errorCode?.startsWith('HPE_') === true || (errorCode === 'UND_ERR_SOCKET' && message === 'bad response')
}

// reply-from logs each failed request to the app at warn, with the error's stack, before it
// calls replyOptions.onError (or, for a bad status, after): these are its messages.
const REPLY_FROM_LINES = new Set(['response errored', 'response has invalid status code'])
const WARN = Symbol('session-sidecar.warn')

type Warn = (...args: unknown[]) => void
type ChildLoggerFactory = NonNullable<FastifyServerOptions['childLoggerFactory']>

/**
 * Request loggers on which reply-from's own error lines go to debug: the sidecar's onError logs
 * each upstream failure once, at warn, with its code; the stack is there at debug level.
 * (One property per request, no closure: the method is shared and the child's own `warn` kept
 * under a symbol.)
 */
export const upstreamErrorsOnce: ChildLoggerFactory = function (logger, bindings, opts) {
  const child = logger.child(bindings, opts) as unknown as Record<string | symbol, unknown>
  child[WARN] = child.warn
  child.warn = warnUnlessReplyFrom
  return child as unknown as ReturnType<ChildLoggerFactory>
}

function warnUnlessReplyFrom (this: Record<string | symbol, Warn>, ...args: unknown[]): void {
  if (typeof args[1] === 'string' && REPLY_FROM_LINES.has(args[1])) {
    this.debug?.(...args)
    return
  }
  this[WARN]?.apply(this, args)
}
