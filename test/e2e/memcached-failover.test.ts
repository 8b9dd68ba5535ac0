import t from 'tap'
import { Browser } from '../helpers/client.js'
import { b64 } from '../helpers/upstream.js'
import { until } from '../../harness/index.js'
import { startTopology } from '../helpers/topology.js'

const fields = (sid: string | undefined): string[] => (sid ?? '').split('~')

// Issue 3, scenario 4: the memcached node holding a session's primary copy dies.
t.test('primary killed: served from the backup, relocated (same key, new nodes), never an older version after the node returns', async (t) => {
  const topo = await startTopology({ memcached: 3, apps: 2, lb: 'haproxy', sidecar: { write: 'sync' } })
  t.teardown(() => topo.close())
  const [a, b] = topo.sidecars
  if (a === undefined || b === undefined) throw new Error('two sidecars expected')
  const browser = new Browser()
  await browser.get(a.url, '/?set={"v":1}')
  const [, key, primary, backup] = fields(browser.sid)
  const dead = topo.memcached.find((m) => m.address === primary)
  const third = topo.memcached.find((m) => m.address !== primary && m.address !== backup)
  if (dead === undefined || third === undefined) throw new Error('placement outside the topology')
  const oldCopy = await dead.get(`sess:${key}`)
  t.equal(await dead.copy(key as string), `1 ${b64({ v: 1 })}`, 'the primary held version 1')

  await dead.stop('SIGKILL')
  const res = await browser.get(b.url, '/')
  t.same(res.body.session, { v: 1 }, 'B, which never had it, reads it from the backup')
  await until(async () => {
    await browser.get(b.url, '/')
    const [, k, p] = fields(browser.sid)
    return k === key && p !== primary
  }, 5000, 'the cookie to be reissued without the dead node')
  const [, sameKey, newPrimary, newBackup, version] = fields(browser.sid)
  t.equal(sameKey, key, 'same key')
  t.equal(newPrimary, backup, 'the backup took over as primary')
  t.equal(newBackup, third.address, 'and the next live node became the backup')
  t.equal(version, '1', 'relocation keeps the version')
  t.equal(await third.copy(key as string), `1 ${b64({ v: 1 })}`, 'a new backup copy was written')

  // Changes while the node is gone.
  await browser.get(b.url, '/?set={"v":2}')
  await browser.get(a.url, '/?set={"v":3}')
  t.match(browser.sid, /~3~[^~]+$/)

  // The dead node returns with its stale version-1 copy (as after a partition), then empty.
  await dead.start()
  await dead.set(`sess:${key}`, oldCopy as string)
  const seen = new Set<number>()
  for (let i = 0; i < 40; i++) seen.add((await browser.get(i % 2 === 0 ? a.url : b.url, '/')).body.session.v)
  t.same([...seen], [3], 'with the stale copy back: only version 3 is ever served')
  await until(async () => await dead.get(`sess:${key}`) === undefined, 10_000, 'the copy left behind to be deleted')
  t.pass('the copy left behind on the returned node was deleted (an old cookie naming it finds nothing)')
  await dead.stop('SIGKILL')
  await dead.start()
  seen.clear()
  for (let i = 0; i < 40; i++) seen.add((await browser.get(topo.lb.url, '/')).body.session.v)
  t.same([...seen], [3], 'with the node back empty: only version 3')
})

// Issue 3, scenario 5: every memcached node down.
t.test('all memcached nodes down: sessions keep working locally, and are written again when nodes return', async (t) => {
  const topo = await startTopology({ memcached: 2, apps: 2, lb: 'haproxy', sidecar: { write: 'async' } })
  t.teardown(() => topo.close())
  const [a] = topo.sidecars
  if (a === undefined) throw new Error('a sidecar expected')
  const browser = new Browser()
  await browser.get(a.url, '/?set={"n":0}')
  await a.flushed()
  for (const m of topo.memcached) await m.stop('SIGKILL')
  let failures = 0
  for (let i = 0; i < 10; i++) if ((await browser.get(a.url, '/?incr=n')).status !== 200) failures++
  t.equal(failures, 0, 'no request failed while memcached was down')
  t.equal((await browser.get(a.url, '/')).body.session.n, 10, 'served from the local cache')
  for (const m of topo.memcached) await m.start()
  const [, key] = fields(browser.sid)
  // On its primary, or on the other node if that one answered first (then it takes the
  // primary's role: the cookie names it from the next response on).
  const stored = async (): Promise<boolean> => (await Promise.all(topo.memcached.map(async (m) => await m.copy(key as string)))).some((c) => c?.startsWith('11 ') === true)
  await until(stored, 15_000, 'the changed session to be written again')
  t.pass('version 11 (n = 10) reached memcached after the outage: no silent divergence')
  const other = topo.sidecars[1]
  t.equal((await browser.get(other?.url ?? '', '/')).body.session.n, 10, 'the other node sees it')
})
