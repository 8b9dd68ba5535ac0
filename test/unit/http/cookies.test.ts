import t from 'tap'
import { buildConfig, type CookieConfig } from '../../../src/config/index.js'
import { AppCookieDomain, OwnCookieGuard, SessionCookieHeaders } from '../../../src/http/cookies.js'

const VALUE = '1~Zm9vYmFyYmF6cXV4MTIzNA~10.0.0.5:11211~1~k5AB7x64qSnJYiDtDE_6TQ'

/** The session cookie settings as the sidecar would load them. */
function cookieConfig (cookie: Record<string, unknown> = {}): CookieConfig {
  return buildConfig({ session: { secrets: ['x'.repeat(16)], cookie }, memcached: { nodes: ['127.0.0.1:11211'] } }, {}).session.cookie
}

/** The attributes of a Set-Cookie line, name (lower case) to value ('' for flags). */
function attributes (line: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const part of line.split(';').slice(1)) {
    const eq = part.indexOf('=')
    out.set((eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase(), eq < 0 ? '' : part.slice(eq + 1).trim())
  }
  return out
}

t.test('set: the defaults, exactly', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig())
  t.equal(headers.name, 'sid')
  t.equal(headers.set(VALUE), `sid=${VALUE}; Path=/; HttpOnly; Secure; SameSite=Lax`)
})

t.test('set: every attribute configured, exactly', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig({ domain: '.example.com', maxAge: 3600 }))
  t.equal(headers.set(VALUE), `sid=${VALUE}; Max-Age=3600; Domain=.example.com; Path=/; HttpOnly; Secure; SameSite=Lax`)
})

t.test('set: the value goes out verbatim, ~ and : included', async (t) => {
  const line = new SessionCookieHeaders(cookieConfig()).set(VALUE)
  t.equal(line.slice(0, line.indexOf(';')), `sid=${VALUE}`)
})

t.test('set: name and path from config', async (t) => {
  const line = new SessionCookieHeaders(cookieConfig({ name: 'app_sid', path: '/app' })).set('v')
  t.match(line, /^app_sid=v; /)
  t.equal(attributes(line).get('path'), '/app')
})

t.test('set: Domain only when configured', async (t) => {
  t.notOk(attributes(new SessionCookieHeaders(cookieConfig()).set('v')).has('domain'))
  t.equal(attributes(new SessionCookieHeaders(cookieConfig({ domain: '.example.com' })).set('v')).get('domain'), '.example.com')
})

t.test('set: Max-Age only when configured (absent = browser session)', async (t) => {
  const session = attributes(new SessionCookieHeaders(cookieConfig()).set('v'))
  t.notOk(session.has('max-age'))
  t.notOk(session.has('expires'))
  t.equal(attributes(new SessionCookieHeaders(cookieConfig({ maxAge: 86400 })).set('v')).get('max-age'), '86400')
})

t.test('set: HttpOnly and Secure follow config', async (t) => {
  const off = attributes(new SessionCookieHeaders(cookieConfig({ secure: false, httpOnly: false })).set('v'))
  t.notOk(off.has('httponly'))
  t.notOk(off.has('secure'))
  const on = attributes(new SessionCookieHeaders(cookieConfig({ secure: true, httpOnly: true })).set('v'))
  t.equal(on.get('httponly'), '')
  t.equal(on.get('secure'), '')
})

t.test('set: SameSite follows config', async (t) => {
  t.match(new SessionCookieHeaders(cookieConfig({ sameSite: 'lax' })).set('v'), /; SameSite=Lax$/)
  t.match(new SessionCookieHeaders(cookieConfig({ sameSite: 'strict' })).set('v'), /; SameSite=Strict$/)
  t.match(new SessionCookieHeaders(cookieConfig({ sameSite: 'none' })).set('v'), /; SameSite=None$/)
})

t.test('clear: an empty value expired at once, with the same domain and path', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig({ domain: '.example.com', path: '/app', maxAge: 3600 }))
  t.equal(headers.clear, 'sid=; Max-Age=0; Domain=.example.com; Path=/app; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax')
  const a = attributes(headers.clear)
  t.equal(a.get('max-age'), '0')
  t.equal(a.get('expires'), 'Thu, 01 Jan 1970 00:00:00 GMT')
  t.equal(a.get('domain'), attributes(headers.set('v')).get('domain'))
  t.equal(a.get('path'), attributes(headers.set('v')).get('path'))
})

