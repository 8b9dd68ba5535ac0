import t, { type Test } from 'tap'
import { b64, prefixedAtApp } from '../helpers/upstream.js'
import { LogCapture, startStack } from '../helpers/sidecar.js'
import { keyHash } from '../../src/session/key.js'
import { Browser, keyOf, PREFIXED, q, rawRequest, versionOf } from '../helpers/client.js'
import { metricValue } from '../helpers/metrics.js'
import type { Sidecar } from '../../src/sidecar.js'
import { serveApp } from '../helpers/raw-socket.js'

// The header protocol between sidecar and app (SPEC "Header protocol with the app").

const { m, app, sidecar: start } = await startStack(t)
const sidecarFor = async (t: Test, overrides: Record<string, Record<string, unknown>> = {}, logs?: LogCapture): Promise<Sidecar> => await start(t, overrides, logs === undefined ? {} : { logs })

/** A browser holding a fresh session with `data`, created by the app through the sidecar. */
async function withSession (sidecar: Sidecar, data: Record<string, unknown>): Promise<Browser> {
  const browser = new Browser()
  const res = await browser.get(sidecar.url, `/login?set=${q(data)}`)
  if (res.status !== 200 || browser.sid === undefined) throw new Error('could not create a session')
  return browser
}

const FORGED: Array<[string, string]> = [
  ['X-Session', b64({ user: 'mallory', admin: true })],
  ['X-Session-Id', 'AAAAAAAAAAAAAAAAAAAAAA'],
  ['X-Session-Set', b64({ admin: true })],
  ['x_session_id', 'AAAAAAAAAAAAAAAAAAAAAA'],
  ['X_SESSION', b64({ admin: true })],
  ['X-SESSION-anything', 'forged'],
  ['x-session_merge', b64({ admin: true })],
  ['X-Other', 'kept']
]

