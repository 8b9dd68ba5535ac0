import t, { type Test } from 'tap'
import { request, Agent, type IncomingMessage } from 'node:http'
import { startStack } from '../helpers/sidecar.js'
import { metricValue } from '../helpers/metrics.js'
import { freePort, until } from '../../harness/index.js'
import { rawRequest, type RawResponse } from '../helpers/client.js'
import { MiB, PatternStream } from '../helpers/large-body.js'
import { bodyOf, complete, headerOf, RawConnection, serveApp, statusOf, within } from '../helpers/raw-socket.js'
import type { Sidecar } from '../../src/sidecar.js'

// SPEC "Operations" (upstream down 502, upstream timeout 504, both with a short body) and
// "Transparency" (timeouts): `sidecar_generated_responses_total{status,reason}` counts the
// answers the sidecar made itself, so that operators can tell them from the app's. Each answer is short
// plain text naming no upstream address; the app's own error statuses are never counted.

const METRIC = 'sidecar_generated_responses_total'
const { sidecar: start } = await startStack(t)

/**
 * The app (node:http):
 *   /status/<n>    answers status n with a body of its own
 *   /huge-headers  answers 200 with 200 KiB of headers (over the sidecar's 128 KiB)
 *   /continue      writes an unsolicited 100 Continue, then 200 (undici refuses it)
 *   /hang          never reads the body, never answers
 *   /upload        reads the body, then answers 200
 *   ?delay=<ms>    answers 200 that late
 */
class App {
  readonly requests: string[] = []
  port = 0
  url = ''

  async start (t: Test): Promise<this> {
    const { port, url } = await serveApp(t, (req, res) => {
      const target = new URL(req.url ?? '/', 'http://app')
      this.requests.push(`${req.method ?? ''} ${target.pathname}`)
      const status = /^\/status\/(\d{3})$/.exec(target.pathname)
      if (status !== null) {
        req.resume()
        res.writeHead(Number(status[1]), { 'content-type': 'application/json' })
        res.end(JSON.stringify({ from: 'the app', status: Number(status[1]) }))
        return
      }
      if (target.pathname === '/huge-headers') {
        req.resume()
        res.writeHead(200, { 'x-padding': 'a'.repeat(200 * 1024) })
        res.end('ok\n')
        return
      }
      // Framing that contradicts itself, written raw (node:http would not send it).
      const framing = { '/two-lengths': 'Content-Length: 2\r\nContent-Length: 3', '/length-and-chunked': 'Content-Length: 5\r\nTransfer-Encoding: chunked' }[target.pathname]
      if (framing !== undefined) {
        req.resume()
        req.socket.end(`HTTP/1.1 200 OK\r\n${framing}\r\n\r\n3\r\nabc\r\n0\r\n\r\n`)
        return
      }
      if (target.pathname === '/continue') {
        req.resume()
        res.writeContinue()
        res.end('ok\n')
        return
      }
      if (target.pathname === '/hang') {
        req.pause()
        return
      }
      req.resume()
      if (target.pathname === '/upload') {
        req.on('end', () => res.end('stored\n'))
        return
      }
      setTimeout(() => res.end('ok\n'), Number(target.searchParams.get('delay') ?? 0))
    })
    this.port = port
    this.url = url
    return this
  }
}

/** Counts before and after: `status` with `reason` went up by one and no other series moved. */
async function countedOnce (t: Test, sidecar: Sidecar, status: number, reason: string, act: () => Promise<void>): Promise<void> {
  const labels = { status: String(status), reason }
  const total = await metricValue(sidecar.adminUrl, METRIC)
  const before = await metricValue(sidecar.adminUrl, METRIC, labels)
  await act()
  t.equal(await metricValue(sidecar.adminUrl, METRIC, labels), before + 1, `counted once as ${METRIC}{status="${status}",reason="${reason}"}`)
  t.equal(await metricValue(sidecar.adminUrl, METRIC), total + 1, 'and under no other status or reason')
}

/** A short plain-text body that names neither the upstream host nor its port. */
function shortPlainText (t: Test, contentType: string | undefined, body: string, upstreamPort: number): void {
  t.match(contentType, /^text\/plain/, 'plain text')
  t.ok(body.length > 0 && body.length <= 64, `a short body (${JSON.stringify(body)})`)
  t.notOk(body.includes('127.0.0.1') || body.includes('localhost'), 'naming no upstream host')
  t.notOk(body.includes(String(upstreamPort)), 'nor its port')
}

const headerIn = (res: RawResponse, name: string): string | undefined => res.rawHeaders.find(([n]) => n.toLowerCase() === name)?.[1]