t.test('clear: without a domain, none is sent', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig({ secure: false }))
  t.equal(headers.clear, 'sid=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax')
})

t.test('mayHold: a cheap pre-check for "sid="', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig())
  t.notOk(headers.mayHold(undefined))
  t.notOk(headers.mayHold('theme=dark'))
  t.ok(headers.mayHold(`theme=dark; sid=${VALUE}`))
})

t.test('read: finds the value among other cookies', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig())
  t.equal(headers.read(`theme=dark; sid=${VALUE}; lang=en`), VALUE)
  t.equal(headers.read(`sid=${VALUE}`), VALUE)
  t.equal(headers.read(`a=1;sid=${VALUE};b=2`), VALUE, 'without spaces')
})

t.test('read: undefined when absent, never a cookie whose name merely contains the name', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig())
  t.equal(headers.read('theme=dark; lang=en'), undefined)
  t.equal(headers.read('xsid=1; sid2=2; SID=3'), undefined)
  t.equal(headers.read(''), undefined)
})

t.test('read: a custom name', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig({ name: 'app_sid' }))
  t.equal(headers.read(`sid=other; app_sid=${VALUE}`), VALUE)
})

t.test('remove: drops the sidecar cookie and keeps the others in order', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig())
  t.equal(headers.remove(`theme=dark; sid=${VALUE}; lang=en`), 'theme=dark; lang=en')
  t.equal(headers.remove(`sid=${VALUE}; theme=dark`), 'theme=dark')
  t.equal(headers.remove(`theme=dark; sid=${VALUE}`), 'theme=dark')
})

t.test('remove: the other cookies keep their bytes, separators and spacing as sent', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig())
  t.equal(headers.remove(`a=1;sid=${VALUE};b=2`), 'a=1;b=2')
  t.equal(headers.remove(`a=1;  b="x y";sid=${VALUE}`), 'a=1;  b="x y"')
  t.equal(headers.remove('a=1; b=2'), 'a=1; b=2', 'nothing to remove: the very same header')
})

t.test('remove: drops every sid pair', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig())
  t.equal(headers.remove(`a=1; sid=${VALUE}; b=2; sid=other; c=3; sid=`), 'a=1; b=2; c=3')
})

t.test('remove: undefined when nothing is left', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig())
  t.equal(headers.remove(`sid=${VALUE}`), undefined)
  t.equal(headers.remove(' sid=1 ; sid=2;'), undefined)
})

t.test('remove: keeps cookies whose names merely contain "sid"', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig())
  t.equal(headers.remove('xsid=1; sid=2; sid2=3; my_sid=4; SID=5; sidx=6'), 'xsid=1; sid2=3; my_sid=4; SID=5; sidx=6')
})

t.test('remove: the other pairs go through byte for byte, duplicates and encodings included', async (t) => {
  const headers = new SessionCookieHeaders(cookieConfig())
  t.equal(headers.remove('a=%20x%3B; sid=1; a=2; flag; b="q"'), 'a=%20x%3B; a=2; flag; b="q"')
})

t.test('AppCookieDomain: adds a Domain to a cookie without one', async (t) => {
  const domain = new AppCookieDomain('.example.com', [])
  t.equal(domain.rewrite('cart=42'), 'cart=42; Domain=.example.com')
})

t.test('AppCookieDomain: replaces an existing Domain, whatever its case', async (t) => {
  const domain = new AppCookieDomain('.example.com', [])
  t.same(attributes(domain.rewrite('cart=42; Domain=app.internal; Path=/') as string).get('domain'), '.example.com')
  const lower = domain.rewrite('cart=42; domain=app.internal; path=/') as string
  t.equal(attributes(lower).get('domain'), '.example.com')
  t.equal(lower.toLowerCase().split('domain=').length, 2, 'exactly one Domain')
})

