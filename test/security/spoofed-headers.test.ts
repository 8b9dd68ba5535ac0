import t from 'tap'
import { MemcachedProcess } from '../helpers/memcached.js'
import { TestApp, b64, type Seen } from '../helpers/upstream.js'
import { startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { Browser, keyOf, PREFIXED, q, rawRequest, type RawResponse } from '../helpers/client.js'
import { metricValue } from '../helpers/metrics.js'

// SPEC "Header protocol with the app": every client-sent header whose name starts with the
// prefix (case-insensitive, `_` read as `-`) is removed before the app sees the request; the
// app's session headers never reach the client; an update that is not valid base64url JSON of
// an object within session.maxBytes is refused, the previous session stays intact and the
// response still flows with its status.

const MAX_BYTES = 512
const DATA = { user: 'ada', role: 'user' }
const prefixedIn = (headers: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(headers).filter(([name]) => PREFIXED.test(name)))
const prefixedOut = (res: RawResponse): Array<[string, string]> => res.rawHeaders.filter(([n]) => PREFIXED.test(n))
const setCookies = (res: RawResponse): string[] => res.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v)

const m = await MemcachedProcess.start()
t.teardown(() => m.stop())
const app = await new TestApp().start()
t.teardown(() => app.close())
// Two sidecars on one memcached node: B reads what A stored.
const a = await startTestSidecar(testConfig(app.url, [m.address], { session: { maxBytes: MAX_BYTES } }))
t.teardown(() => a.close())
const b = await startTestSidecar(testConfig(app.url, [m.address], { session: { maxBytes: MAX_BYTES } }))
t.teardown(() => b.close())

let requestNo = 0
/** One raw request through a sidecar; returns the response and what the app saw of it. */
async function send (base: string, headers: Array<[string, string]>, query = ''): Promise<{ res: RawResponse, seen: Seen | undefined }> {
  const path = `/r${++requestNo}`
  const res = await rawRequest(`${base}${path}${query === '' ? '' : `?${query}`}`, headers)
  return { res, seen: app.seen.find((s) => s.url.startsWith(`${path}?`) || s.url === path) }
}

/** A fresh session with DATA created through A and stored in memcached; returns its cookie. */
async function newSession (): Promise<string> {
  const browser = new Browser()
  await browser.get(a.url, `/login?set=${q(DATA)}`)
  if (browser.sid === undefined) throw new Error('could not create a session')
  await a.store.flush(2000)
  return browser.sid
}

// Someone else's live session: its key is what a hijacker would put in X-Session-Id.
const victim = await newSession()
const victimKey = keyOf(victim)
const forgedData = b64({ user: 'mallory', role: 'admin' })

// PHP, WSGI and Rack read `.`, `_` and `-` alike (X.Session arrives as HTTP_X_SESSION).
const NAMES = ['X-Session', 'x-session', 'X-SESSION-ID', 'X_Session_Id', 'x-session-set', 'X-Session-Merge', 'X-Session-Destroy', 'X-Session-Regenerate', 'x-session-anything', 'X_SESSION', 'X.Session', 'X.Session.Id', 'x~session']
const valueFor = (name: string): string => {
  const n = name.toLowerCase().replace(/[^a-z0-9]/g, '-')
  if (n === 'x-session-id') return victimKey
  if (n === 'x-session-destroy' || n === 'x-session-regenerate') return '1'
  return forgedData
}

for (const name of NAMES) {
  t.test(`a client-sent "${name}" header never reaches the app, with or without a session`, async (t) => {
    const spoof: [string, string] = [name, valueFor(name)]

    const anonymous = await send(a.url, [spoof, ['X-Other', 'kept']])
    t.equal(anonymous.res.status, 200)
    t.ok(anonymous.seen, 'the app got the request')
    t.same(prefixedIn(anonymous.seen?.headers ?? {}), {}, 'without a session: no X-Session* header of any spelling at the app')
    t.equal(anonymous.seen?.headers['x-other'], 'kept', 'unrelated headers pass')
    t.same(setCookies(anonymous.res), [], 'and the spoofed header created no session')

    const sid = await newSession()
    for (const [node, base] of [['A (created it)', a.url], ['B (loads it from memcached)', b.url]] as const) {
      const withSession = await send(base, [['Cookie', `sid=${sid}`], spoof])
      t.equal(withSession.res.status, 200)
      t.same(prefixedIn(withSession.seen?.headers ?? {}), { 'x-session': b64(DATA), 'x-session-id': keyOf(sid) },
        `on ${node}: the app sees exactly the sidecar's X-Session and X-Session-Id`)
      t.same(withSession.seen?.session, DATA, `on ${node}: the real data`)
      t.same(setCookies(withSession.res), [], `on ${node}: no cookie change`)
      t.same(prefixedOut(withSession.res), [], `on ${node}: nothing prefixed comes back`)
    }
    const after = await send(a.url, [['Cookie', `sid=${sid}`]])
    t.same(after.seen?.session, DATA, 'the session is unchanged afterwards (a request-side X-Session-Set/Destroy does nothing)')
    t.same((await send(a.url, [['Cookie', `sid=${victim}`]])).seen?.session, DATA, 'the victim\'s session is untouched')
  })
}

