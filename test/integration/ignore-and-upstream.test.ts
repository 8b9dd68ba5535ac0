import t, { type Test } from 'tap'
import { b64, prefixedAtApp } from '../helpers/upstream.js'
import { LogCapture, startStack } from '../helpers/sidecar.js'
import { Browser, keyOf, q, rawRequest } from '../helpers/client.js'
import { freePort } from '../../harness/index.js'
import type { Sidecar } from '../../src/sidecar.js'

// session.ignore, upstream failures (SPEC "Header protocol with the app", "Operations") and
// what the logs may never hold (SPEC "Logs").

const { m, app, sidecar: start } = await startStack(t)
const sidecarFor = async (t: Test, overrides: Record<string, Record<string, unknown>> = {}, upstreamUrl = app.url, logs?: LogCapture): Promise<Sidecar> => await start(t, overrides, { upstreamUrl, logs })

t.test('a path matching the default session.ignore passes straight through with no session work', async (t) => {
  const sidecar = await sidecarFor(t)
  const browser = new Browser()
  await browser.get(sidecar.url, `/login?set=${q({ user: 'ada' })}`)
  const sid = browser.sid as string

  const asset = await browser.get(sidecar.url, '/static/app.js', { 'X-Session': b64({ admin: true }), 'X-Session-Id': keyOf(sid) })
  t.equal(asset.status, 200)
  t.same(prefixedAtApp(app), {}, 'no X-Session headers at the app, despite a valid cookie, and the client\'s are stripped')
  t.same(browser.lastSetCookie, [])

  const update = await browser.get(sidecar.url, `/static/app.js?set=${q({ user: 'eve' })}`)
  t.equal(update.status, 200)
  t.equal(update.headers.get('x-session-set'), null, 'the app\'s X-Session-Set is still stripped from the response')
  t.same(browser.lastSetCookie, [], 'and not applied: no cookie')
  await browser.get(sidecar.url, '/img/logo.png?destroy=1')
  t.equal(browser.sid, sid, 'a Destroy there is not applied either')

  const page = await browser.get(sidecar.url, '/data.json')
  t.same(page.body.session, { user: 'ada' }, 'the session is intact, and .json is not an ignored extension')
  t.equal(browser.sid, sid, 'same version')
  await sidecar.store.flush(2000)
  t.equal(await m.copy(keyOf(sid)), `1 ${b64({ user: 'ada' })}`)
})

t.test('TRACE gets no session work: an app echoing it would hand the session data to the client', async (t) => {
  const sidecar = await sidecarFor(t)
  const browser = new Browser()
  await browser.get(sidecar.url, `/login?set=${q({ user: 'ada' })}`)
  const res = await rawRequest(`${sidecar.url}/echo`, [['Cookie', `sid=${browser.sid as string}`]], 'TRACE')
  t.equal(res.status, 200)
  t.same(prefixedAtApp(app), {}, 'no X-Session headers at the app')
  t.equal(app.last?.method, 'TRACE')
})

t.test('session.ignore is configurable, and an empty one disables it', async (t) => {
  const custom = await sidecarFor(t, { session: { ignore: '^/assets/', cookie: { secure: false } } })
  const browser = new Browser()
  await browser.get(custom.url, `/login?set=${q({ user: 'ada' })}`)
  await browser.get(custom.url, '/assets/page')
  t.same(prefixedAtApp(app), {}, '/assets/ is ignored')
  t.same((await browser.get(custom.url, '/app.js')).body.session, { user: 'ada' }, '.js is not ignored any more')

  const none = await sidecarFor(t, { session: { ignore: '', cookie: { secure: false } } })
  const other = new Browser()
  await other.get(none.url, `/login.css?set=${q({ user: 'bob' })}`)
  t.same((await other.get(none.url, '/style.css')).body.session, { user: 'bob' }, 'nothing is ignored')
})