t.test('AppCookieDomain: keeps the name, value and every other attribute', async (t) => {
  const domain = new AppCookieDomain('.example.com', [])
  const line = domain.rewrite('cart=42; Max-Age=60; Domain=app.internal; Path=/shop; HttpOnly; Secure; SameSite=Strict') as string
  t.match(line, /^cart=42; /)
  t.same(Object.fromEntries(attributes(line)), { 'max-age': '60', domain: '.example.com', path: '/shop', httponly: '', secure: '', samesite: 'Strict' })
  const expires = domain.rewrite('cart=42; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Partitioned; Priority=High') as string
  t.same(Object.fromEntries(attributes(expires)), { domain: '.example.com', expires: 'Wed, 21 Oct 2015 07:28:00 GMT', partitioned: '', priority: 'High' })
})

t.test('AppCookieDomain: keeps attributes the cookie library does not know', async (t) => {
  const domain = new AppCookieDomain('.example.com', [])
  const line = domain.rewrite('cart=42; Path=/; Foo=bar; SameParty') as string
  t.equal(attributes(line).get('foo'), 'bar')
  t.equal(attributes(line).get('sameparty'), '')
  t.equal(attributes(line).get('domain'), '.example.com')
})

t.test('AppCookieDomain: never throws on a value outside RFC 6265 cookie-octets, and still sets the Domain', async (t) => {
  const domain = new AppCookieDomain('.example.com', [])
  for (const header of ['msg=hello world; Path=/', 'q="a b"; Path=/']) {
    let line: string | string[] = ''
    t.doesNotThrow(() => { line = domain.rewrite(header) }, header)
    t.equal(String(line).slice(0, String(line).indexOf(';')), header.slice(0, header.indexOf(';')), 'the value is untouched')
    t.equal(attributes(String(line)).get('domain'), '.example.com')
  }
})

t.test('AppCookieDomain: only the listed names when names is non-empty', async (t) => {
  const domain = new AppCookieDomain('.example.com', ['cart', 'lang'])
  t.equal(domain.rewrite('cart=42'), 'cart=42; Domain=.example.com')
  t.equal(domain.rewrite('lang=en; Path=/'), 'lang=en; Domain=.example.com; Path=/')
  t.equal(domain.rewrite('other=1; Domain=app.internal'), 'other=1; Domain=app.internal', 'others untouched, byte for byte')
  t.equal(domain.rewrite('carts=1'), 'carts=1', 'names are compared exactly')
})

t.test('AppCookieDomain: every cookie when names is empty', async (t) => {
  const domain = new AppCookieDomain('.example.com', [])
  t.equal(domain.rewrite('a=1'), 'a=1; Domain=.example.com')
  t.equal(domain.rewrite('zzz=2'), 'zzz=2; Domain=.example.com')
})

t.test('AppCookieDomain: arrays of Set-Cookie headers, one by one, in order', async (t) => {
  const domain = new AppCookieDomain('.example.com', ['a'])
  t.same(domain.rewrite(['a=1', 'b=2; Domain=x.example.net', 'a=3; Path=/']), ['a=1; Domain=.example.com', 'b=2; Domain=x.example.net', 'a=3; Domain=.example.com; Path=/'])
  t.same(domain.rewrite([]), [])
})

t.test('AppCookieDomain: a header with no name=value is left alone', async (t) => {
  const domain = new AppCookieDomain('.example.com', [])
  t.equal(domain.rewrite('garbage'), 'garbage')
})

t.test('OwnCookieGuard removes the app\'s Set-Cookie lines of the session cookie\'s name, exactly that name', async (t) => {
  const guard = new OwnCookieGuard('sid')
  const one: NodeJS.Dict<string | string[]> = { 'set-cookie': 'sid=x; Path=/' }
  t.equal(guard.strip(one), 1)
  t.notOk('set-cookie' in one, 'a lone line goes with its header')
  const many: NodeJS.Dict<string | string[]> = { 'set-cookie': ['theme=dark', 'sid=; Max-Age=0', 'SID=upper', 'sidebar=1', 'x=sid'] }
  t.equal(guard.strip(many), 1)
  t.same(many['set-cookie'], ['theme=dark', 'SID=upper', 'sidebar=1', 'x=sid'], 'names are case-sensitive; values and prefixes do not count')
  const none: NodeJS.Dict<string | string[]> = { 'set-cookie': 'theme=dark' }
  t.equal(guard.strip(none), 0)
  t.equal(none['set-cookie'], 'theme=dark', 'untouched')
  t.equal(guard.strip({}), 0)
})