t.test('all spellings at once, each sent twice, never reach the app', async (t) => {
  const sid = await newSession()
  const spoofs = NAMES.flatMap((n) => [[n, valueFor(n)], [n, 'second']] as Array<[string, string]>)
  const anonymous = await send(a.url, spoofs)
  t.same(prefixedIn(anonymous.seen?.headers ?? {}), {}, 'without a session')
  for (const base of [a.url, b.url]) {
    const { seen } = await send(base, [...spoofs.slice(0, 7), ['Cookie', `sid=${sid}`], ...spoofs.slice(7)])
    t.same(prefixedIn(seen?.headers ?? {}), { 'x-session': b64(DATA), 'x-session-id': keyOf(sid) }, 'with a session: only the sidecar\'s, not joined with the client\'s')
  }
})

const notJson = Buffer.from('{"user":').toString('base64url')
const tooBig = b64({ user: 'eve', blob: 'x'.repeat(MAX_BYTES) })
/** [what, header value] the app sends; each is refused, in X-Session-Set and in X-Session-Merge. */
const INVALID: Array<[string, string]> = [
  ['invalid base64', '@@@ not base64 @@@'],
  ['invalid base64 (bare padding)', '===='],
  ['invalid JSON', notJson],
  ['a JSON array', b64(['user', 'eve'])],
  ['a JSON string', b64('eve')],
  ['JSON null', b64(null)],
  ['a JSON number', b64(42)],
  ['JSON true', b64(true)],
  [`data over session.maxBytes (${MAX_BYTES})`, tooBig]
]
const header = (name: string, value: string): string => `header=${q(`${name}:${value}`)}`
const REFUSED: Array<[string, string]> = [
  ...INVALID.flatMap(([what, value]) => [
    [`X-Session-Set with ${what}`, header('X-Session-Set', value)],
    [`X-Session-Merge with ${what}`, header('X-Session-Merge', value)]
  ] as Array<[string, string]>),
  // A 501-byte patch (within the limit) whose result, 528 bytes, is not.
  ['X-Session-Merge whose result would exceed session.maxBytes', header('X-Session-Merge', b64({ blob: 'x'.repeat(MAX_BYTES - 22) }))],
  ['X-Session-Set with a valid 30 KB object', 'bigSet=30000'],
  ['X-Session-Set of 40 KB', 'pad=X-Session-Set:40000'],
  ['X-Session-Merge of 40 KB', 'pad=X-Session-Merge:40000'],
  ['x_session_set (other spelling) with invalid JSON', header('x_session_set', notJson)],
  ['X-SESSION-MERGE (other spelling) with a JSON array', header('X-SESSION-MERGE', b64([1]))],
  ['X-Session-Set and X-Session-Merge both invalid', `${header('X-Session-Set', b64([1]))}&${header('X-Session-Merge', '!!')}`]
]

for (const [what, query] of REFUSED) {
  t.test(`an app response with ${what} is refused: 200 stays 200, the session is intact on both sidecars, no X-Session header reaches the client`, async (t) => {
    const sid = await newSession()
    const before = await metricValue(a.adminUrl, 'sidecar_refused_updates_total')
    const { res, seen } = await send(a.url, [['Cookie', `sid=${sid}`]], query)
    t.equal(res.status, 200, 'the response keeps its status')
    t.same(JSON.parse(res.body).session, DATA, 'and its body')
    t.same(seen?.session, DATA, 'the app had the session')
    t.same(prefixedOut(res), [], 'no X-Session* header reaches the client')
    t.same(setCookies(res), [], 'the cookie is not changed')
    t.equal(await metricValue(a.adminUrl, 'sidecar_refused_updates_total'), before + 1, 'the refusal is counted once')

    await a.store.flush(2000)
    t.equal(await m.copy(keyOf(sid)), `1 ${b64(DATA)}`, 'memcached still holds version 1 with the previous data')
    const onA = await send(a.url, [['Cookie', `sid=${sid}`]])
    t.same(onA.seen?.session, DATA, 'A serves the previous session on the next request')
    const onB = await send(b.url, [['Cookie', `sid=${sid}`]])
    t.same(onB.seen?.session, DATA, 'so does B, which shares the memcached node')
    t.equal(onB.seen?.sessionId, keyOf(sid))
    t.same([...setCookies(onA.res), ...setCookies(onB.res)], [], 'and neither reissues the cookie')
  })
}

t.test('a refused X-Session-Set from an app without a session creates none', async (t) => {
  for (const [what, value] of INVALID) {
    const { res } = await send(a.url, [], header('X-Session-Set', value))
    t.equal(res.status, 200, `${what}: 200`)
    t.same(setCookies(res), [], `${what}: no session cookie`)
    t.same(prefixedOut(res), [], `${what}: nothing prefixed reaches the client`)
  }
})

t.test('forwarding headers in other spellings (X_Forwarded_For, X.Forwarded-Proto) never reach the app beside the real ones', async (t) => {
  const { seen } = await send(a.url, [['X_Forwarded_For', '8.8.8.8'], ['X.Forwarded-Proto', 'https'], ['x_forwarded_host', 'evil.example']])
  const forwarding = Object.keys(seen?.headers ?? {}).filter((n) => /^x[^a-z0-9]forwarded[^a-z0-9]/i.test(n)).sort()
  t.same(forwarding, ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto'], 'only the canonical names, once each')
})

t.test('a look-alike never overrides the forwarding header a trusted load balancer set', async (t) => {
  const { seen } = await send(a.url, [['X_Forwarded_Host', 'evil.example'], ['X.Forwarded-Proto', 'https'], ['X-Forwarded-Host', 'shop.example'], ['X-Forwarded-Proto', 'http']])
  t.equal(seen?.headers['x-forwarded-host'], 'shop.example', 'the balancer\'s X-Forwarded-Host')
  t.equal(seen?.headers['x-forwarded-proto'], 'http', 'and X-Forwarded-Proto')
})
