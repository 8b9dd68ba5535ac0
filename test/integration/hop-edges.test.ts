import t from 'tap'
import { createServer, type Server, type Socket } from 'node:net'
import { metricValue } from '../helpers/metrics.js'
import { RawConnection } from '../helpers/raw-socket.js'
import { startStack } from '../helpers/sidecar.js'

// Answers an app may send that HTTP allows and undici or the proxy plugin handle badly, and
// request targets that are not origin form. The app here is a raw TCP server so that its
// answers are exactly the bytes written below; it records each request head it receives.

const ANSWERS: Record<string, string> = {
  // A 304 keeps the Content-Length of the representation it stands for (RFC 9110 8.6).
  '/304': 'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 11\r\n\r\n',
  '/204': 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n',
  '/hints': 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
  '/trailers': 'HTTP/1.1 200 OK\r\nTrailer: X-Session-Set, X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Session-Set: eyJ1IjoiYm9iIn0\r\nX-Sum: 1\r\n\r\n',
  '/continue': 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
  // Trailer declared on responses that cannot carry trailers to the client.
  '/trailer-length': 'HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nContent-Length: 2\r\n\r\nok',
  '/trailer-204': 'HTTP/1.1 204 No Content\r\nTrailer: X-Sum\r\n\r\n',
  '/trailer-304': 'HTTP/1.1 304 Not Modified\r\nTrailer: X-Sum\r\n\r\n',
  '/trailer-head': 'HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n',
  '/hints-session': 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nX-Session-Id: leak\r\nX_Session: leak2\r\nX-Session-Set: eyJhIjoxfQ\r\nKeep-Alive: timeout=5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
  '/hints-bad-link': 'HTTP/1.1 103 Early Hints\r\nLink: not a link\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'
}
const heads: string[] = []
// Paths whose first request arriving on a connection that served one before is met by the app
// closing that connection without an answer: an idle keep-alive timeout racing the request.
const closeOnce = new Set(['/close-once-get', '/close-once-post'])
const closed: string[] = []
const app: Server = createServer((socket: Socket) => {
  let head = ''
  let served = 0
  socket.on('error', () => {})
  socket.on('data', (chunk) => {
    head += chunk.toString('latin1')
    const end = head.indexOf('\r\n\r\n')
    if (end < 0) return
    const request = head.slice(0, end)
    head = head.slice(end + 4)
    heads.push(request)
    const target = request.split(' ')[1] ?? '/'
    if (served++ > 0 && closeOnce.delete(target)) {
      closed.push(target)
      socket.destroy()
      return
    }
    socket.write(ANSWERS[target.split('?')[0] as string] ?? 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
  })
})
await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
t.teardown(() => app.close())
const address = app.address()
const appUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`

const stack = await startStack(t)
const sidecar = await stack.sidecar(t, {}, { upstreamUrl: appUrl })

/** Sends a raw request head and resolves with everything received once `done` holds. */
async function exchange (head: string, done: (text: string) => boolean): Promise<string> {
  const connection = await RawConnection.open(sidecar.url)
  try {
    await connection.write(`${head}\r\n\r\n`)
    await connection.until(done, 5000, 'the answer')
    return connection.received
  } finally {
    connection.destroy()
  }
}
const complete = (text: string): boolean => /\r\n\r\n(ok|Bad Request\n|Bad Gateway\n)?$/.test(text) || text.endsWith('\r\n0\r\n\r\n') || /x-sum: 1\r\n\r\n$/i.test(text)
const generated = async (status: number): Promise<number> => await metricValue(sidecar.adminUrl, 'sidecar_generated_responses_total', { status: String(status) })

t.test('a 304 or 204 that carries a Content-Length reaches the client as the app sent it (undici alone fails it)', async (t) => {
  for (const [path, status] of [['/304', '304 Not Modified'], ['/204', '204 No Content']]) {
    const text = await exchange(`GET ${path as string} HTTP/1.1\r\nHost: a`, (s) => s.includes('\r\n\r\n'))
    t.match(text, new RegExp(`^HTTP/1.1 ${status as string}\r\n`), `${path as string}: the app's status`)
    t.notMatch(text, /UND_ERR|statusCode/, 'no internal error leaks')
  }
  const conditional = await exchange('GET /304 HTTP/1.1\r\nHost: a', (s) => s.includes('\r\n\r\n'))
  t.match(conditional, /\r\netag: "v1"\r\n/i, 'with its headers')
})

