import t from 'tap'
import { b64 } from '../helpers/upstream.js'
import { startStack } from '../helpers/sidecar.js'
import { Browser } from '../helpers/client.js'

t.test('a session is created by the app, handed back on the next request, changed and destroyed', async (t) => {
  const { m, sidecar: start } = await startStack(t)
  const sidecar = await start(t)
  const browser = new Browser()

  const first = await browser.get(sidecar.url, '/')
  t.equal(first.status, 200)
  t.equal(first.body.sessionId, undefined, 'no session before the app makes one')
  t.equal(browser.sid, undefined)

  const created = await browser.get(sidecar.url, '/login?set={"user":"ada"}')
  t.equal(created.status, 200)
  t.match(browser.sid, /^1~[A-Za-z0-9_-]{22}~127\.0\.0\.1:\d+~1~[A-Za-z0-9_-]{22}$/, 'format 1 cookie, version 1, one node')
  t.equal(created.headers.get('x-session-set'), null, 'the app\'s session header never reaches the client')

  const next = await browser.get(sidecar.url, '/profile')
  t.same(next.body.session, { user: 'ada' })
  t.equal(next.body.sessionId, browser.sid?.split('~')[1])
  t.notOk(String(next.body.headers.cookie ?? '').includes('sid='), 'the app never sees the sidecar cookie')

  await browser.get(sidecar.url, '/cart?merge={"cart":[1,2]}')
  t.match(browser.sid, /~2~[^~]+$/, 'a change bumps the version')
  t.same((await browser.get(sidecar.url, '/')).body.session, { user: 'ada', cart: [1, 2] })

  const key = browser.sid?.split('~')[1] as string
  await sidecar.store.flush(2000)
  t.match(await m.copy(key), /^2 [A-Za-z0-9_-]+$/, 'memcached holds version 2')
  t.equal(await m.copy(key), `2 ${b64({ user: 'ada', cart: [1, 2] })}`)

  await browser.get(sidecar.url, '/logout?destroy=1')
  t.equal(browser.sid, undefined, 'destroy clears the cookie')
  await sidecar.store.flush(2000)
  t.equal(await m.copy(key), '3 ended', 'destroy stores a tombstone at the next version in place of the copy')
})
