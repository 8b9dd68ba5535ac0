import t from 'tap'
import { until } from '../../harness/index.js'
import { Browser, q, versionOf } from '../helpers/client.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { TestApp } from '../helpers/upstream.js'

// SPEC: a local copy is served when its version is at least the cookie's and memcached
// confirmed it within cache.revalidateMs. A client that keeps its cookies always names the
// newest version, so every sidecar serves the newest; one that replays an old cookie (curl
// without a cookie jar, a script) names an old version and may get a sidecar's cached copy,
// at most cache.revalidateMs old. A counter rewritten from such a copy loses increments made
// elsewhere in that window (seen by hand as 14, 14, 15, 15 alternating between two sidecars).

t.test('an old cookie may be served a sidecar\'s cached copy up to cache.revalidateMs old; the current cookie always gets the newest', async (t) => {
  const m = await MemcachedProcess.start()
  t.teardown(async () => { await m.stop() })
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const revalidateMs = 1500
  const start = async (): Promise<Awaited<ReturnType<typeof startTestSidecar>>> => {
    const s = await startTestSidecar(testConfig(app.url, [m.address], { cache: { revalidateMs } }))
    t.teardown(() => s.close())
    return s
  }
  const [a, b] = [await start(), await start()]
  const user = new Browser()
  await user.get(a.url, `/?set=${q({ n: 0 })}`)
  await a.store.flush(2000)
  const old = user.sid as string
  t.same((await user.get(b.url, '/')).body.session, { n: 0 }, 'b caches the session (version 1)')
  await user.get(a.url, `/?set=${q({ n: 1 })}`)
  await a.store.flush(2000)
  t.equal(versionOf(user.sid), 2)

  const replay = new Browser()
  replay.cookies.set('sid', old)
  t.same((await replay.get(b.url, '/')).body.session, { n: 0 }, 'the old cookie (version 1) is served b\'s cached version 1: allowed within cache.revalidateMs')
  t.same((await user.get(b.url, '/')).body.session, { n: 1 }, 'the current cookie (version 2) makes b read memcached: the newest')

  // b adopted version 2 just now; a third sidecar shows the window's end without that read.
  const c = await start()
  t.same((await replay.get(c.url, '/')).body.session, { n: 1 }, 'a sidecar with no cached copy reads memcached: the newest')
  await user.get(a.url, `/?set=${q({ n: 2 })}`)
  await a.store.flush(2000)
  // c cached version 2; the old cookie does not ask for more, so c serves it until its check is due.
  await until(async () => {
    replay.cookies.set('sid', old)
    return (await replay.get(c.url, '/')).body.session?.n === 2
  }, revalidateMs + 3000, 'the old cookie to get the newest copy once c revalidates')
  t.pass('once its check is due, c serves the newest copy to the old cookie too')
})
