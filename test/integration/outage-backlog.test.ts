import t from 'tap'
import { Browser, keyOf, q } from '../helpers/client.js'
import { until } from '../../harness/index.js'
import { LogCapture, startStack } from '../helpers/sidecar.js'
import { b64 } from '../helpers/upstream.js'

// SPEC, "Storage and consistency": pending writes are bounded (at most one per key) and drain
// at a paced rate when nodes return; logs say when writes start failing and when they drain,
// not every failure.

const SESSIONS = 60
const CHANGES = 4

const failureLines = (logs: LogCapture): Array<Record<string, unknown>> => logs.entries.filter((e) => e.code === 'SIDECAR_ERR_SESSION_WRITE_FAILED')
const drainLines = (logs: LogCapture): Array<Record<string, unknown>> => logs.entries.filter((e) => /reach memcached again/.test(String(e.msg)))

t.test('an outage under changes keeps one pending write per session, logs once, and every last change lands when memcached returns', async (t) => {
  const { m, sidecar: start } = await startStack(t)
  const logs = new LogCapture()
  const sidecar = await start(t, { log: { level: 'info' }, memcached: { timeoutMs: 500 } }, { logs })
  const users = Array.from({ length: SESSIONS }, () => new Browser())
  for (const [i, user] of users.entries()) await user.get(sidecar.url, `/login?set=${q({ user: i })}`)
  await sidecar.store.flush(2000)

  await m.stop('SIGKILL')
  for (let n = 1; n <= CHANGES; n++) {
    await Promise.all(users.map(async (user) => await user.get(sidecar.url, `/?merge=${q({ n })}`)))
  }
  const pending = sidecar.store.pendingWrites
  t.ok(pending <= SESSIONS, `${SESSIONS * CHANGES} changes to ${SESSIONS} sessions leave at most one pending write per session (${pending})`)
  t.equal(failureLines(logs).length, 1, 'one log line when writes start failing, not one per write')

  await m.start() // back, empty
  t.equal(await sidecar.store.flush(10_000), 0, 'nothing left pending once memcached is back')
  for (const [i, user] of users.entries()) {
    const stored = await m.copy(keyOf(user.sid))
    if (stored?.endsWith(b64({ user: i, n: CHANGES })) !== true) t.fail(`session ${i}: memcached holds ${String(stored)}`)
  }
  t.pass(`all ${SESSIONS} sessions hold their last change in memcached`)
  await until(() => drainLines(logs).length > 0, 3000, 'the drain to be logged')
  const [drained] = drainLines(logs)
  t.equal(drainLines(logs).length, 1, 'one log line when they drain')
  t.ok(Number(drained?.peakPending) <= SESSIONS, `with the peak backlog (${String(drained?.peakPending)}), one per session at most`)
  t.equal(failureLines(logs).length, 1, 'and no further failure lines')
})

t.test('the backlog of an outage is bounded by cache.maxBytes: the oldest writes are dropped, counted and logged once', async (t) => {
  const { m, sidecar: start } = await startStack(t)
  const logs = new LogCapture()
  // ~1 KB sessions, a 16 KB bound: a few dozen sessions overflow it.
  const sidecar = await start(t, { log: { level: 'info' }, cache: { maxBytes: 16 * 1024 } }, { logs })
  const profile = 'p'.repeat(1000)
  await m.stop('SIGKILL')
  const users = Array.from({ length: 40 }, () => new Browser())
  for (const [i, user] of users.entries()) await user.get(sidecar.url, `/login?set=${q({ user: i, profile })}`)
  const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text()
  const dropped = Number(/^sidecar_dropped_writes_total (\d+)/m.exec(metrics)?.[1])
  t.ok(dropped > 0, `writes beyond cache.maxBytes were dropped and counted (${dropped})`)
  t.ok(sidecar.store.pendingWrites < users.length, `the backlog stays bounded (${sidecar.store.pendingWrites} of ${users.length} kept)`)
  const errors = logs.entries.filter((e) => /exceed cache.maxBytes/.test(String(e.msg)))
  t.equal(errors.length, 1, 'logged once per outage')
  t.notOk(logs.text.includes(profile), 'no session data in the logs')
  await m.start()
  t.equal(await sidecar.store.flush(10_000), 0, 'the writes still kept drain when memcached returns')
  const last = users.at(-1) as Browser
  t.match(await m.copy(keyOf(last.sid)), /^1 /, 'the newest session was kept and stored')
})

t.test('a logout during an outage leaves a tombstone pending: flush() waits for memcached without starving the process, and the tombstone lands when it returns', async (t) => {
  const { m, sidecar: start } = await startStack(t)
  const sidecar = await start(t, { memcached: { timeoutMs: 500 } })
  const user = new Browser()
  await user.get(sidecar.url, `/login?set=${q({ user: 'alice' })}`)
  const key = keyOf(user.sid)
  await sidecar.store.flush(2000)

  await m.stop('SIGKILL')
  await user.get(sidecar.url, '/?destroy=1')
  t.ok(sidecar.store.pendingWrites > 0, 'the tombstone the node could not take is kept')
  // While flush() waits, the process's timers (and sockets: the probe that sees the node
  // return) keep running; a flush spinning on microtasks would hold this one back.
  let fired = false
  setTimeout(() => { fired = true }, 20)
  const left = await sidecar.store.flush(300)
  t.ok(left > 0, 'flush() returns at its deadline with the tombstone still pending')
  t.ok(fired, 'a 20 ms timer fired during a 300 ms flush()')

  await m.start() // back, empty
  t.equal(await sidecar.store.flush(10_000), 0, 'nothing left pending once memcached is back')
  t.match(await m.copy(key), /^\d+ ended/, 'memcached holds the tombstone')
})