t.test('502 when the upstream refuses connections', async (t) => {
  const port = await freePort()
  const sidecar = await start(t, {}, { upstreamUrl: `http://127.0.0.1:${port}` })
  let res: RawResponse | undefined
  await countedOnce(t, sidecar, 502, 'upstream-unavailable', async () => { res = await rawRequest(`${sidecar.url}/page`) })
  t.equal(res?.status, 502, 'the client gets 502')
  shortPlainText(t, headerIn(res as RawResponse, 'content-type'), res?.body ?? '', port)
})

t.test('502 (upstream-bad-response) when the app\'s response cannot be relayed', async (t) => {
  const app = await new App().start(t)
  const sidecar = await start(t, {}, { upstreamUrl: app.url })
  for (const path of ['/huge-headers', '/continue', '/two-lengths', '/length-and-chunked']) {
    let res: RawResponse | undefined
    await countedOnce(t, sidecar, 502, 'upstream-bad-response', async () => { res = await rawRequest(`${sidecar.url}${path}`) })
    t.equal(res?.status, 502, `${path}: the client gets 502`)
    shortPlainText(t, headerIn(res as RawResponse, 'content-type'), res?.body ?? '', app.port)
  }
})

t.test('504 when the app answers later than upstream.timeoutMs', async (t) => {
  const app = await new App().start(t)
  const sidecar = await start(t, { upstream: { url: app.url, timeoutMs: 300 } }, { upstreamUrl: app.url })
  let res: RawResponse | undefined
  await countedOnce(t, sidecar, 504, 'upstream-timeout', async () => { res = await rawRequest(`${sidecar.url}/slow?delay=3000`) })
  t.equal(res?.status, 504, 'the client gets 504')
  shortPlainText(t, headerIn(res as RawResponse, 'content-type'), res?.body ?? '', app.port)
})