t.test('upstream down: 502 with a short body that names no address', async (t) => {
  const port = await freePort()
  const sidecar = await sidecarFor(t, {}, `http://127.0.0.1:${port}`)
  for (const path of ['/', '/login?set=%7B%7D', '/static/app.js']) {
    const res = await rawRequest(sidecar.url + path)
    t.equal(res.status, 502, `${path}: 502`)
    t.ok(res.body.length > 0 && res.body.length <= 64, `${path}: a short body (${JSON.stringify(res.body)})`)
    t.notOk(res.body.includes('127.0.0.1'), 'no upstream host')
    t.notOk(res.body.includes(String(port)), 'no upstream port')
    t.same(res.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie'), [])
  }
})

t.test('upstream slower than upstream.timeoutMs: 504 once the timeout runs out', async (t) => {
  const sidecar = await sidecarFor(t, { upstream: { url: app.url, timeoutMs: 300 } })
  const started = Date.now()
  const res = await rawRequest(`${sidecar.url}/slow?delay=2000`)
  const elapsed = Date.now() - started
  t.equal(res.status, 504)
  t.ok(res.body.length > 0 && res.body.length <= 64, `a short body (${JSON.stringify(res.body)})`)
  t.notOk(res.body.includes('127.0.0.1') || res.body.includes(String(app.port)), 'naming no address')
  t.ok(elapsed >= 250 && elapsed < 1500, `answered after the timeout, not the app (${elapsed} ms)`)
  const fast = await rawRequest(`${sidecar.url}/fast?delay=50`)
  t.equal(fast.status, 200, 'a response within the timeout flows')
})

t.test('logs never hold a cookie, a session key, session data or its values', async (t) => {
  const logs = new LogCapture()
  const sidecar = await sidecarFor(t, { log: { level: 'trace' } }, app.url, logs)
  const secretData = { user: 'ada', token: 'tok-7f3a9c-very-secret' }
  const refusedText = '{"password":"pw-refused-9d2e1b"'
  const refused = Buffer.from(refusedText).toString('base64url')
  const browser = new Browser()
  const cookies: string[] = []

  await browser.get(sidecar.url, `/login?set=${q(secretData)}`)
  cookies.push(browser.sid as string)
  t.same((await browser.get(sidecar.url, '/profile')).body.session, secretData, 'read')
  await browser.get(sidecar.url, `/profile?rawSet=${refused}`)
  await browser.get(sidecar.url, `/profile?rawSet=${b64(['array-secret-31c7'])}`)
  await browser.get(sidecar.url, `/profile?merge=${q({ note: 'merged-secret-5a0f' })}`)
  cookies.push(browser.sid as string)
  await browser.get(sidecar.url, '/profile?pad=X-Pad:200000')
  await browser.get(sidecar.url, '/login?regenerate=1')
  cookies.push(browser.sid as string)
  await browser.get(sidecar.url, '/logout?destroy=1')
  t.equal(browser.sid, undefined, 'destroyed')
  const forged = `${cookies[0] as string}x`
  await rawRequest(`${sidecar.url}/`, [['Cookie', `sid=${forged}`]])
  await sidecar.store.flush(2000)

  const text = logs.text
  const entries = logs.entries
  t.ok(entries.some((e) => e.code === 'SIDECAR_ERR_SESSION_UPDATE_REFUSED'), 'the refused update was logged (so the logs are not empty)')
  t.ok(entries.some((e) => Number(e.level) >= 40 && String(e.code).startsWith('SIDECAR_ERR_UPSTREAM')), 'the over-limit response was logged')
  const secrets: Array<[string, string]> = [
    ...cookies.map((c, i): [string, string] => [`cookie #${i}`, c]),
    ...cookies.map((c, i): [string, string] => [`MAC of cookie #${i}`, c.slice(c.lastIndexOf('~') + 1)]),
    ...cookies.map((c, i): [string, string] => [`key of cookie #${i}`, keyOf(c)]),
    ['forged cookie', forged],
    ['X-Session data', b64(secretData)],
    ['session JSON', JSON.stringify(secretData)],
    ['a session value', secretData.token],
    ['refused base64', refused],
    ['refused text', 'pw-refused-9d2e1b'],
    ['refused array value', 'array-secret-31c7'],
    ['merged value', 'merged-secret-5a0f']
  ]
  for (const [what, value] of secrets) t.notOk(text.includes(value), `no ${what} in the logs`)
})
