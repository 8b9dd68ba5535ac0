import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { request, type IncomingMessage } from 'node:http'
import { setTimeout as pause } from 'node:timers/promises'
import { pipeline } from 'node:stream/promises'
import { startStack } from '../helpers/sidecar.js'
import { metricValue } from '../helpers/metrics.js'
import { until } from '../../harness/index.js'
import { SilentServer } from '../helpers/tcp.js'
import { Browser, q } from '../helpers/client.js'
import { MiB, PatternStream } from '../helpers/large-body.js'
import { bodyOf, complete, headerOf, RawConnection, serveApp, statusOf, within } from '../helpers/raw-socket.js'
import type { Sidecar } from '../../src/sidecar.js'

// SPEC "Transparency": header, idle-body and keep-alive timeouts are configurable
// (listen.headersTimeoutMs, listen.bodyIdleTimeoutMs, listen.keepAliveTimeoutMs). A client
// that stalls is answered 408 by the sidecar (counted as its own answer) and cut off; an app
// that is slow to take a body is not the client's fault.

const HEADERS_MS = 300
const BODY_IDLE_MS = 300
const KEEP_ALIVE_MS = 500

const { app: testApp, sidecar: start } = await startStack(t)

const generated408 = async (sidecar: Sidecar): Promise<number> => await metricValue(sidecar.adminUrl, 'sidecar_generated_responses_total', { status: '408' })

/** What an app request went through, from its headers to 'end' or 'aborted'/'close'. */
interface Received {
  readonly url: string
  readonly events: string[]
  bytes: number
  readonly hash: ReturnType<typeof createHash>
  /** Settles on the request's 'close' (after 'end' or 'aborted'). */
  readonly closed: Promise<void>
}

/**
 * An app of our own (node:http) that records its requests' events. It reads bodies and
 * answers `{bytes, sha256}` once a body has ended; `?pauseMs=N` leaves the body unread for N
 * ms first (req.pause()), like an app busy elsewhere.
 */
class RecordingApp {
  readonly requests: Received[] = []
  url = ''
  /** Run when a paused request is resumed, just before the app starts reading it. */
  onResume: (() => void) | undefined = undefined

  async start (t: Test): Promise<this> {
    this.url = (await serveApp(t, (req, res) => {
      const received = this.#record(req)
      const pauseMs = Number(new URL(req.url ?? '/', 'http://app').searchParams.get('pauseMs') ?? 0)
      req.on('end', () => {
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ bytes: received.bytes, sha256: received.hash.digest('hex') }))
      })
      if (pauseMs <= 0) return
      req.pause()
      setTimeout(() => {
        this.onResume?.()
        req.resume()
      }, pauseMs)
    })).url
    return this
  }

  /** The request the app received after `seen` earlier ones, once it arrives (bounded). */
  async arrival (seen: number, ms = 2000): Promise<Received> {
    await until(() => this.requests.length > seen, ms, 'the request to reach the app')
    return this.requests[seen] as Received
  }

  #record (req: IncomingMessage): Received {
    const events: string[] = []
    const hash = createHash('sha256')
    const received = {
      url: req.url ?? '/',
      events,
      bytes: 0,
      hash,
      closed: new Promise<void>((resolve) => req.once('close', resolve))
    }
    req.on('data', (chunk: Buffer) => {
      received.bytes += chunk.length
      hash.update(chunk)
    })
    for (const event of ['end', 'aborted', 'error', 'close']) req.on(event, () => events.push(event))
    this.requests.push(received)
    return received
  }
}

t.test('listen.headersTimeoutMs: a request head that stops half-way gets 408 and the connection is closed', async (t) => {
  const sidecar = await start(t, { listen: { headersTimeoutMs: HEADERS_MS } })
  const before = await generated408(sidecar)
  const seenBefore = testApp.seen.length

  const conn = await RawConnection.open(sidecar.url)
  t.teardown(() => conn.destroy())
  await conn.write('GET /partial HTTP/1.1\r\nHost: shop.example\r\nX-Slow: ')
  const sentAt = performance.now()
  // Node checks header timeouts every quarter of the timeout: cut within 300 to ~375 ms.
  await conn.untilClosed(HEADERS_MS * 10)
  const elapsed = (conn.closedAt as number) - sentAt

  t.equal(statusOf(conn.received), 408, '408 Request Timeout')
  t.equal(headerOf(conn.received, 'connection'), 'close', 'announced as the connection\'s last answer')
  t.match(headerOf(conn.received, 'content-type'), /^text\/plain/, 'plain text')
  t.equal(bodyOf(conn.received), 'Request Timeout\n', 'a short body')
  t.ok(elapsed >= HEADERS_MS * 0.8 && elapsed < HEADERS_MS * 5, `closed about headersTimeoutMs after the head began (${Math.round(elapsed)} ms)`)
  t.equal(testApp.seen.length, seenBefore, 'nothing reached the app')
  t.equal(await generated408(sidecar), before + 1, 'counted as the sidecar\'s own 408')
})

