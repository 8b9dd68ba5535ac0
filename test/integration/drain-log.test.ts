import t from 'tap'
import { Agent } from 'undici'
import { Browser, keyOf, q } from '../helpers/client.js'
import { until } from '../../harness/index.js'
import { LogCapture, startStack } from '../helpers/sidecar.js'
import { b64 } from '../helpers/upstream.js'

// Issue 11, part 3 (README "Operations"): a drain ends with one `stopped` line: how many
// session writes it flushed, how many were left, how long it took.

const USERS = 5

/** Sessions created while memcached is down: their writes wait, one per session. */
async function pendingLogins (sidecarUrl: string): Promise<Browser[]> {
  const users = Array.from({ length: USERS }, () => new Browser())
  for (const [i, user] of users.entries()) await user.get(sidecarUrl, `/login?set=${q({ user: i })}`)
  return users
}

const stoppedLines = (logs: LogCapture): Array<Record<string, unknown>> => logs.entries.filter((e) => e.msg === 'stopped')

t.test('a drain that flushes every write ends with `stopped`: writes flushed, none left, its duration', async (t) => {
  const { m, sidecar: start } = await startStack(t)
  const logs = new LogCapture()
  const sidecar = await start(t, { log: { level: 'info' } }, { logs })
  await m.stop('SIGKILL')
  const users = await pendingLogins(sidecar.url)
  await until(() => sidecar.store.pendingWrites === USERS, 5000, `${USERS} writes pending`)
  await m.start()

  const started = performance.now()
  t.equal(await sidecar.close(), 0, 'close: nothing left')
  const took = performance.now() - started
  const stopped = stoppedLines(logs)
  t.equal(stopped.length, 1, 'one stopped line')
  t.match(stopped[0], { level: 30, writesFlushed: USERS, writesLeft: 0 }, `${USERS} writes flushed, 0 left`)
  const durationMs = Number(stopped[0]?.durationMs)
  t.ok(durationMs >= 0 && durationMs <= took + 1, `the drain's duration in ms (${durationMs}, close took ${Math.round(took)})`)
  t.equal(logs.entries.at(-1)?.msg, 'stopped', 'the last line logged')
  for (const [i, user] of users.entries()) t.equal(await m.copy(keyOf(user.sid)), `1 ${b64({ user: i })}`, `session ${i} is in memcached`)
})

t.test('a drain that runs out of shutdown.timeoutMs ends with `stopped`: none flushed, the writes left', async (t) => {
  const { m, sidecar: start } = await startStack(t)
  const logs = new LogCapture()
  const sidecar = await start(t, { log: { level: 'info' }, shutdown: { timeoutMs: 300 } }, { logs })
  await m.stop('SIGKILL')
  await pendingLogins(sidecar.url)
  await until(() => sidecar.store.pendingWrites === USERS, 5000, `${USERS} writes pending`)

  t.equal(await sidecar.close(), USERS, `close: ${USERS} left`)
  t.ok(logs.entries.some((e) => e.code === 'SIDECAR_ERR_SHUTDOWN_PENDING_WRITES'), 'the shutdown timeout is logged with its code')
  t.match(logs.entries.at(-1), { msg: 'stopped', writesFlushed: 0, writesLeft: USERS }, 'and the last line says none flushed, all left')
  t.equal(stoppedLines(logs).length, 1, 'once')
  t.ok(Number(logs.entries.at(-1)?.durationMs) >= 300, 'after shutdown.timeoutMs')
})

t.test('a request longer than shutdown.timeoutMs is cut, and the drain says so: an error line, requestsCut in `stopped`, not a clean exit', async (t) => {
  const { app, sidecar: start } = await startStack(t)
  const logs = new LogCapture()
  const sidecar = await start(t, { log: { level: 'info' }, shutdown: { timeoutMs: 300 } }, { logs })
  const seen = app.seen.length
  const slow = fetch(`${sidecar.url}/slow?delay=3000`).then((r) => r.status, (err: Error) => err.name)
  await until(() => app.seen.length > seen, 5000, 'the slow request at the app')
  t.equal(await sidecar.close(), 1, 'close: one thing left undone')
  t.not(await slow, 200, 'the client did not get its answer')
  t.match(logs.entries.find((e) => e.code === 'SIDECAR_ERR_SHUTDOWN_REQUESTS_CUT'), { level: 50, requests: 1 }, 'one error line with its code')
  t.match(logs.entries.at(-1), { msg: 'stopped', writesLeft: 0, requestsCut: 1 }, 'and `stopped` counts it')
})

t.test('during shutdown.delayMs every request is served as usual, with Connection: close, so the client\'s next one takes a new connection (which the load balancer sends elsewhere)', async (t) => {
  const { sidecar: start } = await startStack(t)
  const sidecar = await start(t, { shutdown: { delayMs: 1500 } })
  const agent = new Agent({ keepAliveTimeout: 10_000 })
  t.teardown(() => agent.close())
  const before = await agentRequest(agent, sidecar.url)
  t.equal(before.headers.connection, 'keep-alive', 'ready: the connection is kept')
  const closing = sidecar.close()
  const during = await agentRequest(agent, sidecar.url)
  t.equal(during.statusCode, 200, 'draining: still served')
  t.equal(during.headers.connection, 'close', 'with Connection: close')
  await closing
})

async function agentRequest (agent: Agent, url: string): Promise<{ statusCode: number, headers: Record<string, string | string[] | undefined> }> {
  const res = await agent.request({ origin: url, path: '/', method: 'GET' })
  await res.body.dump()
  return { statusCode: res.statusCode, headers: res.headers }
}
