import t from 'tap'
import { Browser, q } from '../helpers/client.js'
import { until } from '../../harness/index.js'
import { startTopology } from '../helpers/topology.js'

// Issue 11, part 6 (SPEC "Operations": a deploy fails no request and loses no acknowledged
// update). Every sidecar in turn gets SIGTERM, exits and is started again, while users keep
// changing their sessions through HAProxy run from deploy/haproxy/haproxy.cfg (health checks on
// /readyz). The test's copy checks every 100 ms and takes a server out after 2 failed checks
// (the file: every second, after 2), so shutdown.delayMs is 1.5 s here instead of 5 s.

const DELAY_MS = 1500
const USERS = 24
/** Items per user at most: the session stays well under session.maxBytes (8192). */
const MAX_ITEMS = 900

interface User {
  readonly name: string
  readonly browser: Browser
  /** Items whose change was answered 2xx: acknowledged, so they must never be lost. */
  readonly acknowledged: string[]
}

t.test('a rolling restart of every sidecar under load through HAProxy: 0 non-2xx responses, 0 lost updates', async (t) => {
  const topo = await startTopology({
    memcached: 2,
    apps: 3,
    lb: 'haproxy',
    haproxyCheck: 'inter 100 fall 2 rise 1',
    sidecar: { write: 'sync', extra: { shutdown: { delayMs: DELAY_MS } } }
  })
  t.teardown(() => topo.close())
  const lb = topo.lb.url

  const users: User[] = Array.from({ length: USERS }, (_, i) => ({ name: `user-${i}`, browser: new Browser(), acknowledged: [] }))
  for (const u of users) {
    const login = await u.browser.get(lb, `/?set=${q({ user: u.name, items: {} })}`)
    t.equal(login.status, 200, `${u.name} logged in`)
  }

  // Each user appends unique items, one request at a time, for as long as the restart lasts.
  let running = true
  let answered = 0
  const failures: string[] = []
  const load = users.map(async (u) => {
    // eslint-disable-next-line no-unmodified-loop-condition -- `running` is cleared by the test body while this loop awaits
    for (let n = 1; running && n <= MAX_ITEMS; n++) {
      const item = n.toString(36)
      try {
        const res = await u.browser.get(lb, `/?merge=${q({ items: { [item]: 1 } })}`)
        if (res.status >= 200 && res.status < 300) u.acknowledged.push(item)
        else failures.push(`${u.name}, item ${item}: ${res.status} ${JSON.stringify(res.body).slice(0, 120)}`)
      } catch (err) {
        failures.push(`${u.name}, item ${item}: ${(err as Error).message}`)
      }
      answered++
    }
  })

  await until(() => answered >= USERS * 5, 10_000, 'the load to be under way')
  for (const [i, sidecar] of topo.sidecars.entries()) {
    const before = answered
    t.equal(await sidecar.kill('SIGTERM'), 0, `${sidecar.name}: SIGTERM, delay, drain, exit 0`)
    t.ok(answered > before, `requests went on while ${sidecar.name} stopped (${answered - before} answered)`)
    await sidecar.start()
    // Back in HAProxy's rotation before the next one stops: its app receives requests again.
    const app = topo.apps[i]
    const seen = app?.seen.length ?? 0
    await until(() => (app?.seen.length ?? 0) > seen, 10_000, `HAProxy to route to ${sidecar.name} again`)
  }
  running = false
  await Promise.all(load)

  t.same(failures, [], 'every response was 2xx: no refused connection, no 503 from a draining sidecar or from HAProxy')
  t.ok(users.every((u) => u.acknowledged.length < MAX_ITEMS), 'the load lasted the whole restart (no user ran out of items)')
  let acknowledged = 0
  const lost: string[] = []
  for (const u of users) {
    const { status, body } = await u.browser.get(lb, '/')
    t.equal(status, 200)
    const items = (body.session?.items ?? {}) as Record<string, unknown>
    acknowledged += u.acknowledged.length
    for (const item of u.acknowledged) if (items[item] !== 1) lost.push(`${u.name}: ${item}`)
    t.equal(body.session?.user, u.name, `${u.name} is still logged in`)
  }
  t.same(lost, [], `0 lost updates of ${acknowledged} acknowledged`)
})
