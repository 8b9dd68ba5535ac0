import { createServer, type IncomingMessage, type Server } from 'node:http'
import t, { type Test } from 'tap'
import { RoundRobinBalancer, type Backend } from '../../../demo/balancer.js'
import { rawRequest } from '../../helpers/client.js'

// The demo's round-robin load balancer in front of fake sidecars: each has a main port that
// echoes what it received and an admin port with /readyz.

interface Fake extends Backend {
  ready: boolean
  seen: IncomingMessage[]
  close: () => Promise<void>
  reopen: () => Promise<void>
}

async function listen (server: Server, port = 0): Promise<number> {
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  const address = server.address()
  return typeof address === 'object' && address !== null ? address.port : 0
}

async function stop (server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
}

/** A fake sidecar. `hang`: never answers. */
async function fake (t: Test, name: string, hang = false): Promise<Fake> {
  const f: Fake = { name, port: 0, adminPort: 0, ready: true, seen: [], close: async () => {}, reopen: async () => {} }
  const handler = (req: IncomingMessage, res: import('node:http').ServerResponse): void => {
    f.seen.push(req)
    if (hang) return
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      res.setHeader('set-cookie', ['a=1', 'b=2'])
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ name, method: req.method, url: req.url, body, headers: req.headers }))
    })
  }
  let main = createServer(handler)
  const admin = createServer((req, res) => {
    res.statusCode = req.url === '/readyz' && f.ready ? 200 : 503
    res.end()
  })
  const mutable = f as { port: number, adminPort: number }
  mutable.port = await listen(main)
  mutable.adminPort = await listen(admin)
  f.close = async () => { await stop(main) }
  f.reopen = async () => {
    main = createServer(handler)
    await listen(main, f.port)
  }
  t.teardown(async () => {
    await stop(main).catch(() => {})
    await stop(admin)
  })
  return f
}

async function balancer (t: Test, backends: Backend[], timeoutMs?: number): Promise<RoundRobinBalancer> {
  const lb = new RoundRobinBalancer(backends, timeoutMs === undefined ? {} : { timeoutMs })
  await lb.listen(0)
  t.teardown(() => lb.close())
  return lb
}

async function get (url: string, init: RequestInit = {}): Promise<{ status: number, backend: string | null, body: any }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) })
  const text = await res.text()
  let body: any = text
  try { body = JSON.parse(text) } catch {}
  return { status: res.status, backend: res.headers.get('x-demo-backend'), body }
}

t.test('round-robin, headers passed through, X-Forwarded-For added, hop-by-hop headers dropped', async (t) => {
  const a = await fake(t, 'a')
  const b = await fake(t, 'b')
  const lb = await balancer(t, [a, b])
  const names: Array<string | null> = []
  for (let i = 0; i < 4; i++) names.push((await get(`${lb.url}/x?i=${i}`)).backend)
  t.same(names, ['a', 'b', 'a', 'b'])
  t.equal(lb.peek(), 'a', 'peek: the backend the next request goes to')
  t.equal(lb.peek(), 'a', 'without taking its turn')
  t.equal((await get(`${lb.url}/`)).backend, 'a')
  t.equal(lb.peek(), 'b')
  const raw = await rawRequest(`${lb.url}/path?q=1`, [['Cookie', 'sid=1'], ['X-Forwarded-For', '10.0.0.1'], ['Keep-Alive', 'timeout=5'], ['Proxy-Connection', 'keep-alive']])
  const seen = JSON.parse(raw.body) as { url: string, headers: Record<string, string> }
  t.equal(seen.url, '/path?q=1')
  t.equal(seen.headers.cookie, 'sid=1')
  t.equal(seen.headers['x-forwarded-for'], '10.0.0.1, 127.0.0.1', 'the peer appended')
  t.equal(seen.headers['keep-alive'], undefined, 'hop-by-hop headers dropped')
  t.equal(seen.headers['proxy-connection'], undefined)
  t.same(raw.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v), ['a=1', 'b=2'], 'several Set-Cookie headers kept')
  const post = await get(`${lb.url}/form`, { method: 'POST', body: 'hello=world' })
  t.same([post.body.method, post.body.body], ['POST', 'hello=world'], 'a request body is piped through')
})

t.test('a sidecar that refuses connections: requests without a body go to the next one; it rejoins when ready', async (t) => {
  const a = await fake(t, 'a')
  const b = await fake(t, 'b')
  const lb = await balancer(t, [a, b])
  t.ok(lb.healthy('a') && lb.healthy('b'), 'both checked ready at start')
  await a.close()
  const res = await get(`${lb.url}/`)
  t.equal(res.status, 200)
  t.equal(res.backend, 'b', 'redispatched to b')
  t.notOk(lb.healthy('a'), 'a is out of the rotation')
  t.equal(lb.peek(), 'b', 'peek skips a sidecar out of the rotation')
  t.same([(await get(`${lb.url}/`)).backend, (await get(`${lb.url}/`)).backend], ['b', 'b'], 'only b while a is out')
  await a.reopen()
  await lb.check()
  t.ok(lb.healthy('a'), 'a is back after its /readyz answered')
  const both = new Set([(await get(`${lb.url}/`)).backend, (await get(`${lb.url}/`)).backend])
  t.same([...both].sort(), ['a', 'b'])
  a.ready = false
  await lb.check()
  t.notOk(lb.healthy('a'), 'a draining sidecar (/readyz 503) leaves the rotation')
})

t.test('a request with a body is not sent twice: 502', async (t) => {
  const a = await fake(t, 'a')
  const b = await fake(t, 'b')
  const lb = await balancer(t, [a, b])
  await a.close()
  const res = await get(`${lb.url}/form`, { method: 'POST', body: 'x=1' })
  t.equal(res.status, 502)
  t.equal(b.seen.length, 0, 'not redispatched')
})

t.test('every sidecar down: 502; no sidecar at all: 503', async (t) => {
  const a = await fake(t, 'a')
  const b = await fake(t, 'b')
  const lb = await balancer(t, [a, b])
  await a.close()
  await b.close()
  const res = await get(`${lb.url}/`)
  t.equal(res.status, 502)
  t.equal(res.body, 'the sidecar failed\n')
  const empty = await balancer(t, [])
  t.equal((await get(`${empty.url}/`)).status, 503)
})

t.test('a sidecar that does not answer in time: 504', async (t) => {
  const slow = await fake(t, 'slow', true)
  const lb = await balancer(t, [slow], 200)
  const res = await get(`${lb.url}/`)
  t.equal(res.status, 504)
  t.equal(slow.seen.length, 1)
})

t.test('listen: a taken port falls back to a free one unless told not to', async (t) => {
  const taken = createServer()
  const port = await listen(taken)
  t.teardown(() => stop(taken))
  const lb = new RoundRobinBalancer([])
  t.teardown(() => lb.close())
  const got = await lb.listen(port)
  t.not(got, port)
  t.ok(got > 0)
  const strict = new RoundRobinBalancer([])
  await t.rejects(strict.listen(port, false), { code: 'EADDRINUSE' })
  await strict.close()
})
