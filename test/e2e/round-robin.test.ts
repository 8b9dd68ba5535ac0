import t from 'tap'
import { Browser } from '../helpers/client.js'
import { startTopology } from '../helpers/topology.js'

// Issue 3, scenario 1: HAProxy round-robin (not sticky) over two sidecars. The version in the
// cookie tells each sidecar when the other one changed the session.
t.test('1000 sequential increments alternating between two sidecars give exactly 1000', async (t) => {
  const topo = await startTopology({ memcached: 3, apps: 2, lb: 'haproxy' })
  t.teardown(() => topo.close())
  const browser = new Browser()
  const getsBefore = await topo.count('cmd_get')
  for (let i = 0; i < 1000; i++) {
    const res = await browser.get(topo.lb.url, '/count?incr=counter')
    if (res.status !== 200) t.fail(`request ${i} got ${res.status}`)
  }
  const writesGets = await topo.count('cmd_get') - getsBefore
  const served = topo.apps.map((a) => a.seen.length)
  t.ok(served.every((n) => n >= 450), `both nodes served about half (${served.join(' / ')})`)
  const final = await browser.get(topo.lb.url, '/')
  t.equal(final.body.session.counter, 1000, 'no increment lost')
  t.comment(`memcached GETs while every request changed the session: ${writesGets} for 1000 requests (reads on the other node + gets of gets/cas writes)`)

  // Warm, read-only phase: nothing changes, so neither node needs to read.
  await browser.get(topo.lb.url, '/')
  await browser.get(topo.lb.url, '/')
  const before = await topo.count('cmd_get')
  for (let i = 0; i < 200; i++) {
    const res = await browser.get(topo.lb.url, '/')
    if (res.body.session?.counter !== 1000) t.fail(`read ${i} saw ${String(res.body.session?.counter)}`)
  }
  const readGets = await topo.count('cmd_get') - before
  t.equal(readGets, 0, 'a warm node reads only when the other node changed the session: 0 GETs for 200 unchanged requests')
  const stale = await Promise.all(topo.sidecars.map(async (s) => /sidecar_stale_reads_total (\d+)/.exec(await s.metrics())?.[1]))
  t.same(stale, ['0', '0'], 'no stale reads')
})