t.test('listen.bodyIdleTimeoutMs: a body that stops arriving gets 408 + connection: close, and the app\'s request is aborted', async (t) => {
  const app = await new RecordingApp().start(t)
  const sidecar = await start(t, { listen: { bodyIdleTimeoutMs: BODY_IDLE_MS } }, { upstreamUrl: app.url })
  const before = await generated408(sidecar)

  const conn = await RawConnection.open(sidecar.url)
  t.teardown(() => conn.destroy())
  await conn.write('POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n0123456789')
  const sentAt = performance.now()
  const atApp = await app.arrival(0)
  await conn.until(complete, BODY_IDLE_MS * 10, 'the sidecar\'s answer')
  const answeredAt = performance.now()
  await conn.untilClosed(2000)

  t.equal(statusOf(conn.received), 408, '408 Request Timeout')
  t.equal(headerOf(conn.received, 'connection'), 'close', 'connection: close')
  t.equal(bodyOf(conn.received), 'Request Timeout\n', 'a short plain-text body')
  const elapsed = answeredAt - sentAt
  t.ok(elapsed >= BODY_IDLE_MS * 0.8 && elapsed < BODY_IDLE_MS * 5, `answered about bodyIdleTimeoutMs after the last byte (${Math.round(elapsed)} ms)`)
  t.ok(conn.closed, 'and the sidecar closed the connection')

  // The 408 must not leave the app's request (and an upstream connection) waiting for the
  // rest of a body that will never come.
  const closedAtApp = await within(atApp.closed, 2000, 'the app\'s request to close').then(() => true, () => false)
  t.ok(closedAtApp, 'the app\'s request was closed')
  t.ok(atApp.events.includes('aborted') || atApp.events.includes('error'), `the app's request was aborted (${atApp.events.join(', ') || 'no event'})`)
  t.notOk(atApp.events.includes('end'), 'it never ended as if complete')
  t.ok(atApp.bytes <= 10, `the app got no more than the 10 bytes sent (${atApp.bytes})`)
  t.equal(await generated408(sidecar), before + 1, 'counted as the sidecar\'s own 408')
})

t.test('a body that stops while its request still waits on memcached (hop not started) gets 408 all the same', async (t) => {
  // The session's node accepts and never answers, and memcached.timeoutMs is long: the request
  // sits in the session lookup with its first body bytes buffered, unread by any hop.
  const hung = await new SilentServer().start()
  t.teardown(() => hung.close())
  const app = await new RecordingApp().start(t)
  // A session whose cookie names the hung node (the write there fails; the cookie is issued).
  const writer = await start(t, { memcached: { nodes: [hung.address], timeoutMs: 200 } })
  const browser = new Browser()
  await browser.get(writer.url, `/?set=${q({ a: 1 })}`)
  const cookie = browser.sid as string
  t.ok(cookie, 'a session cookie naming the hung node')
  const sidecar = await start(t, { listen: { bodyIdleTimeoutMs: BODY_IDLE_MS }, memcached: { nodes: [hung.address], timeoutMs: 5000 } }, { upstreamUrl: app.url })
  const conn = await RawConnection.open(sidecar.url)
  t.teardown(() => conn.destroy())
  const sentAt = performance.now()
  await conn.write(`POST /upload HTTP/1.1\r\nHost: shop.example\r\nCookie: sid=${cookie}\r\nContent-Length: 100\r\n\r\n01234`)
  await conn.until(complete, 4000, 'the sidecar\'s answer, long before memcached.timeoutMs')
  t.equal(statusOf(conn.received), 408, '408 Request Timeout')
  t.ok(performance.now() - sentAt < 4000, `answered in ${Math.round(performance.now() - sentAt)} ms, not after the 5 s memcached budget`)
})

