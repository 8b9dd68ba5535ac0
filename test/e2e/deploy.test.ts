import t from 'tap'
import { Browser } from '../helpers/client.js'
import { until } from '../../harness/index.js'
import { startTopology } from '../helpers/topology.js'

// Issue 3, scenario 3: a deploy sends SIGTERM right after a burst of async updates.
t.test('SIGTERM drains: readyz 503 at once, in-flight requests finish, queued writes flushed, exit 0', async (t) => {
  const topo = await startTopology({ memcached: 2, apps: 2, lb: 'haproxy', sidecar: { write: 'async' } })
  t.teardown(() => topo.close())
  const [a, b] = topo.sidecars
  if (a === undefined || b === undefined) throw new Error('two sidecars expected')

  const browsers = Array.from({ length: 20 }, () => new Browser())
  await Promise.all(browsers.map(async (br) => await br.get(a.url, '/?set={"n":0}')))
  // The burst: 20 sessions x 10 increments, concurrently, all acknowledged by A.
  await Promise.all(browsers.map(async (br) => {
    for (let i = 0; i < 10; i++) await br.get(a.url, '/?incr=n')
  }))
  const slow = browsers[0]?.get(a.url, '/?delay=800&merge={"slow":true}')
  await until(() => topo.apps[0]?.seen.some((s) => s.url.includes('delay=800')) ?? false, 5000, 'the slow request to reach the app')

  const exit = a.kill('SIGTERM')
  let finished = false
  void slow?.then(() => { finished = true })
  await until(async () => await a.readyz() === 503, 2000, 'readyz to turn 503')
  t.notOk(finished, 'readyz answered 503 while the in-flight request was still running')
  const inflight = await slow
  t.equal(inflight?.status, 200, 'the in-flight request completed')
  t.equal(await exit, 0, 'exit 0: every queued write was flushed and acknowledged')

  let missing = 0
  for (const br of browsers) {
    const s = (await br.get(b.url, '/')).body.session
    if (s?.n !== 10) missing++
  }
  t.equal(missing, 0, 'the other node sees all 10 updates of all 20 sessions')
  t.equal((await browsers[0]?.get(b.url, '/'))?.body.session.slow, true, 'including the one made by the in-flight request')
})