t.test('103 Early Hints and 102 Processing reach the client before the final answer', async (t) => {
  const text = await exchange('GET /hints HTTP/1.1\r\nHost: a', complete)
  t.match(text, /^HTTP\/1.1 103 Early Hints\r\nLink: <\/a.css>; rel=preload\r\n\r\nHTTP\/1.1 102 Processing\r\n\r\nHTTP\/1.1 200 OK\r\n/)
})

t.test('response trailers pass, except the app\'s X-Session* (never to the client, not even as a trailer)', async (t) => {
  const text = await exchange('GET /trailers HTTP/1.1\r\nHost: a', (s) => s.endsWith('\r\n\r\n') && s.includes('\r\n0\r\n'))
  const trailerPart = text.slice(text.indexOf('\r\n0\r\n') + 5)
  t.match(trailerPart, /^x-sum: 1\r\n\r\n$/i, 'X-Sum passes, X-Session-Set does not')
})

/** The sidecar still answers: a request on a new connection gets the app's ok. */
const alive = async (): Promise<string> => await exchange('GET / HTTP/1.1\r\nHost: a', complete)

t.test('a Trailer header on a response that is not chunked to the client is dropped; the sidecar lives on (Node throws from res.end otherwise)', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['GET /trailer-length HTTP/1.1', /^HTTP\/1.1 200 OK\r\n/],
    ['GET /trailer-204 HTTP/1.1', /^HTTP\/1.1 204 No Content\r\n/],
    ['GET /trailer-304 HTTP/1.1', /^HTTP\/1.1 304 Not Modified\r\n/],
    ['HEAD /trailer-head HTTP/1.1', /^HTTP\/1.1 200 OK\r\n/],
    ['GET /trailers HTTP/1.0', /^HTTP\/1.1 200 OK\r\n/]
  ]
  for (const [line, status] of cases) {
    const text = await exchange(`${line}\r\nHost: a`, (s) => s.includes('\r\n\r\n') && (!line.startsWith('GET /trailer-length') && !line.endsWith('1.0') ? true : /\r\n\r\nok$/.test(s)))
    t.match(text, status, `${line}: the app's answer`)
    t.notMatch(text.slice(0, text.indexOf('\r\n\r\n')), /\r\ntrailer:/i, `${line}: without a Trailer header`)
    t.match(await alive(), /^HTTP\/1.1 200 OK\r\n/, `${line}: and the sidecar still answers`)
  }
})

t.test('the Trailer header names no session header: those trailers are removed', async (t) => {
  const text = await exchange('GET /trailers HTTP/1.1\r\nHost: a', (s) => s.endsWith('\r\n\r\n') && s.includes('\r\n0\r\n'))
  t.match(text, /\r\ntrailer: X-Sum\r\n/i)
})

t.test('an app\'s 103 Early Hints reach the client without its session and hop-by-hop headers', async (t) => {
  const text = await exchange('GET /hints-session HTTP/1.1\r\nHost: a', complete)
  const hints = text.slice(0, text.indexOf('\r\n\r\n'))
  t.match(hints, /^HTTP\/1.1 103 Early Hints\r\nLink: <\/a.css>; rel=preload$/, 'the Link only')
  t.match(text, /HTTP\/1.1 200 OK\r\n[\s\S]*ok$/)
})

t.test('an HTTP/1.0 client gets no 1xx (RFC 9110 15.2), only the final answer', async (t) => {
  const text = await exchange('GET /hints HTTP/1.0\r\nHost: a', (s) => /\r\n\r\nok$/.test(s))
  t.match(text, /^HTTP\/1.1 200 OK\r\n/)
})

