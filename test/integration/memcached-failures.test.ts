import t from 'tap'
import { MemcachedProcess } from '../helpers/memcached.js'
import { TestApp, b64 } from '../helpers/upstream.js'
import { startStack, startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { Browser, keyOf } from '../helpers/client.js'
import { until } from '../../harness/index.js'
import { SilentServer, StoreRefusingProxy } from '../helpers/tcp.js'

async function metric (adminUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  return sum
}

t.test('memcached down: requests keep succeeding from the local cache, and changes reach memcached when it returns', async (t) => {
  const { m, sidecar: start } = await startStack(t)
  const sidecar = await start(t)
  const browser = new Browser()
  await browser.get(sidecar.url, '/?set={"n":1}')
  await sidecar.store.flush(2000)

  await m.stop('SIGKILL')
  const read = await browser.get(sidecar.url, '/')
  t.equal(read.status, 200)
  t.same(read.body.session, { n: 1 }, 'the local copy is served')
  const changed = await browser.get(sidecar.url, '/?merge={"n":2}')
  t.equal(changed.status, 200, 'a change succeeds with memcached down')
  t.same((await browser.get(sidecar.url, '/')).body.session, { n: 2 })
  const fresh = new Browser()
  const created = await fresh.get(sidecar.url, '/?set={"new":true}')
  t.equal(created.status, 200)
  t.ok(fresh.sid, 'a new session is created and its cookie issued while memcached is down')
  await until(async () => await metric(sidecar.adminUrl, 'sidecar_write_failures_total') >= 1, 3000, 'a counted write failure')
  let failed = 0
  for (const command of ['gets', 'add', 'cas']) failed += await metric(sidecar.adminUrl, `sidecar_memcached_op_seconds_count{node="${m.address}",command="${command}",result="error"}`)
  t.ok(failed >= 1, 'failed commands are counted by node')

  await m.start() // back, empty
  await until(async () => await m.copy(keyOf(browser.sid)) === `2 ${b64({ n: 2 })}`, 10_000, 'the changed session to be written again')
  await until(async () => await m.copy(keyOf(fresh.sid)) === `1 ${b64({ new: true })}`, 10_000, 'the session created during the outage to be written')
  t.pass('both sessions reached memcached after it returned')
})

t.test('a hung memcached (accepts, never answers) holds no request longer than memcached.timeoutMs', async (t) => {
  const hung = await new SilentServer().start()
  t.teardown(() => hung.close())
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  // A creates the session on a working node; B knows only the hung node.
  const a = await startTestSidecar(testConfig(app.url, [m.address]))
  t.teardown(() => a.close())
  const timeoutMs = 200
  const b = await startTestSidecar(testConfig(app.url, [hung.address], { memcached: { timeoutMs, write: 'sync' }, shutdown: { timeoutMs: 500 } }))
  t.teardown(() => b.close())

  const browser = new Browser()
  const started = Date.now()
  const res = await browser.get(b.url, '/?set={"x":1}')
  const elapsed = Date.now() - started
  t.equal(res.status, 200, 'the response flows')
  t.ok(browser.sid, 'and carries the new session cookie')
  // A bound, not a benchmark: without deadlines a command to a black-holed node waits for TCP.
  t.ok(elapsed < timeoutMs + 800, `a sync write to a hung node gave up after about timeoutMs (took ${elapsed} ms)`)
  t.ok(hung.connections >= 1, 'the hung node was contacted')

  const other = new Browser()
  await other.get(a.url, '/?set={"y":2}')
  await a.store.flush(2000)
  const gotBody = await other.get(b.url, '/')
  t.same(gotBody.body.session, { y: 2 }, 'B reads the session from the node in the cookie, not its hung one')
})

t.test('a memcached that answers garbage is a failing node, not a crash', async (t) => {
  const garbage = await new SilentServer('HELLO WORLD\r\nVALUE x\r\n').start()
  t.teardown(() => garbage.close())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const sidecar = await startTestSidecar(testConfig(app.url, [garbage.address], { memcached: { timeoutMs: 200 }, shutdown: { timeoutMs: 500 } }))
  t.teardown(() => sidecar.close())
  const browser = new Browser()
  for (let i = 0; i < 5; i++) t.equal((await browser.get(sidecar.url, `/?merge={"i":${i}}`)).status, 200)
  t.same((await browser.get(sidecar.url, '/')).body.session, { i: 4 }, 'served from the local cache')
})

t.test('forged or disallowed cookies never make the sidecar contact the address they name', async (t) => {
  const trap = await new SilentServer().start()
  t.teardown(() => trap.close())
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const sidecar = await startTestSidecar(testConfig(app.url, [m.address], { memcached: { allow: ['127.0.0.1/32'] } }))
  t.teardown(() => sidecar.close())
  const strict = await startTestSidecar(testConfig(app.url, [m.address], { memcached: { allow: [`${m.address.split(':')[0] as string}/32`, 'cache.internal'] } }))
  t.teardown(() => strict.close())

  const browser = new Browser()
  await browser.get(sidecar.url, '/?set={"a":1}')
  const [, key, , version, mac] = (browser.sid as string).split('~')
  const forgeries = [
    `1~${key}~${trap.address}~${version}~${mac}`, // address swapped, MAC now wrong
    `1~${key}~${trap.address}~${version}~AAAAAAAAAAAAAAAAAAAAAA`,
    `1~${key}~${trap.address}~${version}`,
    `1~${key}~${trap.address}~${m.address}~${version}~${mac}`,
    `2~${key}~${trap.address}~${version}~${mac}`
  ]
  for (const value of forgeries) {
    const client = new Browser()
    client.cookies.set('sid', value)
    const res = await client.get(sidecar.url, '/')
    t.equal(res.status, 200)
    t.equal(res.body.session, undefined, 'treated as no session')
  }
  t.equal(trap.connections, 0, 'no connection to the forged address')
  t.ok(await metric(sidecar.adminUrl, 'sidecar_forged_cookies_total') >= forgeries.length, 'each forgery is counted')

  // A validly signed cookie naming an address outside memcached.allow: also never contacted.
  const { CookieCodec } = await import('../../src/session/cookie.js')
  const { SECRET } = await import('../helpers/sidecar.js')
  const codec = new CookieCodec([SECRET])
  const signed = codec.encode({ key: key as string, primary: 'evil.example.com:11211', backup: undefined, version: 1 })
  const client = new Browser()
  client.cookies.set('sid', signed)
  t.equal((await client.get(strict.url, '/')).body.session, undefined, 'disallowed address: no session')
  const signedTrap = codec.encode({ key: 'A'.repeat(22), primary: trap.address, backup: undefined, version: 1 })
  client.cookies.set('sid', signedTrap)
  await client.get(sidecar.url, '/')
  t.equal(trap.connections, 1, 'positive control: an allowed, signed address is contacted')
})

t.test('a session memcached cannot produce in time is not replaced: the app is told, its changes are refused, the cookie stays', async (t) => {
  const hung = await new SilentServer().start()
  t.teardown(() => hung.close())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const overrides = { memcached: { timeoutMs: 150 }, shutdown: { timeoutMs: 300 } }
  // The session lives on the hung node (its write failed; the cookie was issued all the same).
  const a = await startTestSidecar(testConfig(app.url, [hung.address], overrides))
  t.teardown(() => a.close())
  const browser = new Browser()
  await browser.get(a.url, '/?set={"user":"ada"}')
  const sid = browser.sid as string
  t.ok(sid, 'a session cookie')

  // Another sidecar has no copy and cannot read one.
  const b = await startTestSidecar(testConfig(app.url, [hung.address], overrides))
  t.teardown(() => b.close())
  const refusedBefore = await metric(b.adminUrl, 'sidecar_refused_updates_total')
  const res = await browser.get(b.url, '/?merge={"cart":[1]}')
  t.equal(res.status, 200, 'the response flows')
  t.equal(app.last?.headers['x-session-unavailable'], '1', 'the app is told the session exists but could not be loaded')
  t.equal(app.last?.sessionId, undefined, 'with no session headers')
  t.same(browser.lastSetCookie, [], 'no new session replaces the user\'s')
  t.equal(browser.sid, sid, 'the cookie is unchanged')
  t.equal(await metric(b.adminUrl, 'sidecar_refused_updates_total'), refusedBefore + 1, 'the refused change is counted')
  const login = await browser.get(b.url, '/login?set={"user":"bob"}&regenerate=1')
  t.equal(login.status, 200)
  t.not(browser.sid, sid, 'a login (Set with Regenerate) is not refused: the app asked for a new key')
  t.same((await browser.get(b.url, '/')).body.session, { user: 'bob' }, 'and it is served')
  const plain = await new Browser().get(b.url, '/', { 'X-Session-Unavailable': '1' })
  t.equal(plain.status, 200)
  t.equal(app.last?.headers['x-session-unavailable'], undefined, 'a client cannot send it (prefixed headers are stripped)')
})

t.test('a primary that answers but refuses every store is avoided: the change moves to the next node and every sidecar serves it', async (t) => {
  // Found by an adversarial helper: a node answering every `ms` EX (or NS) with reads intact
  // held each write of its sessions; with write: sync the response was answered, the change
  // reached no node, and another sidecar served the older copy.
  for (const refusal of ['EX', 'NS'] as const) {
    t.test(`every store answered ${refusal}`, async (t) => {
      const behind = await MemcachedProcess.start()
      const other = await MemcachedProcess.start()
      const liar = await new StoreRefusingProxy(Number(behind.address.split(':')[1])).start()
      t.teardown(async () => { await liar.close(); await behind.stop(); await other.stop() })
      const app = await new TestApp().start()
      t.teardown(() => app.close())
      const config = testConfig(app.url, [liar.address, other.address], { memcached: { write: 'sync' }, cache: { revalidateMs: 300 } })
      const a = await startTestSidecar(config)
      t.teardown(() => a.close())
      const b = await startTestSidecar(config)
      t.teardown(() => b.close())
      // A session whose primary is the proxied node.
      const browser = new Browser()
      for (let i = 0; i < 50 && browser.sid?.split('~')[2] !== liar.address; i++) {
        browser.cookies.clear()
        await browser.get(a.url, `/login?set=${encodeURIComponent(JSON.stringify({ list: ['base'] }))}`)
      }
      t.equal(browser.sid?.split('~')[2], liar.address, 'a session placed on the node that will refuse')
      await a.store.flush(2000)
      t.same((await browser.get(b.url, '/')).body.session, { list: ['base'] }, 'B caches it')

      liar.refuse = refusal
      const changed = await browser.get(a.url, `/?merge=${encodeURIComponent(JSON.stringify({ list: ['base', 'x1'] }))}`)
      t.equal(changed.status, 200)
      t.ok(liar.refused > 0, 'the node refused the store')
      t.equal(browser.sid?.split('~')[2], other.address, 'the cookie names the next node as the primary: the change moved there')
      t.match(await other.copy(keyOf(browser.sid)), /^\d+ /, 'which holds it')
      t.same((await browser.get(b.url, '/')).body.session, { list: ['base', 'x1'] }, 'B serves the change, not its older copy')
      t.equal(await metric(b.adminUrl, 'sidecar_stale_reads_total'), 0, 'no stale read')
      const next = await browser.get(a.url, `/?merge=${encodeURIComponent(JSON.stringify({ list: ['base', 'x1', 'x2'] }))}`)
      t.equal(next.status, 200)
      t.same((await browser.get(b.url, '/')).body.session, { list: ['base', 'x1', 'x2'] }, 'the next change too')
    })
  }
})
