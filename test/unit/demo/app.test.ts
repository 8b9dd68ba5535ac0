import t, { type Test } from 'tap'
import { startDemoApp, type AppAnswer } from '../../../demo/app.js'

// The demo's app, called directly (as its sidecar would): session in X-Session, changes in
// X-Session-* response headers, an answer naming the instance.

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
const unb64 = (value: string | null): unknown => value === null ? null : JSON.parse(Buffer.from(value, 'base64url').toString('utf8'))

async function app (t: Test): Promise<string> {
  const a = await startDemoApp('instance-7')
  t.teardown(async () => {
    a.server.closeAllConnections()
    await new Promise((resolve) => a.server.close(resolve))
  })
  return a.url
}

const withSession = (data: unknown, id = 'AbCdEfGhIjKlMnOpQrStUv'): Record<string, string> => ({ 'x-session': b64(data), 'x-session-id': id })

t.test('/ counts visits with X-Session-Merge, with or without a session', async (t) => {
  const url = await app(t)
  const fresh = await fetch(`${url}/`)
  t.same(unb64(fresh.headers.get('x-session-merge')), { visits: 1 }, 'no session: the first visit')
  t.same(await fresh.json(), { instance: 'instance-7', action: 'visit', sessionId: null, saw: null, session: { visits: 1 } })
  const again = await fetch(`${url}/visit`, { headers: withSession({ user: 'alice', visits: 2 }) })
  t.same(unb64(again.headers.get('x-session-merge')), { visits: 3 })
  const body = await again.json() as AppAnswer
  t.equal(body.sessionId, 'AbCdEf…', 'the session id, shortened')
  t.same(body.saw, { user: 'alice', visits: 2 })
  t.same(body.session, { user: 'alice', visits: 3 })
  t.equal(fresh.headers.get('cache-control'), 'no-store')
})

t.test('a malformed X-Session is no session', async (t) => {
  const url = await app(t)
  for (const raw of ['%%%', b64([1, 2]), b64('text'), Buffer.from('{').toString('base64url')]) {
    const res = await fetch(`${url}/whoami`, { headers: { 'x-session': raw } })
    t.equal((await res.json() as AppAnswer).saw, null, raw)
  }
})

t.test('/login sets the session and asks for a new key; /logout destroys it; /whoami changes nothing', async (t) => {
  const url = await app(t)
  const login = await fetch(`${url}/login?user=bob`, { headers: withSession({ visits: 5 }) })
  t.same(unb64(login.headers.get('x-session-set')), { user: 'bob', visits: 0 })
  t.equal(login.headers.get('x-session-regenerate'), '1')
  t.equal((await login.json() as AppAnswer).action, 'login')
  const guest = await fetch(`${url}/login`)
  t.same(unb64(guest.headers.get('x-session-set')), { user: 'guest', visits: 0 }, 'no user: guest')
  await guest.text()
  const bad = await fetch(`${url}/login?user=${encodeURIComponent('<b>')}`)
  t.equal(bad.status, 400, 'a user name outside the allowed characters')
  t.equal(bad.headers.get('x-session-set'), null)
  await bad.text()
  const logout = await fetch(`${url}/logout`, { headers: withSession({ user: 'bob' }) })
  t.equal(logout.headers.get('x-session-destroy'), '1')
  t.same(await logout.json(), { instance: 'instance-7', action: 'logout', sessionId: 'AbCdEf…', saw: { user: 'bob' }, session: null })
  const who = await fetch(`${url}/whoami`, { headers: withSession({ user: 'bob' }) })
  t.same([...who.headers.keys()].filter((h) => h.startsWith('x-session')), [], 'no session header')
  t.same((await who.json() as AppAnswer).session, { user: 'bob' })
  const missing = await fetch(`${url}/nope`)
  t.equal(missing.status, 404)
  await missing.text()
})

t.test('a browser gets an HTML page, with session data escaped', async (t) => {
  const url = await app(t)
  const res = await fetch(`${url}/`, { headers: { accept: 'text/html,*/*', ...withSession({ user: '<script>x</script>' }) } })
  t.match(res.headers.get('content-type'), /^text\/html/)
  const html = await res.text()
  t.match(html, /Answered by instance-7/)
  t.match(html, /&#60;script&#62;/, 'escaped')
  t.notMatch(html, /<script>/)
  t.match(html, /href="\/login\?user=alice"/)
  const none = await (await fetch(`${url}/logout`, { headers: { accept: 'text/html' } })).text()
  t.match(none, /no session/)
})

t.test('startDemoApp on a port in use fails', async (t) => {
  const a = await startDemoApp('one')
  t.teardown(() => { a.server.close() })
  await t.rejects(startDemoApp('two', a.port), { code: 'EADDRINUSE' })
})
