import t from 'tap'
import { request } from 'node:http'
import { MemcachedProcess } from '../helpers/memcached.js'
import { TestApp, b64 } from '../helpers/upstream.js'
import { LogCapture, startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { Browser, keyOf } from '../helpers/client.js'
import { until } from '../../harness/index.js'
import { RawConnection } from '../helpers/raw-socket.js'
import type { Sidecar } from '../../src/sidecar.js'

async function setup (t: any, overrides: Record<string, Record<string, unknown>> = {}) {
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const sidecar = await startTestSidecar(testConfig(app.url, [m.address], { shutdown: { timeoutMs: 500 }, ...overrides }))
  t.teardown(() => sidecar.close())
  return { m, app, sidecar }
}

t.test('a slow response that changes a session destroyed meanwhile does not bring it back', async (t) => {
  const { m, app, sidecar } = await setup(t)
  const browser = new Browser()
  await browser.get(sidecar.url, '/?set={"user":"ada"}')
  const stolen = browser.sid as string
  const key = keyOf(stolen)
  const slow = browser.get(sidecar.url, '/?delay=300&merge={"seen":1}')
  await until(() => app.seen.some((s) => s.url.includes('delay=300')), 2000, 'the slow request to reach the app')
  const logout = new Browser()
  logout.cookies.set('sid', stolen)
  await logout.get(sidecar.url, '/logout?destroy=1')
  await slow
  await sidecar.store.flush(2000)
  t.match(await m.copy(key), /^\d+ ended$/, 'memcached holds a tombstone, no live copy')
  const replay = new Browser()
  replay.cookies.set('sid', stolen)
  t.equal((await replay.get(sidecar.url, '/')).body.session, undefined, 'the stolen cookie gets nothing')
})

/** Ada's session, stored: her browser and the session's key. */
async function stored (sidecar: Sidecar): Promise<{ browser: Browser, key: string }> {
  const browser = new Browser()
  await browser.get(sidecar.url, '/?set={"user":"ada"}')
  await sidecar.store.flush(2000)
  return { browser, key: keyOf(browser.sid) }
}

/** Sends `path` with `browser`'s cookie and hangs up once the request has reached the app. */
async function hangUpAtApp (sidecar: Sidecar, app: TestApp, browser: Browser, path: string): Promise<void> {
  const req = request(`${sidecar.url}${path}`, { headers: { cookie: `sid=${browser.sid as string}` } })
  req.on('error', () => {})
  req.end()
  await until(() => app.seen.some((s) => s.url === path), 2000, `${path} to reach the app`)
  req.destroy()
}

t.test('a logout whose client hung up before the app answered still destroys the session', async (t) => {
  const { m, app, sidecar } = await setup(t)
  const { browser, key } = await stored(sidecar)
  await hangUpAtApp(sidecar, app, browser, '/logout?destroy=1&delay=200')
  await until(async () => /^\d+ ended$/.test(await m.copy(key) ?? ''), 3000, 'the tombstone to be stored')
  t.pass('the destroy was applied although the client was gone')
})

t.test('a change whose client hung up before the app answered is applied', async (t) => {
  const { m, app, sidecar } = await setup(t)
  const { browser, key } = await stored(sidecar)
  await hangUpAtApp(sidecar, app, browser, `/?merge=${encodeURIComponent('{"cart":1}')}&delay=200`)
  await until(async () => (await m.copy(key))?.startsWith(`2 ${b64({ user: 'ada', cart: 1 })}`) === true, 3000, 'the change to be stored')
  t.pass('memcached holds the change, though the client never got its response')
})

t.test('two concurrent changes of one session on one node both count, even with memcached down', async (t) => {
  const { m, sidecar } = await setup(t)
  const browser = new Browser()
  await browser.get(sidecar.url, '/?set={}')
  await sidecar.store.flush(2000)
  await m.stop('SIGKILL')
  const sid = browser.sid as string
  const one = new Browser()
  const two = new Browser()
  one.cookies.set('sid', sid)
  two.cookies.set('sid', sid)
  await Promise.all([one.get(sidecar.url, '/?delay=50&merge={"c":1}'), two.get(sidecar.url, '/?delay=100&merge={"d":1}')])
  t.same((await two.get(sidecar.url, '/')).body.session, { c: 1, d: 1 }, 'the second change applied on top of the first')
})

t.test('a write retried after an outage never lands over a newer one', async (t) => {
  const { m, sidecar } = await setup(t)
  const browser = new Browser()
  await browser.get(sidecar.url, '/?set={"cart":"0"}')
  await sidecar.store.flush(2000)
  const key = keyOf(browser.sid)
  await m.stop('SIGKILL')
  await browser.get(sidecar.url, '/?set={"cart":"A"}') // fails, kept for retry
  await m.start()
  await until(async () => await m.ping(), 2000)
  await browser.get(sidecar.url, '/?set={"cart":"B"}')
  await until(async () => (await m.copy(key))?.endsWith(b64({ cart: 'B' })) ?? false, 5000, 'B to be stored')
  await sidecar.store.flush(3000)
  t.equal((await m.copy(key))?.split(' ')[1], b64({ cart: 'B' }), 'memcached ends with B, the newest change')
  t.same((await browser.get(sidecar.url, '/')).body.session, { cart: 'B' })
})

t.test('hostile data from the app or the store is refused, never a crash', async (t) => {
  const log = new LogCapture()
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const sidecar = await startTestSidecar(testConfig(app.url, [m.address], { log: { level: 'warn' } }), { destination: log })
  t.teardown(() => sidecar.close())
  const browser = new Browser()
  await browser.get(sidecar.url, '/?set={"a":1}')
  const res = await browser.get(sidecar.url, '/?deepMerge=4000')
  t.equal(res.status, 200, 'a 4000-deep merge patch: the response flows')
  t.same((await browser.get(sidecar.url, '/')).body.session, { a: 1 }, 'the session is intact')
  t.ok(log.entries.some((e) => e.code === 'SIDECAR_ERR_SESSION_UPDATE_REFUSED'), 'and the refusal is logged')

  // A copy in memcached that this sidecar did not write: treated as no copy.
  await sidecar.store.flush(2000)
  const key = keyOf(browser.sid)
  await m.set(`sess:${key}`, '5 ')
  const other = await startTestSidecar(testConfig(app.url, [m.address]))
  t.teardown(() => other.close())
  const r2 = await browser.get(other.url, '/?merge={"b":2}')
  t.equal(r2.status, 200)
})

t.test('an expired cookie is answered quickly, with few reads', async (t) => {
  const { m, sidecar } = await setup(t)
  const browser = new Browser()
  await browser.get(sidecar.url, '/?set={"a":1}')
  await sidecar.store.flush(2000)
  await m.delete(`sess:${keyOf(browser.sid)}`)
  const fresh = await startTestSidecar(testConfig(sidecar.url, [m.address]))
  t.teardown(() => fresh.close())
  const before = (await m.stats()).cmd_get
  await browser.get(fresh.url, '/')
  const reads = (await m.stats()).cmd_get - before
  t.ok(reads <= 6, `a missing session is given up after a short grace (${reads} reads)`)
  t.equal(browser.sid, undefined, 'and its cookie is cleared')
})

t.test('pipelined requests reach the app one after the other: a POST never overtakes the one before it, and the second sees the session the first changed', async (t) => {
  // Found by an adversarial helper: Node hands over pipelined requests at once, and the sidecar
  // sent both to the app on two connections; the second ran before the first had answered.
  const { app, sidecar } = await setup(t)
  const browser = new Browser()
  await browser.get(sidecar.url, '/login?set={"user":"ada"}')
  const cookie = `sid=${browser.sid as string}`
  const conn = await RawConnection.open(sidecar.url)
  t.teardown(() => conn.destroy())
  const before = app.seen.length
  await conn.write(
    `POST /slow?delay=300&merge=${encodeURIComponent('{"slow":1}')} HTTP/1.1\r\nHost: a\r\nCookie: ${cookie}\r\nContent-Length: 0\r\n\r\n` +
    `POST /next HTTP/1.1\r\nHost: a\r\nCookie: ${cookie}\r\nContent-Length: 0\r\n\r\n`)
  await until(() => app.seen.length > before, 2000, 'the first request to reach the app')
  await new Promise((resolve) => setTimeout(resolve, 150))
  t.equal(app.seen.length, before + 1, 'the second has not reached the app while the first is being answered')
  await conn.until((text) => (text.match(/HTTP\/1\.1 200/g) ?? []).length === 2, 5000, 'both responses')
  const second = app.seen[before + 1]
  t.equal(second?.url, '/next', 'then the second arrives')
  t.same(second?.session, { user: 'ada', slow: 1 }, 'with the session the first changed')
})
