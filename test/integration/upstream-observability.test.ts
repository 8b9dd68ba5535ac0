import t, { type Test } from 'tap'
import { request } from 'node:http'
import { once } from 'node:events'
import { rawRequest } from '../helpers/client.js'
import { metricValue } from '../helpers/metrics.js'
import { freePort, until } from '../../harness/index.js'
import { RawConnection, serveApp } from '../helpers/raw-socket.js'
import { LogCapture, startStack } from '../helpers/sidecar.js'
import type { Sidecar } from '../../src/sidecar.js'

// Issue 11, part 3 (README "Operations"): each request the app did not answer is one log line at
// warn with its code (reply-from's own line, with the stack, only at debug), and
// sidecar_upstream_duration_seconds{result} times every request to the app up to its response
// headers.

const HISTOGRAM = 'sidecar_upstream_duration_seconds'
const { app, sidecar: start } = await startStack(t)

/** The lines logged for one request (by its reqId), from `from` on. */
function requestLines (logs: LogCapture, from: number): Array<Record<string, unknown>> {
  const entries = logs.entries.slice(from)
  const failed = entries.find((e) => e.msg === 'upstream failed')
  return failed === undefined ? [] : entries.filter((e) => e.reqId === failed.reqId)
}

const atWarnOrAbove = (entries: Array<Record<string, unknown>>): Array<Record<string, unknown>> => entries.filter((e) => Number(e.level) >= 40)

async function refusingSidecar (t: Test, level: string, logs: LogCapture): Promise<Sidecar> {
  return await start(t, { log: { level } }, { upstreamUrl: `http://127.0.0.1:${await freePort()}`, logs })
}

