import t, { type Test } from 'tap'
import { MemcachedProcess } from '../helpers/memcached.js'
import { TestApp, b64 } from '../helpers/upstream.js'
import { startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { Browser, keyOf } from '../helpers/client.js'
import { until } from '../../harness/index.js'
import type { Sidecar } from '../../src/sidecar.js'

// SPEC "Storage and consistency": a local copy is served only if it was checked against
// memcached within cache.revalidateMs, which "bounds how long a destroyed session can be
// replayed on another node". X-Session-Destroy writes a tombstone wherever the session lives.
//
// idleTimeout is far above the test's duration on purpose: with a TTL of a few seconds a
// session could vanish by expiry, and a "no session" would prove nothing about revalidation.

const IDLE_TIMEOUT = 10

interface Setup { m: MemcachedProcess, app: TestApp, a: Sidecar, b: Sidecar }

async function setup (t: Test, revalidateMs: number): Promise<Setup> {
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const overrides = { cache: { revalidateMs }, session: { idleTimeout: IDLE_TIMEOUT } }
  const a = await startTestSidecar(testConfig(app.url, [m.address], overrides))
  t.teardown(() => a.close())
  const b = await startTestSidecar(testConfig(app.url, [m.address], overrides))
  t.teardown(() => b.close())
  return { m, app, a, b }
}

/** One request carrying exactly `sid` (a fresh client each time: replay never learns). */
async function replay (sidecar: Sidecar, sid: string, path = '/'): Promise<{ status: number, session: unknown, sessionId: unknown, sid: string | undefined }> {
  const client = new Browser()
  client.cookies.set('sid', sid)
  const res = await client.get(sidecar.url, path)
  return { status: res.status, session: res.body.session, sessionId: res.body.sessionId, sid: client.sid }
}

/** Replays `sid` on `sidecar` until it gives no session; logs when each attempt started. */
async function replayUntilGone (sidecar: Sidecar, sid: string, ms: number): Promise<{ gone: boolean, attempts: Array<{ startedAt: number, served: boolean }> }> {
  const attempts: Array<{ startedAt: number, served: boolean }> = []
  const gone = await until(async () => {
    const startedAt = Date.now()
    const r = await replay(sidecar, sid)
    attempts.push({ startedAt, served: r.session !== undefined })
    return r.session === undefined
  }, ms, 'the replayed session to be refused').then(() => true, () => false)
  return { gone, attempts }
}

t.test('a session destroyed through A cannot be replayed: at once on A, after at most cache.revalidateMs on B, never again on either', async (t) => {
  const revalidateMs = 300
  const { m, a, b } = await setup(t, revalidateMs)
  const browser = new Browser()
  await browser.get(a.url, '/login?set={"user":"ada"}')
  const old = browser.sid as string
  await a.store.flush(2000)

  // Used on both nodes, so both hold it in their local cache.
  t.same((await replay(b, old)).session, { user: 'ada' }, 'B serves it (loaded from memcached, now cached)')
  t.same((await browser.get(a.url, '/')).body.session, { user: 'ada' }, 'A serves it (cached)')
  t.same((await replay(b, old)).session, { user: 'ada' }, 'B serves it again')

  const destroyedAt = Date.now()
  const logout = await browser.get(a.url, '/logout?destroy=1')
  t.equal(logout.status, 200)
  t.equal(browser.sid, undefined, 'the destroy response clears the cookie')

  const onA = await replay(a, old)
  t.equal(onA.status, 200)
  t.equal(onA.session, undefined, 'A: no session immediately (no flush, no wait)')
  t.equal(onA.sessionId, undefined)

  const { gone, attempts } = await replayUntilGone(b, old, revalidateMs + 2000)
  t.ok(gone, 'B stops serving the destroyed session')
  const late = attempts.filter((x) => x.startedAt >= destroyedAt + revalidateMs)
  t.same(late.filter((x) => x.served), [], `B served no request started more than revalidateMs (${revalidateMs} ms) after the destroy`)
  t.comment(`B served ${attempts.filter((x) => x.served).length} replay(s) in the window; refused ${Date.now() - destroyedAt} ms after the destroy at the latest`)

  for (let i = 0; i < 10; i++) {
    const ra = await replay(a, old)
    const rb = await replay(b, old)
    t.equal(ra.status, 200)
    t.equal(rb.status, 200)
    t.equal(ra.session, undefined, `A, replay ${i + 1}: no session`)
    t.equal(rb.session, undefined, `B, replay ${i + 1}: no session`)
    t.equal(ra.sid, undefined, `A, replay ${i + 1}: no session cookie given back`)
    t.equal(rb.sid, undefined, `B, replay ${i + 1}: no session cookie given back`)
  }
  await a.store.flush(2000)
  await b.store.flush(2000)
  t.match(await m.copy(keyOf(old)), /^\d+ ended$/, 'memcached holds a tombstone, no live copy')
})

t.test('an app write on B during the replay window does not bring a destroyed session back', async (t) => {
  // A wide window so the write surely lands inside it; the bound still applies after it.
  const revalidateMs = 1000
  const { m, app, a, b } = await setup(t, revalidateMs)
  const browser = new Browser()
  await browser.get(a.url, '/login?set={"user":"ada"}')
  const old = browser.sid as string
  await a.store.flush(2000)
  const checkedOnB = Date.now()
  t.same((await replay(b, old)).session, { user: 'ada' }, 'B caches the session')

  const destroyedAt = Date.now()
  await browser.get(a.url, '/logout?destroy=1')
  t.equal(browser.sid, undefined, 'destroyed through A')
  await a.store.flush(2000)
  t.match(await m.copy(keyOf(old)), /^\d+ ended$/, 'the tombstone reached memcached')

  // The stolen cookie is replayed on B inside its window, on a page where the app writes the session.
  const attacker = new Browser()
  attacker.cookies.set('sid', old)
  const write = await attacker.get(b.url, '/track?merge={"lastSeen":1}')
  t.equal(write.status, 200)
  const inWindow = app.last?.session !== undefined
  t.comment(inWindow
    ? `B still served the session ${Date.now() - checkedOnB} ms after its last check, and the app wrote to it`
    : 'B had already revalidated: the write found no session')
  await b.store.flush(2000)
  const issued = attacker.sid

  // Wait (by polling, not sleeping) until the window is over for every copy B may hold.
  const after = destroyedAt + revalidateMs
  const { gone } = await replayUntilGone(b, old, revalidateMs + 2000)
  t.ok(gone, 'B stops serving the old cookie')
  await until(() => Date.now() >= after, revalidateMs + 100, 'the replay window to close')

  // C joins the fleet only now: it has no memory of the destroy, only memcached to go by.
  const c = await startTestSidecar(testConfig(app.url, [m.address], { cache: { revalidateMs }, session: { idleTimeout: IDLE_TIMEOUT } }))
  t.teardown(() => c.close())
  const cookies = issued !== undefined && issued !== old ? [old, issued] : [old]
  for (const [name, node] of [['A', a], ['B', b], ['C (a node started after the destroy)', c]] as const) {
    for (const sid of cookies) {
      const label = sid === old ? 'the old cookie' : 'the cookie B issued in the window'
      let served = 0
      for (let i = 0; i < 5; i++) if ((await replay(node, sid)).session !== undefined) served++
      t.equal(served, 0, `${name}, ${label}: none of 5 replays after the window is served`)
    }
  }
  await b.store.flush(2000)
  const stored = await m.copy(keyOf(old))
  t.match(stored, /^\d+ ended$/, 'memcached holds only a tombstone of the destroyed key')
  if (stored !== undefined) t.comment(`resurrected in memcached as: ${stored.split(' ')[0] ?? ''} ${stored === `2 ${b64({ user: 'ada', lastSeen: 1 })}` ? '(the merged data, version 2)' : ''}`)
})
