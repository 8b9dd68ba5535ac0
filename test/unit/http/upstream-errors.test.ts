import t from 'tap'
import { pino } from 'pino'
import { upstreamErrorsOnce, upstreamFailure } from '../../../src/http/upstream-errors.js'
import { LogCapture } from '../../helpers/sidecar.js'

// src/http/upstream-errors.ts: the one place an upstream error becomes a status, a code and a
// counter reason, and the request loggers on which reply-from's own error lines go to debug.

/** What reply-from hands to onError: its wrapper around undici's error. */
const wrapped = (code: string, message: string, statusCode = 500): Error & { statusCode: number } =>
  Object.assign(new Error(message, { cause: Object.assign(new Error(message), { code }) }), { statusCode })

t.test('each upstream error maps to one status, SIDECAR_ERR_* code and reason', async (t) => {
  const cases: Array<[Error & { statusCode?: number }, number, string, string]> = [
    [wrapped('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:3000'), 502, 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE', 'upstream-unavailable'],
    [wrapped('UND_ERR_SOCKET', 'other side closed'), 502, 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE', 'upstream-unavailable'],
    [wrapped('UND_ERR_HEADERS_TIMEOUT', 'Headers Timeout Error', 504), 504, 'SIDECAR_ERR_UPSTREAM_TIMEOUT', 'upstream-timeout'],
    [wrapped('UND_ERR_HEADERS_OVERFLOW', 'Headers Overflow Error'), 502, 'SIDECAR_ERR_UPSTREAM_BAD_RESPONSE', 'upstream-bad-response'],
    [wrapped('HPE_INVALID_CONSTANT', 'Expected HTTP/'), 502, 'SIDECAR_ERR_UPSTREAM_BAD_RESPONSE', 'upstream-bad-response'],
    [wrapped('UND_ERR_SOCKET', 'bad response'), 502, 'SIDECAR_ERR_UPSTREAM_BAD_RESPONSE', 'upstream-bad-response']
  ]
  for (const [error, status, code, reason] of cases) {
    const errorCode = (error.cause as { code: string }).code
    t.same(upstreamFailure(error), { status, code, reason, errorCode, cause: error.message }, `${errorCode} (${error.message})`)
  }
  t.match(upstreamFailure(new Error('no cause')), { status: 502, reason: 'upstream-unavailable', errorCode: undefined, cause: 'no cause' }, 'an error without a cause')
})

t.test('request loggers: reply-from\'s error lines at debug, every other warn line at warn', async (t) => {
  for (const level of ['info', 'debug']) {
    const logs = new LogCapture()
    const child = upstreamErrorsOnce.call(undefined as never, pino({ level }, logs), { reqId: 'req-1' }, {}, undefined as never) as unknown as pino.Logger
    child.warn(new Error('connect ECONNREFUSED'), 'response errored')
    child.warn(new Error('bad'), 'response has invalid status code')
    child.warn({ code: 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE' }, 'upstream failed')
    const entries = logs.entries
    t.match(entries.filter((e) => e.level === 40), [{ reqId: 'req-1', msg: 'upstream failed', code: 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE' }], `${level}: one warn line, with the request's bindings`)
    t.equal(entries.filter((e) => e.level === 40).length, 1)
    t.equal(entries.filter((e) => e.level === 20).length, level === 'debug' ? 2 : 0, `${level}: reply-from's lines ${level === 'debug' ? 'at debug, with their stacks' : 'not written'}`)
    if (level === 'debug') t.match(entries.find((e) => e.level === 20), { reqId: 'req-1', msg: 'response errored', err: { stack: /ECONNREFUSED/ } })
  }
})
