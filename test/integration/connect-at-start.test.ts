import t from 'tap'
import { Browser, keyOf, q } from '../helpers/client.js'
import { metricValue } from '../helpers/metrics.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { TestApp } from '../helpers/upstream.js'

// A sidecar connects to its memcached nodes before it listens (one `version` each), so the
// first login it answers does not wait for a TCP connect while the user's next request, on
// another sidecar, already looks for the session; and a node that does not answer is known
// to be down before the first session is placed on it.

t.test('a started sidecar already holds a connection to each node', async (t) => {
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const before = (await m.stats()).total_connections ?? 0
  const s = await startTestSidecar(testConfig(app.url, [m.address]))
  t.teardown(() => s.close())
  // stats itself opens one connection: the sidecar's is the other.
  t.equal((await m.stats()).total_connections, before + 2, 'one connection opened by the sidecar before any request')
})

t.test('a node that does not answer at start does not stop the sidecar from starting: it is reported down, and sessions are stored on the other', async (t) => {
  const live = await MemcachedProcess.start()
  const frozen = await MemcachedProcess.start()
  process.kill(frozen.pid as number, 'SIGSTOP')
  t.teardown(async () => {
    process.kill(frozen.pid as number, 'SIGCONT')
    await frozen.stop()
    await live.stop()
  })
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const s = await startTestSidecar(testConfig(app.url, [live.address, frozen.address], { memcached: { timeoutMs: 500, write: 'sync' } }))
  t.teardown(() => s.close())
  const up = async (address: string): Promise<number> => await metricValue(s.adminUrl, 'sidecar_memcached_node_up', { node: address })
  t.equal(await up(frozen.address), 0, 'the frozen node is reported down as soon as the sidecar listens')
  t.equal(await up(live.address), 1, 'the other one up')
  const user = new Browser()
  await user.get(s.url, `/login?set=${q({ user: 'ada' })}`)
  t.match(await live.copy(keyOf(user.sid)), /^1 /, 'a login is stored on the node that answers')
})