t.test('client-sent prefixed headers never reach the app when there is no session', async (t) => {
  const sidecar = await sidecarFor(t)
  const res = await rawRequest(`${sidecar.url}/page`, FORGED)
  t.equal(res.status, 200)
  t.same(prefixedAtApp(app), {}, 'no X-Session* header of any spelling reaches the app')
  t.equal(app.last?.sessionId, undefined)
  t.equal(app.last?.session, undefined)
  t.equal(app.last?.headers['x-other'], 'kept', 'unrelated headers pass through')
  t.same(res.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie'), [], 'a forged header creates no session')
})

t.test('with a session the app sees exactly the sidecar\'s X-Session and X-Session-Id, never the client\'s', async (t) => {
  const sidecar = await sidecarFor(t)
  const browser = await withSession(sidecar, { user: 'ada' })
  const res = await rawRequest(`${sidecar.url}/page`, [['Cookie', `sid=${browser.sid as string}`], ...FORGED])
  t.equal(res.status, 200)
  t.same(prefixedAtApp(app), { 'x-session': b64({ user: 'ada' }), 'x-session-id': keyOf(browser.sid) })
  t.same(app.last?.session, { user: 'ada' })
  t.equal(app.last?.headers['x-other'], 'kept')
})

t.test('the sidecar\'s cookie is removed from the Cookie header the app receives; other cookies stay', async (t) => {
  const sidecar = await sidecarFor(t)
  const browser = await withSession(sidecar, { user: 'ada' })
  const sid = browser.sid as string

  await rawRequest(`${sidecar.url}/`, [['Cookie', `theme=dark; sid=${sid}; sidx=1; mysid=2; lang=en`]])
  t.equal(app.last?.headers.cookie, 'theme=dark; sidx=1; mysid=2; lang=en', 'only the sid pair is taken out')
  t.equal(app.last?.sessionId, keyOf(sid))

  await rawRequest(`${sidecar.url}/`, [['Cookie', `sid=${sid}`]])
  t.equal(app.last?.headers.cookie, undefined, 'no Cookie header at all when only the sidecar cookie was sent')

  await rawRequest(`${sidecar.url}/`, [['Cookie', 'a=1; sid=not-a-valid-cookie']])
  t.equal(app.last?.headers.cookie, 'a=1', 'an invalid sidecar cookie is removed as well')
  t.equal(app.last?.sessionId, undefined)

  await rawRequest(`${sidecar.url}/`, [['Cookie', 'a=1; b=2']])
  t.equal(app.last?.headers.cookie, 'a=1; b=2', 'a Cookie header without the sidecar cookie is passed as sent')
})

t.test('prefixed headers in the app\'s response never reach the client', async (t) => {
  const sidecar = await sidecarFor(t)
  const leaks = ['X-Session-Debug:1', 'x_session_leak:1', 'X-SESSION-ID:AAAAAAAAAAAAAAAAAAAAAA', `X-Session:${b64({ a: 1 })}`, 'X-App:kept']
  const path = `/?${leaks.map((h) => `header=${q(h)}`).join('&')}`

  const anonymous = await rawRequest(sidecar.url + path)
  t.equal(anonymous.status, 200)
  t.same(anonymous.rawHeaders.filter(([n]) => PREFIXED.test(n)), [], 'without a session')
  t.same(anonymous.rawHeaders.filter(([n]) => n.toLowerCase() === 'x-app'), [['x-app', 'kept']], 'other app headers stay')

  const browser = await withSession(sidecar, { user: 'ada' })
  t.equal(browser.lastSetCookie.length, 1, 'only the session cookie is set')
  const withSid = await rawRequest(sidecar.url + path, [['Cookie', `sid=${browser.sid as string}`]])
  t.same(withSid.rawHeaders.filter(([n]) => PREFIXED.test(n)), [], 'with a session')
  t.same(JSON.parse(withSid.body).session, { user: 'ada' }, 'the body flows')

  const created = await rawRequest(`${sidecar.url}/?set=${q({ user: 'bob' })}&${leaks.map((h) => `header=${q(h)}`).join('&')}`)
  t.same(created.rawHeaders.filter(([n]) => PREFIXED.test(n)), [], 'with a session update in the same response')
})

t.test('invalid session updates are refused: 200 stays 200, the body flows, the session is intact, the refusal is counted and logged once, naming the session by its hash', async (t) => {
  const logs = new LogCapture()
  const sidecar = await sidecarFor(t, { session: { maxBytes: 256 }, log: { level: 'info' } }, logs)
  const browser = await withSession(sidecar, { user: 'ada' })
  const sid = browser.sid as string
  const header = (name: string, value: string): string => `header=${q(`${name}:${value}`)}`
  const notJson = Buffer.from('{"user":').toString('base64url')
  const cases: Array<[string, string]> = [
    ['X-Session-Set with invalid base64', `rawSet=${q('@@@ not base64 @@@')}`],
    ['X-Session-Set with invalid JSON', `rawSet=${notJson}`],
    ['X-Session-Set with a JSON array', `rawSet=${b64(['user', 'eve'])}`],
    ['X-Session-Set with a JSON string', `rawSet=${b64('eve')}`],
    ['X-Session-Set with a JSON null', `rawSet=${b64(null)}`],
    ['X-Session-Set over session.maxBytes', `set=${q({ user: 'eve', blob: 'x'.repeat(300) })}`],
    ['X-Session-Merge with invalid base64', header('X-Session-Merge', '@@@ not base64 @@@')],
    ['X-Session-Merge with invalid JSON', header('X-Session-Merge', notJson)],
    ['X-Session-Merge with a JSON array', header('X-Session-Merge', b64(['user', 'eve']))],
    ['X-Session-Merge sent twice (two spellings)', `${header('X-Session-Merge', b64({ user: 'eve' }))}&${header('X_Session_Merge', b64({ role: 'admin' }))}`],
    ['X-Session-Merge with a JSON string', header('X-Session-Merge', b64('eve'))],
    ['X-Session-Merge making the data exceed session.maxBytes', `merge=${q({ blob: 'x'.repeat(300) })}`]
  ]
  for (const [name, query] of cases) {
    await t.test(name, async (t) => {
      const before = await metricValue(sidecar.adminUrl, 'sidecar_refused_updates_total')
      const logged = logs.lines.length
      const res = await browser.get(sidecar.url, `/update?${query}`)
      t.equal(res.status, 200, 'the response still flows with its status')
      t.same(res.body.session, { user: 'ada' }, 'the app\'s body reaches the client')
      t.same(browser.lastSetCookie, [], 'no cookie change')
      t.equal(browser.sid, sid)
      const next = await browser.get(sidecar.url, '/')
      t.same(next.body.session, { user: 'ada' }, 'the previous session is intact on the next request')
      t.equal(await metricValue(sidecar.adminUrl, 'sidecar_refused_updates_total'), before + 1, 'sidecar_refused_updates_total went up by one')
      const refusals = logs.entries.slice(logged).filter((e) => e.code === 'SIDECAR_ERR_SESSION_UPDATE_REFUSED')
      t.same(refusals.map((e) => [e.level, e.session]), [[50, keyHash(keyOf(sid))]], 'one error line, with the session\'s hash')
    })
  }
  t.equal(versionOf(browser.sid), 1, 'no refused update bumped the version')
  await sidecar.store.flush(2000)
  t.equal(await m.copy(keyOf(sid)), `1 ${b64({ user: 'ada' })}`, 'memcached still holds the first version')

  const anonymous = new Browser()
  const before = await metricValue(sidecar.adminUrl, 'sidecar_refused_updates_total')
  const res = await anonymous.get(sidecar.url, `/?rawSet=${b64([1, 2])}`)
  t.equal(res.status, 200)
  t.equal(anonymous.sid, undefined, 'a refused Set creates no session')
  t.equal(await metricValue(sidecar.adminUrl, 'sidecar_refused_updates_total'), before + 1)
})

t.test('numbers reach the app as it wrote them: a 64-bit id, 1.0, -0 and 1e400 are not turned into other numbers, through a Set and a Merge', async (t) => {
  const sidecar = await sidecarFor(t)
  const browser = new Browser()
  const raw = (text: string): string => Buffer.from(text).toString('base64url')
  await browser.get(sidecar.url, `/login?rawSet=${raw('{"user_id":1152921504606846977,"price":1.0}')}`)
  await browser.get(sidecar.url, '/')
  t.equal(Buffer.from(app.last?.headers['x-session'] as string, 'base64url').toString(), '{"user_id":1152921504606846977,"price":1.0}', 'after a Set')
  await browser.get(sidecar.url, `/cart?header=${q(`X-Session-Merge:${raw('{"big":12345678901234567890,"neg0":-0,"e":1e400}')}`)}`)
  await browser.get(sidecar.url, '/')
  t.equal(Buffer.from(app.last?.headers['x-session'] as string, 'base64url').toString(), '{"user_id":1152921504606846977,"price":1.0,"big":12345678901234567890,"neg0":-0,"e":1e400}', 'after a Merge')
  await sidecar.store.flush(2000)
  t.equal(await m.copy(keyOf(browser.sid)), `2 ${raw('{"user_id":1152921504606846977,"price":1.0,"big":12345678901234567890,"neg0":-0,"e":1e400}')}`, 'and so does memcached\'s copy')
})

t.test('a ~60 KB X-Session-Set is refused gracefully; response headers beyond the sidecar\'s limit give 502', async (t) => {
  const sidecar = await sidecarFor(t)
  const browser = await withSession(sidecar, { user: 'ada' })
  const sid = browser.sid as string

  const before = await metricValue(sidecar.adminUrl, 'sidecar_refused_updates_total')
  const big = await browser.get(sidecar.url, '/?bigSet=45000')
  t.equal(big.status, 200, 'a 60 KB session header is refused, not a failed response')
  t.same(big.body.session, { user: 'ada' })
  t.equal(big.headers.get('x-session-set'), null)
  t.equal(browser.sid, sid)
  t.equal(await metricValue(sidecar.adminUrl, 'sidecar_refused_updates_total'), before + 1)
  t.same((await browser.get(sidecar.url, '/')).body.session, { user: 'ada' })

  const huge = await browser.get(sidecar.url, '/?pad=X-Pad:200000')
  t.equal(huge.status, 502, '200 KB of response headers is beyond the limit')
  t.ok(String(huge.body).length < 100, 'with a short body')
  t.equal(browser.sid, sid)

  const after = await browser.get(sidecar.url, '/')
  t.equal(after.status, 200, 'the sidecar keeps serving')
  t.same(after.body.session, { user: 'ada' })
})

t.test('Destroy wins over Set in the same response', async (t) => {
  const sidecar = await sidecarFor(t)
  const browser = await withSession(sidecar, { user: 'ada' })
  const key = keyOf(browser.sid)

  const res = await browser.get(sidecar.url, `/?set=${q({ user: 'eve' })}&destroy=1`)
  t.equal(res.status, 200)
  t.equal(browser.sid, undefined, 'the cookie is cleared')
  const next = await browser.get(sidecar.url, '/')
  t.equal(next.body.sessionId, undefined, 'no session afterwards')
  await sidecar.store.flush(2000)
  t.match(await m.copy(key), /^\d+ ended$/, 'memcached holds a tombstone in its place')

  const anonymous = new Browser()
  await anonymous.get(sidecar.url, `/?set=${q({ user: 'eve' })}&destroy=1`)
  t.same(anonymous.lastSetCookie, [], 'without a session, Set+Destroy creates nothing')
  t.equal((await anonymous.get(sidecar.url, '/')).body.sessionId, undefined)
})

t.test('Set then Merge in one response: the patch applies to the new data, as one version', async (t) => {
  const sidecar = await sidecarFor(t)
  const browser = await withSession(sidecar, { user: 'ada', cart: [1] })
  const key = keyOf(browser.sid)

  await browser.get(sidecar.url, `/?set=${q({ user: 'bob', theme: 'dark' })}&merge=${q({ theme: null, lang: 'en' })}`)
  t.equal(keyOf(browser.sid), key, 'same key')
  t.equal(versionOf(browser.sid), 2, 'one stored change, one version')
  t.same((await browser.get(sidecar.url, '/')).body.session, { user: 'bob', lang: 'en' })
  await sidecar.store.flush(2000)
  t.equal(await m.copy(key), `2 ${b64({ user: 'bob', lang: 'en' })}`)

  const anonymous = new Browser()
  await anonymous.get(sidecar.url, `/?set=${q({ a: 1 })}&merge=${q({ b: 2 })}`)
  t.same((await anonymous.get(sidecar.url, '/')).body.session, { a: 1, b: 2 }, 'also when the Set creates the session')
})

t.test('Regenerate gives a new key with the same data; the old key no longer works anywhere', async (t) => {
  const sidecar = await sidecarFor(t)
  const browser = await withSession(sidecar, { user: 'ada' })
  const oldSid = browser.sid as string
  const oldKey = keyOf(oldSid)

  const res = await browser.get(sidecar.url, '/login?regenerate=1')
  t.equal(res.status, 200)
  const newSid = browser.sid as string
  const newKey = keyOf(newSid)
  t.match(newKey, /^[A-Za-z0-9_-]{22}$/, 'a 22-character key')
  t.not(newKey, oldKey, 'a different key')
  t.equal(versionOf(newSid), versionOf(oldSid), 'regeneration keeps the version')
  const next = await browser.get(sidecar.url, '/')
  t.same(next.body.session, { user: 'ada' }, 'same data')
  t.equal(next.body.sessionId, newKey)

  await sidecar.store.flush(2000)
  t.match(await m.copy(oldKey), /^\d+ ended$/, 'the old key holds a tombstone')
  t.equal(await m.copy(newKey), `1 ${b64({ user: 'ada' })}`, 'the new one holds the data')

  const replay = await rawRequest(`${sidecar.url}/`, [['Cookie', `sid=${oldSid}`]])
  t.equal(replay.status, 200)
  t.equal(JSON.parse(replay.body).sessionId, undefined, 'the old cookie gets no session on this node')
  const other = await sidecarFor(t)
  const elsewhere = await rawRequest(`${other.url}/`, [['Cookie', `sid=${oldSid}`]])
  t.equal(JSON.parse(elsewhere.body).sessionId, undefined, 'nor on another node')
  const fresh = await rawRequest(`${other.url}/`, [['Cookie', `sid=${newSid}`]])
  t.same(JSON.parse(fresh.body).session, { user: 'ada' }, 'the new cookie works on another node')

  await browser.get(sidecar.url, `/login?set=${q({ user: 'bob' })}&regenerate=1`)
  t.not(keyOf(browser.sid), newKey, 'Set with Regenerate: another new key')
  t.same((await browser.get(sidecar.url, '/')).body.session, { user: 'bob' }, 'carrying the data that was set')

  const anonymous = new Browser()
  await anonymous.get(sidecar.url, '/?regenerate=1')
  t.same(anonymous.lastSetCookie, [], 'Regenerate without a session creates none')
})

t.test('a Set or Merge with identical data does not bump the version', async (t) => {
  const sidecar = await sidecarFor(t)
  const browser = await withSession(sidecar, { user: 'ada' })
  const sid = browser.sid as string

  await browser.get(sidecar.url, `/?set=${q({ user: 'ada' })}`)
  t.same(browser.lastSetCookie, [], 'no new cookie')
  t.equal(browser.sid, sid)
  await browser.get(sidecar.url, `/?merge=${q({ user: 'ada' })}`)
  t.equal(browser.sid, sid, 'a no-op merge keeps it too')
  await sidecar.store.flush(2000)
  t.equal(await m.copy(keyOf(sid)), `1 ${b64({ user: 'ada' })}`, 'memcached still at version 1')

  await browser.get(sidecar.url, `/?set=${q({ user: 'bob' })}`)
  t.equal(versionOf(browser.sid), 2, 'a real change does bump it')
})

t.test('session headers the app sends as two lines: a flag twice is that flag (a logout is not lost), a Merge twice is refused as a duplicate', async (t) => {
  const { url } = await serveApp(t, (req, res) => {
    if (req.url === '/login') res.setHeader('X-Session-Set', b64({ user: 'ada' }))
    if (req.url === '/merge-twice') res.setHeader('X-Session-Merge', [b64({ role: 'admin' }), b64({ role: 'user' })])
    if (req.url === '/logout-twice') res.setHeader('X-Session-Destroy', ['1', '1'])
    res.end('ok')
  })
  const sidecar = await start(t, {}, { upstreamUrl: url })
  const browser = new Browser()
  await browser.get(sidecar.url, '/login')
  const sid = browser.sid as string
  const refused = await metricValue(sidecar.adminUrl, 'sidecar_refused_updates_total', { reason: 'duplicate' })
  await browser.get(sidecar.url, '/merge-twice')
  t.equal(browser.sid, sid, 'the duplicated Merge changed nothing')
  t.equal(await metricValue(sidecar.adminUrl, 'sidecar_refused_updates_total', { reason: 'duplicate' }), refused + 1, 'counted as a duplicate')
  await browser.get(sidecar.url, '/logout-twice')
  t.equal(browser.sid, undefined, 'the logout sent twice cleared the cookie')
  await sidecar.store.flush(2000)
  t.match(await m.copy(keyOf(sid)), /^\d+ ended$/, 'and the session ended')
})