t.test('504 for a POST whose app neither reads the body nor answers (the hop\'s body watch)', async (t) => {
  const app = await new App().start(t)
  const sidecar = await start(t, { upstream: { url: app.url, timeoutMs: 300 } }, { upstreamUrl: app.url })
  const body = 'x'.repeat(64 * 1024)
  const conn = await RawConnection.open(sidecar.url)
  t.teardown(() => conn.destroy())
  let elapsed = 0
  await countedOnce(t, sidecar, 504, 'upstream-timeout', async () => {
    const started = performance.now()
    await conn.write(`POST /hang HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
    await conn.until(complete, 5000, 'the sidecar\'s answer')
    elapsed = performance.now() - started
  })
  t.equal(statusOf(conn.received), 504, 'the client gets 504')
  t.ok(elapsed >= 250 && elapsed < 2000, `answered once upstream.timeoutMs ran out (${Math.round(elapsed)} ms)`)
  shortPlainText(t, headerOf(conn.received, 'content-type'), bodyOf(conn.received), app.port)
  t.same(app.requests, ['POST /hang'], 'the request did reach the app')
})

t.test('504 for a large POST the app stops taking, while the client is still sending', async (t) => {
  const app = await new App().start(t)
  const sidecar = await start(t, { upstream: { url: app.url, timeoutMs: 300 } }, { upstreamUrl: app.url })
  // Larger than the sockets and streams between client and app can hold (about 8 MiB here).
  const size = 32 * MiB
  const body = new PatternStream(size)
  let res: IncomingMessage | undefined
  let text = ''
  await countedOnce(t, sidecar, 504, 'upstream-timeout', async () => {
    const req = request(`${sidecar.url}/hang`, { method: 'POST', agent: false, headers: { 'content-type': 'application/octet-stream', 'content-length': size } })
    t.teardown(() => req.destroy())
    req.on('error', () => {})
    body.pipe(req)
    res = await within(new Promise<IncomingMessage>((resolve, reject) => {
      req.once('response', resolve)
      req.once('error', reject)
    }), 5000, 'the sidecar\'s answer')
    text = Buffer.concat(await within(res.toArray(), 5000, 'the answer\'s body') as Buffer[]).toString('utf8')
  })
  t.equal(res?.statusCode, 504, 'the client gets 504')
  t.ok(body.bytesSent < size, `answered before the client could send it all (${body.bytesSent} of ${size} bytes)`)
  shortPlainText(t, res?.headers['content-type'], text, app.port)
})

const REFUSED: Array<{ name: string, request: string, unseen: string }> = [
  {
    name: '400 for a request with two Host lines; nothing reaches the app',
    request: 'GET /account HTTP/1.1\r\nHost: shop.example\r\nHost: admin.internal\r\n\r\n',
    unseen: 'the app saw nothing'
  },
  {
    name: '400 for a smuggling attempt (Content-Length and Transfer-Encoding); nothing reaches the app',
    request: 'POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: shop.example\r\n\r\n',
    unseen: 'the app saw nothing, neither the POST nor the smuggled GET'
  }
]
for (const refused of REFUSED) {
  t.test(refused.name, async (t) => {
    const app = await new App().start(t)
    const sidecar = await start(t, {}, { upstreamUrl: app.url })
    const conn = await RawConnection.open(sidecar.url)
    t.teardown(() => conn.destroy())
    await countedOnce(t, sidecar, 400, 'bad-request', async () => {
      await conn.write(refused.request)
      await conn.until(complete, 5000, 'the sidecar\'s answer')
    })
    t.equal(statusOf(conn.received), 400, 'the client gets 400')
    t.equal(headerOf(conn.received, 'connection'), 'close', 'connection: close')
    shortPlainText(t, headerOf(conn.received, 'content-type'), bodyOf(conn.received), app.port)
    await conn.untilClosed(2000)
    t.same(app.requests, [], refused.unseen)
  })
}

t.test('431 for request headers over Node\'s 16 KiB limit; nothing reaches the app', async (t) => {
  const app = await new App().start(t)
  const sidecar = await start(t, {}, { upstreamUrl: app.url })
  const conn = await RawConnection.open(sidecar.url)
  t.teardown(() => conn.destroy())
  await countedOnce(t, sidecar, 431, 'headers-too-large', async () => {
    await conn.write(`GET /page HTTP/1.1\r\nHost: shop.example\r\nX-Big: ${'b'.repeat(20 * 1024)}\r\n\r\n`)
    await conn.until(complete, 5000, 'the sidecar\'s answer')
  })
  t.equal(statusOf(conn.received), 431, 'the client gets 431')
  shortPlainText(t, headerOf(conn.received, 'content-type'), bodyOf(conn.received), app.port)
  t.same(app.requests, [], 'the app saw nothing')
})

t.test('503 for one more request on a keep-alive connection while draining', async (t) => {
  const app = await new App().start(t)
  const sidecar = await start(t, {}, { upstreamUrl: app.url })
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const get = async (path: string): Promise<{ res: IncomingMessage, text: string, localPort: number | undefined }> => await new Promise((resolve, reject) => {
    const req = request(`${sidecar.url}${path}`, { agent }, (res) => {
      const localPort = res.socket.localPort
      res.toArray().then((chunks) => resolve({ res, text: Buffer.concat(chunks as Buffer[]).toString('utf8'), localPort }), reject)
    })
    req.once('error', reject)
    req.end()
  })

  let first: Awaited<ReturnType<typeof get>> | undefined
  let second: Awaited<ReturnType<typeof get>> | undefined
  let closed: Promise<void> | undefined
  await countedOnce(t, sidecar, 503, 'draining', async () => {
    // A request in flight keeps its connection open through the close; the next one on that
    // connection arrives while the sidecar drains.
    const inFlight = get('/slow?delay=300')
    await until(() => app.requests.length === 1, 2000, 'the first request at the app')
    closed = sidecar.proxy.close()
    await until(() => !sidecar.proxy.server.listening, 2000, 'the listener to stop accepting')
    const next = get('/next')
    first = await inFlight
    second = await next
  })
  t.equal(first?.res.statusCode, 200, 'the request in flight finishes with the app\'s answer')
  t.ok(first?.localPort !== undefined && second?.localPort === first.localPort, 'the next request went over the same keep-alive connection')
  t.equal(second?.res.statusCode, 503, 'and was answered 503 by the sidecar')
  t.equal(second?.res.headers.connection, 'close', 'with connection: close')
  shortPlainText(t, second?.res.headers['content-type'], second?.text ?? '', app.port)
  t.same(app.requests, ['GET /slow'], 'it never reached the app')
  await closed
})

t.test('408 for a request body that stops arriving (listen.bodyIdleTimeoutMs)', async (t) => {
  const app = await new App().start(t)
  const sidecar = await start(t, { listen: { bodyIdleTimeoutMs: 300 } }, { upstreamUrl: app.url })
  const conn = await RawConnection.open(sidecar.url)
  t.teardown(() => conn.destroy())
  await countedOnce(t, sidecar, 408, 'client-timeout', async () => {
    await conn.write('POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789')
    await conn.until(complete, 5000, 'the sidecar\'s answer')
  })
  t.equal(statusOf(conn.received), 408, 'the client gets 408')
  shortPlainText(t, headerOf(conn.received, 'content-type'), bodyOf(conn.received), app.port)
})

t.test('the app\'s own error statuses pass through and are not counted', async (t) => {
  const app = await new App().start(t)
  const sidecar = await start(t, {}, { upstreamUrl: app.url })
  const total = await metricValue(sidecar.adminUrl, METRIC)
  for (const status of [502, 404, 500, 503, 504, 408, 400]) {
    const res = await rawRequest(`${sidecar.url}/status/${status}`)
    t.equal(res.status, status, `the app's ${status} reaches the client`)
    t.same(JSON.parse(res.body), { from: 'the app', status }, 'with the app\'s own body')
  }
  t.equal(await metricValue(sidecar.adminUrl, METRIC), total, `${METRIC} unchanged`)
})
