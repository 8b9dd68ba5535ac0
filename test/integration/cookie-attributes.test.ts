import { createHmac } from 'node:crypto'
import t, { type Test } from 'tap'
import { b64 } from '../helpers/upstream.js'
import { LogCapture, startStack } from '../helpers/sidecar.js'
import { Browser, keyOf, parseSetCookieLine, q, rawRequest } from '../helpers/client.js'
import type { Sidecar } from '../../src/sidecar.js'
import { CopySeal } from '../../src/session/sealed-copy.js'

// The session cookie's attributes, the app's own cookies (cookies.domain / cookies.names) and
// secret rotation (SPEC "The session cookie", "Upstream's own cookies").

const { m, sidecar: start } = await startStack(t)
const sidecarFor = async (t: Test, overrides: Record<string, Record<string, unknown>> = {}): Promise<Sidecar> => await start(t, overrides)

/** The Set-Cookie lines of a response for one cookie name, parsed. */
const cookiesNamed = (lines: string[], name: string): Array<ReturnType<typeof parseSetCookieLine>> =>
  lines.map(parseSetCookieLine).filter((c) => c.name === name)

t.test('the session cookie carries the defaults: Path=/, HttpOnly, SameSite=Lax, no Domain, no Max-Age (secure: false here)', async (t) => {
  const sidecar = await sidecarFor(t)
  const browser = new Browser()
  await browser.get(sidecar.url, `/?set=${q({ user: 'ada' })}`)
  const [sid, ...others] = cookiesNamed(browser.lastSetCookie, 'sid')
  t.same(others, [], 'one session cookie')
  t.equal(sid?.value, browser.sid)
  t.same(sid?.attributes, { path: '/', httponly: true, samesite: 'Lax' }, 'exactly these attributes: a browser-session cookie')

  await browser.get(sidecar.url, '/?destroy=1')
  const [cleared] = cookiesNamed(browser.lastSetCookie, 'sid')
  t.equal(cleared?.value, '', 'destroy clears the value')
  t.same(cleared?.attributes, { 'max-age': '0', path: '/', expires: 'Thu, 01 Jan 1970 00:00:00 GMT', httponly: true, samesite: 'Lax' },
    'and expires it with the same path, so browsers drop it')
})

t.test('secure defaults to true', async (t) => {
  const sidecar = await sidecarFor(t, { session: { cookie: {} } })
  const browser = new Browser()
  await browser.get(sidecar.url, `/?set=${q({ user: 'ada' })}`)
  const [sid] = cookiesNamed(browser.lastSetCookie, 'sid')
  t.same(sid?.attributes, { path: '/', httponly: true, secure: true, samesite: 'Lax' })
})

t.test('every session.cookie setting reaches the Set-Cookie: name, domain, path, secure, httpOnly, sameSite, maxAge', async (t) => {
  const sidecar = await sidecarFor(t, {
    session: {
      cookie: { name: 'appsess', domain: '.example.test', path: '/app', sameSite: 'strict', maxAge: 3600, secure: true, httpOnly: false }
    }
  })
  const browser = new Browser('appsess')
  await browser.get(sidecar.url, `/app/login?set=${q({ user: 'ada' })}`)
  t.same(cookiesNamed(browser.lastSetCookie, 'sid'), [], 'the default name is not used')
  const [sess] = cookiesNamed(browser.lastSetCookie, 'appsess')
  t.match(sess?.value, /^1~[A-Za-z0-9_-]{22}~127\.0\.0\.1:\d+~1~[A-Za-z0-9_-]{22}$/)
  t.same(sess?.attributes, { 'max-age': '3600', domain: '.example.test', path: '/app', secure: true, samesite: 'Strict' },
    'no HttpOnly, every other attribute as configured')

  const next = await browser.get(sidecar.url, '/app/profile')
  t.same(next.body.session, { user: 'ada' }, 'the renamed cookie is read back')
  t.notOk(String(next.body.headers.cookie ?? '').includes('appsess='), 'and removed from what the app sees')

  await browser.get(sidecar.url, '/app/logout?destroy=1')
  const [cleared] = cookiesNamed(browser.lastSetCookie, 'appsess')
  t.same(cleared?.attributes, { 'max-age': '0', domain: '.example.test', path: '/app', expires: 'Thu, 01 Jan 1970 00:00:00 GMT', secure: true, samesite: 'Strict' },
    'the clearing cookie names the same domain and path')
})

