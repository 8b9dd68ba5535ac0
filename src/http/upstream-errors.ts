import type { FastifyServerOptions } from 'fastify'
import { codes } from '../errors.js'
import type { GeneratedReason } from '../metrics.js'

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
 * The app answered, but with something undici cannot relay: headers over the limit, bytes that
 * do not parse as HTTP (HPE_*), or an answer undici refuses ("bad response": an unsolicited
 * 100 Continue, a response before any request).
 */
function badResponse (errorCode: string | undefined, message: string): boolean {
  return errorCode === 'UND_ERR_HEADERS_OVERFLOW' || errorCode?.startsWith('HPE_') === true || (errorCode === 'UND_ERR_SOCKET' && message === 'bad response')
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
