import t from 'tap'
import { Browser } from '../helpers/client.js'
import { killAfterEachAck } from '../helpers/kill-after-ack.js'
import { startTopology } from '../helpers/topology.js'

// Issue 3, scenario 2: the sidecar holding a session dies (kill -9); the load balancer sends the
// user to another node, which must find every acknowledged update in memcached.

t.test('write: sync, nginx sticky by cookie: kill -9 the node holding the session, nothing is lost', async (t) => {
  const topo = await startTopology({ memcached: 3, apps: 2, lb: 'nginx', sidecar: { write: 'sync' } })
  t.teardown(() => topo.close())
  const browser = new Browser()
  // deploy/nginx/nginx.conf leaves body sizes to the app: nginx's default would refuse a
  // 2 MiB upload with 413 (found by an adversarial helper running the shipped config).
  const upload = await fetch(`${topo.lb.url}/upload`, { method: 'POST', body: Buffer.alloc(2 * 1024 * 1024, 7) })
  await upload.arrayBuffer()
  t.equal(upload.status, 200, 'a 2 MiB upload reaches the app through nginx')
  let failures = 0
  for (let i = 0; i < 20; i++) {
    const res = await browser.get(topo.lb.url, i % 2 === 0 ? `/cart?push=cart:item${i}` : '/visit?incr=visits')
    if (res.status !== 200) failures++
  }
  t.equal(failures, 0, '20 acknowledged updates')
  const counts = topo.apps.map((a) => a.seen.length)
  const before = (await browser.get(topo.lb.url, '/')).body.session
  // Once the cookie exists, nginx hashes it to one node: the one that served the last request.
  const holder = topo.apps.findIndex((a, i) => a.seen.length > (counts[i] ?? 0))
  t.ok(topo.apps[holder] !== undefined && (topo.apps[holder]?.seen.length ?? 0) >= 20, 'nginx kept the session on one node (sticky)')
  await topo.sidecars[holder]?.kill('SIGKILL')
  const other = topo.apps[1 - holder]
  const seenBefore = other?.seen.length ?? 0
  const after = await browser.get(topo.lb.url, '/')
  t.equal(after.status, 200, 'the next request succeeds')
  t.equal(other?.seen.length, seenBefore + 1, 'and was served by the surviving node')
  t.same(after.body.session, before, 'with every acknowledged update')
  t.same(after.body.session, { cart: Array.from({ length: 10 }, (_, i) => `item${2 * i}`), visits: 10 }, 'the list and the counter are complete')
})

t.test('kill -9 right after each acknowledged update, write: sync: nothing is lost', async (t) => {
  const trials = 15
  const { lost } = await killAfterEachAck(t, 'sync', trials)
  t.equal(lost, 0, `sync: 0 of ${trials} acknowledged updates lost`)
})
