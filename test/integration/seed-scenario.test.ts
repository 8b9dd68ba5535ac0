import t from 'tap'
import { MemcachedProcess } from '../helpers/memcached.js'
import { TestApp } from '../helpers/upstream.js'
import { startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { Browser } from '../helpers/client.js'

// The seed's scenario: sidecar A knows only memcached M2 (a node added later), sidecar B only
// M1 (an older node that never heard of M2). The address in the cookie is what lets B find it.
t.test('a session placed on a node the reader was never configured with', async (t) => {
  const m1 = await MemcachedProcess.start()
  const m2 = await MemcachedProcess.start()
  t.teardown(async () => { await m1.stop(); await m2.stop() })
  const appA = await new TestApp().start()
  const appB = await new TestApp().start()
  t.teardown(async () => { await appA.close(); await appB.close() })
  const a = await startTestSidecar(testConfig(appA.url, [m2.address]))
  const b = await startTestSidecar(testConfig(appB.url, [m1.address]))
  t.teardown(async () => { await a.close(); await b.close() })
  const browser = new Browser()

  await browser.get(a.url, '/login?set={"user":"ada","n":1}')
  t.match(browser.sid, new RegExp(`~${m2.address.replace(/\./g, '\\.')}~1~`), 'A placed the session on M2, the only node it knows')
  await a.store.flush(2000)

  t.test('B finds it on M2 from the cookie alone', async (t) => {
    const before = await m1.stats()
    const res = await browser.get(b.url, '/profile')
    t.same(res.body.session, { user: 'ada', n: 1 })
    t.equal(res.body.sessionId, browser.sid?.split('~')[1], 'same key: nothing is adopted or minted')
    t.equal((await m1.stats()).cmd_get, before.cmd_get, 'B did not look on its own node M1')
  })

  t.test('an update through B is visible through A, whose local copy is now older', async (t) => {
    await browser.get(b.url, '/inc?merge={"n":2}')
    t.match(browser.sid, /~2~[^~]+$/, 'version 2 in the cookie')
    await b.store.flush(2000)
    t.match(browser.sid, new RegExp(`~${m2.address.replace(/\./g, '\\.')}~2~`), 'B wrote it where the cookie says, on M2')
    const gets = (await m2.stats()).cmd_get
    const res = await browser.get(a.url, '/profile')
    t.same(res.body.session, { user: 'ada', n: 2 }, 'A does not serve its stale local copy (version 1 < 2)')
    t.equal((await m2.stats()).cmd_get - gets, 1, 'A read memcached once, because the cookie is ahead of its copy')
  })

  t.test('a warm node serves repeated requests without reading memcached', async (t) => {
    await browser.get(a.url, '/')
    const gets = (await m2.stats()).cmd_get
    for (let i = 0; i < 20; i++) t.same((await browser.get(a.url, '/')).body.session, { user: 'ada', n: 2 })
    t.equal((await m2.stats()).cmd_get - gets, 0, 'no reads for 20 requests on a warm node')
  })

  t.test('alternating nodes: every change is seen by the other node', async (t) => {
    for (let i = 0; i < 20; i++) {
      const node = i % 2 === 0 ? a : b
      await browser.get(node.url, '/count?incr=counter')
      if (i % 2 === 0) await a.store.flush(2000)
      else await b.store.flush(2000)
    }
    t.equal((await browser.get(a.url, '/')).body.session.counter, 20)
    t.equal((await browser.get(b.url, '/')).body.session.counter, 20)
  })
})