t.test('without cookies.domain the app\'s own Set-Cookie headers pass untouched, next to the session cookie', async (t) => {
  const sidecar = await sidecarFor(t)
  const own = ['theme=dark; Path=/; Max-Age=60', 'pref=1; Domain=app.example.test; Path=/x; HttpOnly']
  const res = await rawRequest(`${sidecar.url}/?${own.map((c) => `cookie=${q(c)}`).join('&')}&set=${q({ user: 'ada' })}`)
  const setCookies = res.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v)
  t.same(setCookies.filter((c) => !c.startsWith('sid=')), own, 'byte for byte')
  t.equal(setCookies.filter((c) => c.startsWith('sid=')).length, 1, 'plus the session cookie')
})

t.test('an app\'s Set-Cookie named as the session cookie is removed (once a minute logged): it would replace the session cookie and log the user out', async (t) => {
  const logs = new LogCapture()
  const sidecar = await start(t, { log: { level: 'warn' } }, { logs })
  const browser = new Browser()
  await browser.get(sidecar.url, `/login?set=${q({ user: 'ada' })}`)
  for (let i = 0; i < 2; i++) {
    await browser.get(sidecar.url, `/?cookie=${q('sid=fromapp; Path=/')}&cookie=${q('sidebar=open; Path=/')}`)
    t.same(browser.lastSetCookie, ['sidebar=open; Path=/'], 'the app\'s other cookies pass, a cookie whose name only begins alike included')
    t.same((await browser.get(sidecar.url, '/')).body.session, { user: 'ada' }, 'the user is still logged in')
  }
  const lines = logs.entries.filter((e) => e.code === 'SIDECAR_ERR_APP_SET_SESSION_COOKIE')
  t.equal(lines.length, 1, 'one warning for both responses')
  t.equal(lines[0]?.cookie, 'sid', 'naming the cookie, never its value')
  t.notMatch(JSON.stringify(logs.entries), /fromapp/, 'the app\'s value is not logged')
})

t.test('cookies.domain sets or replaces the Domain of all the app\'s cookies', async (t) => {
  const sidecar = await sidecarFor(t, { cookies: { domain: '.example.test' } })
  const res = await rawRequest(`${sidecar.url}/?cookie=${q('theme=dark; Path=/')}&cookie=${q('pref=1; Domain=app.example.test; Path=/; HttpOnly')}&set=${q({ user: 'ada' })}`)
  const setCookies = res.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => parseSetCookieLine(v))
  t.same(setCookies.filter((c) => c.name !== 'sid'), [
    { name: 'theme', value: 'dark', attributes: { domain: '.example.test', path: '/' } },
    { name: 'pref', value: '1', attributes: { domain: '.example.test', path: '/', httponly: true } }
  ])
  const [sid] = setCookies.filter((c) => c.name === 'sid')
  t.same(sid?.attributes, { path: '/', httponly: true, samesite: 'Lax' }, 'the session cookie follows session.cookie, not cookies.domain')
})