t.test('an upstream failure is one log line at warn with its codes and no stack', async (t) => {
  const logs = new LogCapture()
  const refusing = await refusingSidecar(t, 'info', logs)
  let from = logs.lines.length
  t.equal((await rawRequest(`${refusing.url}/page`)).status, 502)
  const [down, ...more] = requestLines(logs, from)
  t.same(more, [], 'one line for the 502')
  t.match(down, { level: 40, msg: 'upstream failed', code: 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE', status: 502, errorCode: 'ECONNREFUSED' }, 'at warn, with the sidecar\'s code and the error\'s')
  t.notMatch(logs.lines.slice(from).join(''), /stack|\n\s+at /, 'no stack trace')

  const slowLogs = new LogCapture()
  const slow = await start(t, { log: { level: 'info' }, upstream: { url: app.url, timeoutMs: 200 } }, { logs: slowLogs })
  from = slowLogs.lines.length
  t.equal((await rawRequest(`${slow.url}/slow?delay=2000`)).status, 504)
  const [timeout, ...others] = requestLines(slowLogs, from)
  t.same(others, [], 'one line for the 504')
  t.match(timeout, { level: 40, msg: 'upstream failed', code: 'SIDECAR_ERR_UPSTREAM_TIMEOUT', status: 504, errorCode: 'UND_ERR_HEADERS_TIMEOUT' })
  t.notMatch(slowLogs.lines.slice(from).join(''), /stack|\n\s+at /, 'no stack trace')
})

t.test('at log.level debug the same one warn line, and the stack in a debug line', async (t) => {
  const logs = new LogCapture()
  const refusing = await refusingSidecar(t, 'debug', logs)
  const from = logs.lines.length
  t.equal((await rawRequest(`${refusing.url}/page`)).status, 502)
  const lines = requestLines(logs, from)
  t.match(atWarnOrAbove(lines), [{ level: 40, msg: 'upstream failed', code: 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE' }], 'one line at warn or above')
  t.equal(atWarnOrAbove(lines).length, 1)
  const withStack = lines.filter((e) => typeof (e.err as { stack?: unknown } | undefined)?.stack === 'string')
  t.equal(withStack.length, 1, 'one line with the stack')
  t.match(withStack[0], { level: 20, err: { code: 'ECONNREFUSED', stack: /ECONNREFUSED/ } }, 'at debug')
})

t.test('a client that leaves mid-upload is no upstream failure: no warn line, no answer counted', async (t) => {
  let arrived = false
  const { url } = await serveApp(t, (req, res) => {
    arrived = true
    req.resume()
    req.once('end', () => res.end('stored\n'))
  })
  const logs = new LogCapture()
  const sidecar = await start(t, { log: { level: 'info' } }, { upstreamUrl: url, logs })
  const conn = await RawConnection.open(sidecar.url)
  t.teardown(() => conn.destroy())
  const from = logs.lines.length
  await conn.write('POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 100\r\n\r\n0123456789')
  await until(() => arrived, 5000, 'the request at the app')
  conn.destroy()
  // The app's request is cut with the client's: timed as an error once undici gives up on it.
  await until(async () => await metricValue(sidecar.adminUrl, `${HISTOGRAM}_count`, { result: 'error' }) === 1, 5000, 'the app\'s request to end')
  t.same(atWarnOrAbove(logs.entries.slice(from)), [], 'no line at warn or above')
  t.equal(await metricValue(sidecar.adminUrl, 'sidecar_generated_responses_total'), 0, 'no answer of the sidecar\'s own counted (neither 502 nor 400)')
})

/** The histogram's count, sum and one bucket for `result`, read from /metrics. */
async function timings (sidecar: Sidecar, result: string): Promise<{ count: number, sum: number, fast: number }> {
  return {
    count: await metricValue(sidecar.adminUrl, `${HISTOGRAM}_count`, { result }),
    sum: await metricValue(sidecar.adminUrl, `${HISTOGRAM}_sum`, { result }),
    fast: await metricValue(sidecar.adminUrl, `${HISTOGRAM}_bucket`, { result, le: '0.1' })
  }
}

t.test(`${HISTOGRAM}{result="response"} times the app up to its response headers`, async (t) => {
  const sidecar = await start(t)
  const before = await timings(sidecar, 'response')
  t.equal((await rawRequest(`${sidecar.url}/page?delay=250`)).status, 200)
  const after = await timings(sidecar, 'response')
  t.equal(after.count, before.count + 1, 'one more observation')
  t.ok(after.sum - before.sum >= 0.25, `of at least the app's 250 ms (${(after.sum - before.sum).toFixed(3)} s)`)
  t.equal(after.fast, before.fast, 'not in the 0.1 s bucket')
  const quick = await timings(sidecar, 'response')
  await rawRequest(`${sidecar.url}/page`)
  t.equal((await timings(sidecar, 'response')).count, quick.count + 1, 'a quick answer is timed too')
})

t.test(`${HISTOGRAM}{result="response"} includes the upload of a request body the app reads before answering`, async (t) => {
  const { url } = await serveApp(t, (req, res) => {
    req.resume()
    req.once('end', () => res.end('stored\n'))
  })
  const sidecar = await start(t, {}, { upstreamUrl: url })
  const before = await timings(sidecar, 'response')
  const req = request(`${sidecar.url}/upload`, { method: 'POST', agent: false, headers: { 'content-length': 8 } })
  req.write('half')
  // The client takes its time with the rest: the app cannot answer before it has it all.
  await new Promise((resolve) => setTimeout(resolve, 300))
  req.end('more')
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  t.equal(res.statusCode, 200)
  res.resume()
  const after = await timings(sidecar, 'response')
  t.equal(after.count, before.count + 1)
  t.ok(after.sum - before.sum >= 0.25, `the upload's 300 ms counted (${(after.sum - before.sum).toFixed(3)} s)`)
})

t.test(`${HISTOGRAM}{result="timeout"} and {result="error"} time the requests the app did not answer`, async (t) => {
  const slow = await start(t, { upstream: { url: app.url, timeoutMs: 200 } })
  const beforeTimeout = await timings(slow, 'timeout')
  t.equal((await rawRequest(`${slow.url}/slow?delay=2000`)).status, 504)
  const afterTimeout = await timings(slow, 'timeout')
  t.equal(afterTimeout.count, beforeTimeout.count + 1, 'a 504 is one timeout')
  t.ok(afterTimeout.sum - beforeTimeout.sum >= 0.2, `that lasted upstream.timeoutMs (${(afterTimeout.sum - beforeTimeout.sum).toFixed(3)} s)`)
  t.equal((await timings(slow, 'response')).count, 0, 'and no response')

  const refusing = await refusingSidecar(t, 'silent', new LogCapture())
  t.equal((await rawRequest(`${refusing.url}/page`)).status, 502)
  t.equal((await timings(refusing, 'error')).count, 1, 'a refused connection is one error')
  t.equal((await timings(refusing, 'response')).count, 0, 'and no response')
})
