import t, { type Test } from 'tap'
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'
import { mergeDiff, sessionHeaders, sessionSidecar, type SessionData, type SidecarRequest } from '../../../src/clients/express.js'
import { mergePatch } from '../../../src/session/data.js'
import { closeServer, listenOnLoopback } from '../../../harness/index.js'
import { DIFFS, HEADER_CASES } from '../../helpers/session-diffs.js'

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
const unb64 = (value: string | undefined): unknown => value === undefined ? undefined : JSON.parse(Buffer.from(value, 'base64url').toString('utf8'))
const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T

t.test('mergeDiff: the minimal RFC 7396 patch, checked with the sidecar\'s own mergePatch', async (t) => {
  for (const [name, from, to, expected] of DIFFS) {
    const patch = mergeDiff(clone(from), clone(to))
    t.same(patch, expected, `${name}: the patch`)
    t.equal(JSON.stringify(patch), JSON.stringify(expected), `${name}: exactly those members, nothing more`)
    t.same(mergePatch(clone(from), patch), to, `${name}: applied, it gives the new data`)
  }
})

t.test('mergeDiff: no patch can set a member to null (a patch reads null as delete)', async (t) => {
  t.equal(mergeDiff({ a: 1 }, { a: null }), undefined, 'a member set to null')
  t.equal(mergeDiff({}, { a: null }), undefined, 'a member added as null')
  t.equal(mergeDiff({ a: { b: 1 } }, { a: { b: null } }), undefined, 'a nested member set to null')
  t.equal(mergeDiff({}, { a: { b: { c: null } } }), undefined, 'an added object holding a null')
  t.same(mergeDiff({}, { a: [null] }), { a: [null] }, 'null in an array is fine')
})

t.test('sessionHeaders: which headers for which change', async (t) => {
  const none = { destroy: false, regenerate: false, unavailable: false }
  const decoded = (h: Record<string, string>): Record<string, unknown> =>
    Object.fromEntries(Object.entries(h).map(([k, v]) => [k, k.endsWith('-set') || k.endsWith('-merge') ? unb64(v) : v]))
  for (const [name, from, to, flags, headers] of HEADER_CASES) {
    t.same(decoded(sessionHeaders(clone(from), clone(to), flags)), headers, name)
  }
  t.same(sessionHeaders({ a: 1 }, undefined, none), { 'x-session-destroy': '1' }, 'no data left (req.session = null): Destroy')
  t.same(decoded(sessionHeaders({}, { when: new Date(0), skip: undefined, f: () => 1 } as unknown as SessionData, none)), { 'x-session-merge': { when: '1970-01-01T00:00:00.000Z' } },
    'what JSON keeps: toJSON applied, undefined and functions dropped')
  t.same(decoded(sessionHeaders({}, [1] as unknown as SessionData, none)), { 'x-session-set': [1] }, 'not an object: sent as a Set, for the sidecar to refuse and log')
})

interface Exchange {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** A server running the middleware and then `handler`; resolves what the app answered. */
async function serve (t: Test, handler: (req: SidecarRequest, res: ServerResponse) => void, options?: { headerPrefix?: string }): Promise<(headers?: Record<string, string>) => Promise<Exchange>> {
  const middleware = sessionSidecar(options)
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    middleware(req, res, (err?: unknown) => {
      if (err !== undefined) {
        res.statusCode = 500
        res.end(`error: ${(err as Error).message}`)
        return
      }
      handler(req as SidecarRequest, res)
    })
  })
  const port = await listenOnLoopback(server)
  t.teardown(() => closeServer(server))
  return async (headers = {}) => await new Promise((resolve, reject) => {
    request(`http://127.0.0.1:${port}/`, { headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    }).on('error', reject).end()
  })
}

const sessionOf = (data: unknown): Record<string, string> => ({ 'x-session': b64(data), 'x-session-id': 'k'.repeat(22) })

t.test('middleware: req.session, req.sessionId, req.sessionUnavailable', async (t) => {
  const send = await serve(t, (req, res) => {
    res.end(JSON.stringify({ session: req.session, keys: Object.keys(req.session ?? {}), id: req.sessionId ?? null, unavailable: req.sessionUnavailable, plain: Object.getPrototypeOf(req.session) === Object.prototype }))
  })
  t.same(JSON.parse((await send()).body), { session: {}, keys: [], id: null, unavailable: false, plain: true }, 'no session: an empty plain object')
  t.same(JSON.parse((await send(sessionOf({ user: 'al', n: [1] }))).body), { session: { user: 'al', n: [1] }, keys: ['user', 'n'], id: 'k'.repeat(22), unavailable: false, plain: true },
    'a session: its data, and the methods are not enumerable (not in the JSON, not in the keys)')
  t.same(JSON.parse((await send({ 'x-session-unavailable': '1' })).body), { session: {}, keys: [], id: null, unavailable: true, plain: true }, 'X-Session-Unavailable: 1')
  const bad = await send({ 'x-session': b64([1]) })
  t.same({ status: bad.status, body: bad.body }, { status: 500, body: 'error: X-Session is not a JSON object' }, 'a non-object X-Session goes to next(err)')
  const garbled = await send({ 'x-session': 'not base64 json' })
  t.equal(garbled.status, 500, 'undecodable X-Session goes to next(err)')
})