t.test('the body timeout is idle, not total: a body that trickles with shorter pauses completes intact', async (t) => {
  const app = await new RecordingApp().start(t)
  // Wider than the other cases: pauses of a third of it must stay shorter than it even on a
  // loaded machine (the fault-injection test may run beside this one).
  const idleMs = 1200
  const sidecar = await start(t, { listen: { bodyIdleTimeoutMs: idleMs } }, { upstreamUrl: app.url })
  const before = await generated408(sidecar)
  const pieces = Array.from({ length: 6 }, (_, i) => `piece-${i}:${'x'.repeat(90)}|`)
  const body = pieces.join('')

  const conn = await RawConnection.open(sidecar.url)
  t.teardown(() => conn.destroy())
  const started = performance.now()
  await conn.write(`POST /trickle HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n`)
  for (const [i, piece] of pieces.entries()) {
    // The client's own pace, which is what is under test: 5 pauses of a quarter of the timeout.
    if (i > 0) await pause(idleMs / 4)
    await conn.write(piece)
  }
  await conn.until(complete, 5000, 'the app\'s answer')
  const total = performance.now() - started

  t.equal(statusOf(conn.received), 200, 'the app\'s 200')
  t.same(JSON.parse(bodyOf(conn.received)), { bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') }, 'the app got the body intact')
  t.ok(total > idleMs, `although the whole body took longer than the timeout (${Math.round(total)} ms)`)
  t.same(app.requests[0]?.events, ['end', 'close'], 'the app\'s request ended normally')
  t.notOk(conn.closed, 'the connection stays open')
  t.equal(await generated408(sidecar), before, 'no 408')
})

t.test('an app that does not read the body for longer than bodyIdleTimeoutMs is not the client\'s fault', async (t) => {
  const app = await new RecordingApp().start(t)
  const sidecar = await start(t, { listen: { bodyIdleTimeoutMs: BODY_IDLE_MS } }, { upstreamUrl: app.url })
  const before = await generated408(sidecar)
  // Larger than what the sockets and streams between client and app hold (about 8 MiB here).
  const size = 32 * MiB
  const pauseMs = BODY_IDLE_MS * 3

  const body = new PatternStream(size)
  // How far the client had got when the app started reading: less than all of it proves the
  // body was held back all the way to the client while the app paused.
  let sentWhenResumed = -1
  app.onResume = () => { sentWhenResumed = body.bytesSent }
  const req = request(`${sidecar.url}/upload?pauseMs=${pauseMs}`, { method: 'POST', agent: false, headers: { 'content-type': 'application/octet-stream', 'content-length': size } })
  t.teardown(() => req.destroy())
  const answered = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve)
    req.once('error', reject)
  })
  const [sent, res] = await within(Promise.all([pipeline(body, req), answered]), 15_000, 'the upload')
  t.equal(sent, undefined, 'the client sent the whole body')
  const text = Buffer.concat(await res.toArray() as Buffer[]).toString('utf8')

  t.equal(res.statusCode, 200, 'the app\'s 200, no 408')
  t.same(JSON.parse(text), { bytes: size, sha256: body.sha256 }, 'the app got all 32 MiB intact')
  t.ok(sentWhenResumed >= 0 && sentWhenResumed < size, `the client was held back while the app paused (${sentWhenResumed} of ${size} bytes sent after ${pauseMs} ms)`)
  t.equal(await generated408(sidecar), before, 'nothing counted as a 408')
})

t.test('listen.keepAliveTimeoutMs: an idle keep-alive connection is closed by the sidecar after about that long', async (t) => {
  const sidecar = await start(t, { listen: { keepAliveTimeoutMs: KEEP_ALIVE_MS } })
  const conn = await RawConnection.open(sidecar.url)
  t.teardown(() => conn.destroy())
  const get = `GET /page HTTP/1.1\r\nHost: ${new URL(sidecar.url).host}\r\n\r\n`

  await conn.write(get)
  await conn.until(complete, 5000, 'the first answer')
  t.equal(statusOf(conn.received), 200, 'first request answered')
  t.not(headerOf(conn.received, 'connection'), 'close', 'and the connection kept alive')

  // Idle for well under the timeout: still open, and it serves another request.
  await pause(KEEP_ALIVE_MS * 0.3)
  t.notOk(conn.closed, 'still open after 30% of keepAliveTimeoutMs')
  conn.received = ''
  await conn.write(get)
  await conn.until(complete, 5000, 'the second answer')
  const idleFrom = performance.now()
  t.equal(statusOf(conn.received), 200, 'a request sent well before the timeout is served on the same connection')

  // Node closes an idle connection a fixed second after the timeout it advertises
  // (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER in Node 20; `server.keepAliveTimeoutBuffer` later).
  const buffer = (sidecar.proxy.server as { keepAliveTimeoutBuffer?: number }).keepAliveTimeoutBuffer ?? 1000
  await conn.untilClosed(KEEP_ALIVE_MS + buffer + 5000)
  const idle = (conn.closedAt as number) - idleFrom
  t.ok(idle >= KEEP_ALIVE_MS * 0.8 && idle < KEEP_ALIVE_MS + buffer + 1000, `closed by the sidecar after ${Math.round(idle)} ms idle (keepAliveTimeoutMs ${KEEP_ALIVE_MS}, Node's buffer ${buffer} ms)`)
})