t.test('a 103 whose Link Node cannot relay is dropped; the final answer arrives', async (t) => {
  const text = await exchange('GET /hints-bad-link HTTP/1.1\r\nHost: a', complete)
  t.match(text, /^HTTP\/1.1 200 OK\r\n[\s\S]*ok$/)
  t.match(await alive(), /^HTTP\/1.1 200 OK\r\n/)
})

t.test('an idempotent request the app\'s closing keep-alive connection drops is sent again on another; a POST is not (the app may have acted on it)', async (t) => {
  await alive() // a connection to the app that has served a request, idle for the next one
  const get = await exchange('GET /close-once-get HTTP/1.1\r\nHost: a', complete)
  t.same(closed, ['/close-once-get'], 'the app closed the connection the GET first went out on')
  t.match(get, /^HTTP\/1.1 200 OK\r\n[\s\S]*ok$/, 'the client gets the app\'s answer, not a 502')
  await alive()
  const before = await generated(502)
  const post = await exchange('POST /close-once-post HTTP/1.1\r\nHost: a\r\nContent-Length: 0', complete)
  t.same(closed, ['/close-once-get', '/close-once-post'])
  t.match(post, /^HTTP\/1.1 502 Bad Gateway\r\n/, 'a POST is never replayed: 502')
  t.equal(await generated(502), before + 1)
})

t.test('a request Transfer-Encoding other than chunked is a counted 501, and nothing reaches the app (the coding would be lost)', async (t) => {
  for (const te of ['Transfer-Encoding: gzip, chunked', 'Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked']) {
    const before = await generated(501)
    const seen = heads.length
    const text = await exchange(`POST /upload HTTP/1.1\r\nHost: a\r\n${te}\r\n\r\n3\r\nabc\r\n0`, (s) => s.endsWith('Not Implemented\n'))
    t.match(text, /^HTTP\/1.1 501 Not Implemented\r\n/, te)
    t.equal(heads.length, seen, 'the app saw nothing')
    t.equal(await generated(501), before + 1)
  }
  const chunked = await exchange('POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0', complete)
  t.match(chunked, /^HTTP\/1.1 200 OK\r\n/, 'chunked alone, in any case, is the body\'s framing: forwarded')
})

t.test('an unsolicited 100 Continue from the app is a counted 502 (undici refuses it; documented)', async (t) => {
  const before = await generated(502)
  const text = await exchange('GET /continue HTTP/1.1\r\nHost: a', (s) => s.endsWith('Bad Gateway\n'))
  t.match(text, /^HTTP\/1.1 502 Bad Gateway\r\n/)
  t.equal(await generated(502), before + 1)
})

t.test('an absolute-form target: the app gets origin form and the target\'s host as Host (RFC 9112 3.2.2)', async (t) => {
  heads.length = 0
  await exchange('GET http://shop.example:8443/cart?x=1 HTTP/1.1\r\nHost: other.example', complete)
  t.match(heads[0], /^GET \/cart\?x=1 HTTP\/1.1\r\n/, 'origin form')
  t.match(heads[0], /\r\nhost: shop.example:8443\r\n/i, 'Host from the target')
  t.match(heads[0], /\r\nX-Forwarded-Host: shop.example:8443(\r\n|$)/i, 'and as X-Forwarded-Host')
})

t.test('a target that is neither origin form nor a valid absolute URL is a counted 400, and nothing reaches the app', async (t) => {
  heads.length = 0
  const before = await generated(400)
  for (const target of ['http://x:99999/z', 'ftp://files.example/a']) {
    const text = await exchange(`GET ${target} HTTP/1.1\r\nHost: a`, (s) => s.endsWith('Bad Request\n'))
    t.match(text, /^HTTP\/1.1 400 Bad Request\r\n/, target)
  }
  t.equal(await generated(400), before + 2)
  t.same(heads, [], 'the app saw nothing')
})

t.test('OPTIONS * reaches the app as OPTIONS / (undici cannot send the asterisk form; documented)', async (t) => {
  heads.length = 0
  const text = await exchange('OPTIONS * HTTP/1.1\r\nHost: a', complete)
  t.match(text, /^HTTP\/1.1 200 OK\r\n/)
  t.match(heads[0], /^OPTIONS \/ HTTP\/1.1\r\n/)
})