t.test('middleware: the change goes out with the headers, whatever writes them', async (t) => {
  const send = await serve(t, (req, res) => {
    const s = req.session as Record<string, any>
    s.visits = (s.visits ?? 0) + 1
    s.prefs.theme = 'dark'
    delete s.old
    res.setHeader('content-type', 'text/plain')
    res.write('streamed ') // headers go out here: later changes are too late
    s.late = true
    res.end('body')
  })
  const r = await send(sessionOf({ visits: 2, prefs: { theme: 'light', lang: 'en' }, old: 1 }))
  t.equal(r.body, 'streamed body')
  t.same(unb64(r.headers['x-session-merge'] as string), { visits: 3, prefs: { theme: 'dark' }, old: null }, 'the minimal merge, computed when the headers were written')
  t.equal(r.headers['x-session-set'], undefined, 'no Set')

  const unchanged = await (await serve(t, (req, res) => { res.end(String(req.session?.visits)) }))(sessionOf({ visits: 2 }))
  t.same(Object.keys(unchanged.headers).filter((h) => h.startsWith('x-session')), [], 'nothing changed: no session header at all')

  const explicit = await (await serve(t, (req, res) => {
    (req.session as Record<string, unknown>).a = 1
    res.writeHead(201, { 'content-type': 'text/plain' })
    res.end()
  }))()
  t.same({ status: explicit.status, merge: unb64(explicit.headers['x-session-merge'] as string), type: explicit.headers['content-type'] }, { status: 201, merge: { a: 1 }, type: 'text/plain' }, 'an explicit writeHead with headers')

  const replaced = await (await serve(t, (req, res) => {
    req.session = { fresh: 1 } as unknown as SidecarRequest['session']
    res.end()
  }))(sessionOf({ old: 1 }))
  t.same(unb64(replaced.headers['x-session-merge'] as string), { old: null, fresh: 1 }, 'req.session replaced by another object: diffed all the same')
})

t.test('middleware: destroy() and regenerate(), with and without callbacks', async (t) => {
  const calls: string[] = []
  const send = await serve(t, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    const s = req.session as Record<string, unknown> & { destroy: (cb?: () => void) => void, regenerate: (cb?: () => void) => void }
    const action = req.headers['x-action']
    if (action === 'logout') s.destroy()
    if (action === 'logout-cb') { s.destroy(() => { calls.push('destroyed'); res.end() }); return }
    if (action === 'null') req.session = null
    if (action === 'login') { s.user = 'al'; s.regenerate() }
    if (action === 'login-cb') { s.regenerate(() => { calls.push('regenerated'); s.user = 'bo'; res.end() }); return }
    res.end(url.pathname)
  })
  const h = (r: Exchange): Record<string, unknown> => Object.fromEntries(Object.entries(r.headers).filter(([k]) => k.startsWith('x-session')).map(([k, v]) => [k, k.endsWith('-merge') || k.endsWith('-set') ? unb64(v as string) : v]))
  t.same(h(await send({ ...sessionOf({ user: 'al' }), 'x-action': 'logout' })), { 'x-session-destroy': '1' }, 'destroy(): X-Session-Destroy: 1')
  t.same(h(await send({ ...sessionOf({ user: 'al' }), 'x-action': 'logout-cb' })), { 'x-session-destroy': '1' }, 'destroy(callback)')
  t.same(h(await send({ ...sessionOf({ user: 'al' }), 'x-action': 'null' })), { 'x-session-destroy': '1' }, 'req.session = null ends it too')
  t.same(h(await send({ ...sessionOf({ cart: [1] }), 'x-action': 'login' })), { 'x-session-merge': { user: 'al' }, 'x-session-regenerate': '1' }, 'login: the merge and Regenerate')
  t.same(h(await send({ ...sessionOf({ cart: [1] }), 'x-action': 'login-cb' })), { 'x-session-merge': { user: 'bo' }, 'x-session-regenerate': '1' }, 'regenerate(callback): changes made in the callback count')
  t.same(h(await send({ 'x-session-unavailable': '1', 'x-action': 'login' })), { 'x-session-set': { user: 'al' }, 'x-session-regenerate': '1' }, 'login while unavailable: Set and Regenerate')
  t.same(calls, ['destroyed', 'regenerated'], 'the callbacks ran')
})

t.test('middleware: another header prefix (session.headerPrefix)', async (t) => {
  const send = await serve(t, (req, res) => {
    (req.session as Record<string, unknown>).n = 2
    res.end(String(req.sessionId))
  }, { headerPrefix: 'X-App-Sess' })
  const r = await send({ 'x-app-sess': b64({ n: 1 }), 'x-app-sess-id': 'abc', 'x-session': b64({ n: 5 }) })
  t.equal(r.body, 'abc', 'the id from X-App-Sess-Id')
  t.same(unb64(r.headers['x-app-sess-merge'] as string), { n: 2 }, 'the merge as X-App-Sess-Merge, diffed against X-App-Sess')
})