t.test('cookies.domain changes only the Domain: every other attribute of the app\'s cookie is kept', async (t) => {
  const sidecar = await sidecarFor(t, { cookies: { domain: '.example.test' } })
  const own = 'cart=a%20b; Path=/shop; Expires=Sun, 21 Oct 2035 07:28:00 GMT; Max-Age=60; Secure; HttpOnly; SameSite=None; Partitioned; Priority=High; Ext=1'
  const res = await rawRequest(`${sidecar.url}/?cookie=${q(own)}`)
  const [line] = res.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v)
  const parsed = parseSetCookieLine(line ?? '')
  t.same(parsed, {
    name: 'cart',
    value: 'a%20b',
    attributes: { domain: '.example.test', path: '/shop', expires: 'Sun, 21 Oct 2035 07:28:00 GMT', 'max-age': '60', secure: true, httponly: true, samesite: 'None', partitioned: true, priority: 'High', ext: '1' }
  }, `the value is kept verbatim and only Domain is added (got ${line ?? 'nothing'})`)
})

t.test('cookies.names restricts the Domain rewrite to the listed cookies', async (t) => {
  const sidecar = await sidecarFor(t, { cookies: { domain: '.example.test', names: ['theme'] } })
  const pref = 'pref=1; Domain=app.example.test; Path=/; HttpOnly'
  const res = await rawRequest(`${sidecar.url}/?cookie=${q('theme=dark; Path=/')}&cookie=${q(pref)}&cookie=${q('lang=en')}`)
  const setCookies = res.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v)
  t.equal(setCookies.length, 3)
  t.same(parseSetCookieLine(setCookies[0] as string), { name: 'theme', value: 'dark', attributes: { domain: '.example.test', path: '/' } }, 'a listed cookie gets the domain')
  t.equal(setCookies[1], pref, 'an unlisted cookie keeps its own domain, byte for byte')
  t.equal(setCookies[2], 'lang=en', 'an unlisted cookie without a domain stays without one')
})

t.test('a cookie signed with an older secret is accepted and reissued signed with the current one', async (t) => {
  const OLD = 'old-secret-0123456789abcdef'
  const NEW = 'new-secret-fedcba9876543210'
  const before = await sidecarFor(t, { session: { secrets: [OLD], cookie: { secure: false } } })
  const browser = new Browser()
  await browser.get(before.url, `/login?set=${q({ user: 'ada' })}`)
  const oldSid = browser.sid as string
  await before.store.flush(2000)
  t.equal(await m.copy(keyOf(oldSid), 'sess:', new CopySeal([OLD], true)), `1 ${b64({ user: 'ada' })}`)

  const rotated = await sidecarFor(t, { session: { secrets: [NEW, OLD], cookie: { secure: false } } })
  const res = await browser.get(rotated.url, '/profile')
  t.equal(res.status, 200)
  t.same(res.body.session, { user: 'ada' }, 'the old-secret cookie is accepted')
  const newSid = browser.sid as string
  t.not(newSid, oldSid, 'and reissued')
  const body = oldSid.slice(0, oldSid.lastIndexOf('~'))
  t.equal(newSid, `${body}~${createHmac('sha256', NEW).update(body).digest().subarray(0, 16).toString('base64url')}`,
    'same key, address and version; MAC by the current secret')

  await browser.get(rotated.url, '/profile')
  t.same(browser.lastSetCookie, [], 'a current-secret cookie is not reissued again')

  // The copy the old secret sealed was resealed under the new one when `rotated` read it.
  await rotated.store.flush(2000)
  t.equal(await m.copy(keyOf(oldSid), 'sess:', new CopySeal([NEW], true)), `1 ${b64({ user: 'ada' })}`, 'memcached\'s copy is resealed under the new secret, same version')
  const newOnly = await sidecarFor(t, { session: { secrets: [NEW], cookie: { secure: false } } })
  t.same(JSON.parse((await rawRequest(`${newOnly.url}/`, [['Cookie', `sid=${newSid}`]])).body).session, { user: 'ada' },
    'the reissued cookie verifies once the old secret is retired')
  t.equal(JSON.parse((await rawRequest(`${newOnly.url}/`, [['Cookie', `sid=${oldSid}`]])).body).sessionId, undefined,
    'while a cookie signed only by the retired secret is treated as absent')
})
