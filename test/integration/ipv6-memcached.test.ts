import t from 'tap'
import { Browser, keyOf } from '../helpers/client.js'
import { hasIpv6Loopback, MemcachedProcess } from '../helpers/memcached.js'
import { startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { TestApp, b64 } from '../helpers/upstream.js'

// memcached nodes may be IPv6 literals: `[v6]:port` in config and in cookies.

t.test('a session is stored on an IPv6 memcached node and found there by another sidecar', { skip: await hasIpv6Loopback() ? false : 'this machine has no ::1' }, async (t) => {
  const v6 = await MemcachedProcess.start('::1')
  t.teardown(async () => await v6.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const node = `[::1]:${v6.port}`
  const a = await startTestSidecar(testConfig(app.url, [node]))
  t.teardown(() => a.close())
  const b = await startTestSidecar(testConfig(app.url, [node]))
  t.teardown(() => b.close())

  const user = new Browser()
  await user.get(a.url, '/?set={"user":"alice"}')
  await a.store.flush(2000)
  t.equal((user.sid ?? '').split('~')[2], node, 'the cookie names the node as [::1]:port')
  t.match(await v6.copy(keyOf(user.sid)), new RegExp(`^1 ${b64({ user: 'alice' })}$`), 'memcached on ::1 holds the copy')
  t.same((await user.get(b.url, '/')).body.session, { user: 'alice' }, 'a sidecar that never saw it loads it from there')
})
