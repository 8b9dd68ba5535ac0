import { isDeepStrictEqual } from 'node:util'
import t, { type Test } from 'tap'
import type { Sidecar } from '../../src/sidecar.js'
import { Browser, keyOf, q, versionOf } from '../helpers/client.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { until } from '../../harness/index.js'
import { LogCapture, startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { TestApp } from '../helpers/upstream.js'

// SPEC, "Storage and consistency": memcached is the backup of sessions that live in the
// sidecars' memory, never the judge of whether a session exists. A miss is not a destroy: a
// sidecar holding a live local copy whose stored copies are gone (a node restarted empty, an
// eviction) keeps serving it and stores it again.

const REVALIDATE_MS = 400

interface Fleet {
  readonly nodes: MemcachedProcess[]
  readonly app: TestApp
  readonly sidecars: Sidecar[]
  /** What each sidecar logged (level info), by index. */
  readonly logs: LogCapture[]
}

/** Real memcached nodes on 127.0.0.1 and in-process sidecars sharing them, all torn down with `t`. */
async function fleet (t: Test, options: { nodes: number, sidecars: number, memoryMb?: number }): Promise<Fleet> {
  const nodes: MemcachedProcess[] = []
  for (let i = 0; i < options.nodes; i++) {
    const m = await MemcachedProcess.start('127.0.0.1', undefined, options.memoryMb)
    t.teardown(() => m.stop())
    nodes.push(m)
  }
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const sidecars: Sidecar[] = []
  const logs: LogCapture[] = []
  for (let i = 0; i < options.sidecars; i++) {
    const capture = new LogCapture()
    const config = testConfig(app.url, nodes.map((m) => m.address), {
      cache: { revalidateMs: REVALIDATE_MS },
      // Generous: these cases are about lost copies, not slow nodes (a loaded machine must not mark a node down).
      memcached: { timeoutMs: 1000 },
      shutdown: { timeoutMs: 1000 },
      log: { level: 'info' }
    })
    const sidecar = await startTestSidecar(config, { destination: capture })
    t.teardown(() => sidecar.close())
    sidecars.push(sidecar)
    logs.push(capture)
  }
  return { nodes, app, sidecars, logs }
}

/** Cookie fields: `1~key~primary~backup~version~mac`. */
const fields = (sid: string | undefined): string[] => (sid ?? '').split('~')

/** The stored copy's data, decoded, from MemcachedProcess.copy's `<version> <base64 data>`. */
const dataOf = (copy: string | undefined): unknown => {
  const data = copy?.split(' ')[1]
  if (data === undefined || data === 'ended') return undefined
  return JSON.parse(Buffer.from(data, 'base64url').toString('utf8'))
}

/** A bounded poll, as a value to assert on: true once `check` holds, false when `ms` pass first. */
async function eventually (check: () => Promise<boolean>, ms: number, what: string): Promise<boolean> {
  return await until(check, ms, what).then(() => true, () => false)
}

/** These cases are about time passing: the sidecars' next request must be a revalidation. */
async function letTimePass (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

async function flushAll (sidecars: Sidecar[]): Promise<void> {
  for (const s of sidecars) await s.store.flush(3000)
}

t.test('one memcached node (of 2) restarted empty: nobody is logged out on either sidecar, a change made right after is kept, the copies return to the node', async (t) => {
  const { nodes, sidecars } = await fleet(t, { nodes: 2, sidecars: 2 })
  const [a, b] = sidecars as [Sidecar, Sidecar]
  // Round-robin: each user logs in on one sidecar, the next request lands on the other, so
  // both sidecars hold every session.
  const users = Array.from({ length: 8 }, () => new Browser())
  for (const [i, user] of users.entries()) {
    await user.get((sidecars[i % 2] as Sidecar).url, `/?set=${q({ user: `u${i}` })}`)
    await user.get((sidecars[(i + 1) % 2] as Sidecar).url, '/')
  }
  await flushAll(sidecars)
  const changer = users[0] as Browser
  const [, key = '', primary] = fields(changer.sid)
  // The node restarted is the primary of the session that changes (and of some others).
  const restarted = nodes.find((m) => m.address === primary) as MemcachedProcess
  const survivor = nodes.find((m) => m !== restarted) as MemcachedProcess
  let onBoth = 0
  for (const user of users) if (await restarted.copy(keyOf(user.sid)) !== undefined && await survivor.copy(keyOf(user.sid)) !== undefined) onBoth++
  t.equal(onBoth, users.length, 'before: every session has a copy on both nodes (replicas 2)')

  // Two requests of one user in flight together, one on each sidecar: the one on A left with
  // the cookie from before B answered (a second tab, or a request already on its way).
  const secondTab = new Browser()
  for (const [name, value] of changer.cookies) secondTab.cookies.set(name, value)
  await changer.get(b.url, `/?merge=${q({ b: 1 })}`)
  await b.store.flush(3000)
  t.same(dataOf(await restarted.copy(key)), { user: 'u0', b: 1 }, 'B\'s change reached both nodes before the restart')

  await restarted.stop()
  await restarted.start()
  t.equal((await restarted.stats()).curr_items ?? 0, 0, 'the node came back empty')

  // The change right after the restart, on A.
  const late = await secondTab.get(a.url, `/?merge=${q({ a: 1 })}`)
  t.equal(late.body.session?.user, 'u0', 'the request right after the restart had the session')

  await letTimePass(REVALIDATE_MS + 150)
  let loggedOut = 0
  for (const [i, user] of users.entries()) {
    for (const s of sidecars) if ((await user.get(s.url, '/')).body.session?.user !== `u${i}`) loggedOut++
  }
  t.equal(loggedOut, 0, `0 of ${users.length * 2} user-sidecar pairs logged out after cache.revalidateMs`)
  const both = { user: 'u0', b: 1, a: 1 }
  t.same((await secondTab.get(b.url, '/')).body.session, both, 'B serves the change A made right after the restart (and its own)')

  await flushAll(sidecars)
  const stored = await restarted.copy(key)
  t.same(dataOf(stored), both, 'memcached holds both changes on the primary')
  t.same(dataOf(await survivor.copy(key)), both, 'and on the backup')
  t.ok(Number(stored?.split(' ')[0]) >= versionOf(secondTab.sid), `at a version (${String(stored?.split(' ')[0])}) >= the cookie's (${versionOf(secondTab.sid)})`)

  let back = 0
  const restored = await eventually(async () => {
    back = 0
    for (const [i, user] of users.entries()) if (isDeepStrictEqual(dataOf(await restarted.copy(keyOf(user.sid))), i === 0 ? both : { user: `u${i}` })) back++
    return back === users.length
  }, 5000, 'every session copy back on the restarted node')
  t.ok(restored, `every session's copy is back on the restarted node (${back} of ${users.length})`)
})

t.test('both nodes restarted empty within cache.revalidateMs (rolling restart): 0 of 10 idle users logged out, copies restored on both nodes', async (t) => {
  const { nodes, sidecars } = await fleet(t, { nodes: 2, sidecars: 2 })
  const [a, b] = sidecars as [Sidecar, Sidecar]
  const idle = Array.from({ length: 10 }, () => new Browser())
  const holder = (i: number): Sidecar => sidecars[i % 2] as Sidecar
  for (const [i, user] of idle.entries()) await user.get(holder(i).url, `/?set=${q({ user: `idle${i}` })}`)
  const active = new Browser()
  await active.get(a.url, `/?set=${q({ n: 0 })}`)
  await flushAll(sidecars)

  const [first, second] = nodes as [MemcachedProcess, MemcachedProcess]
  const startedAt = Date.now()
  await first.stop()
  await first.start()
  // Traffic goes on between the two restarts.
  for (let i = 0; i < 4; i++) await active.get((i % 2 === 0 ? b : a).url, '/?incr=n')
  await second.stop()
  await second.start()
  t.comment(`second node restarted ${Date.now() - startedAt} ms after the first (cache.revalidateMs ${REVALIDATE_MS})`)
  // Both are new processes, started empty (the sidecars may have stored copies there again
  // already: they notice a restart by its closed connections).
  for (const m of nodes) t.ok(((await m.stats()).uptime ?? Infinity) <= Math.ceil((Date.now() - startedAt) / 1000) + 1, `${m.address} was restarted during the test`)

  await letTimePass(REVALIDATE_MS + 150)
  let loggedOut = 0
  for (const [i, user] of idle.entries()) if ((await user.get(holder(i).url, '/')).body.session?.user !== `idle${i}`) loggedOut++
  t.equal(loggedOut, 0, `0 of ${idle.length} idle users logged out on the sidecar holding them`)
  t.same((await active.get(a.url, '/')).body.session, { n: 4 }, 'the user active during the restarts kept every change')

  await flushAll(sidecars)
  const restored = await eventually(async () => {
    for (const [i, user] of idle.entries()) {
      for (const m of nodes) if (!isDeepStrictEqual(dataOf(await m.copy(keyOf(user.sid))), { user: `idle${i}` })) return false
    }
    return true
  }, 5000, 'the idle users\' copies on both nodes')
  t.ok(restored, 'every idle user\'s copy is stored again on both nodes')
  // The sidecar that never held them finds them in memcached.
  let missing = 0
  for (const [i, user] of idle.entries()) if ((await user.get((sidecars[(i + 1) % 2] as Sidecar).url, '/')).body.session?.user !== `idle${i}`) missing++
  t.equal(missing, 0, 'the other sidecar, which never held them, reads every one from memcached')
})

t.test('session copies evicted by memcached: each user\'s next request still has its session, and its copy is stored again', async (t) => {
  // memcached's smallest cache (-m 2: its item size limit must stay under half of it).
  const { nodes, sidecars } = await fleet(t, { nodes: 1, sidecars: 2, memoryMb: 2 })
  const m = nodes[0] as MemcachedProcess
  const users = Array.from({ length: 40 }, () => new Browser())
  const holder = (i: number): Sidecar => sidecars[i % 2] as Sidecar
  // ~1.5 KB sessions: the 2 MB fill up after about a thousand filler keys.
  const profile = 'p'.repeat(1500)
  const loggedInAt = Date.now()
  for (const [i, user] of users.entries()) await user.get(holder(i).url, `/?set=${q({ user: `u${i}`, profile })}`)
  await flushAll(sidecars)

  // Filler keys of the sessions' size (same slab class): memcached evicts the least recently
  // used items, the idle sessions first.
  const sample = await m.get(`sess:${keyOf(users[0]?.sid)}`)
  t.ok(sample !== undefined, 'the sessions were stored')
  const filler = 'f'.repeat(sample?.length ?? 2000)
  let written = 0
  for (; written < 5000; written++) {
    await m.set(`fill:${String(written).padStart(22, '0')}`, filler)
    if (written % 50 === 49 && ((await m.stats()).evictions ?? 0) >= 3 * users.length) break
  }
  let evicted = 0
  for (const user of users) if (await m.copy(keyOf(user.sid)) === undefined) evicted++
  t.comment(`${written} filler keys written, evictions ${(await m.stats()).evictions ?? 0}`)
  t.ok(evicted >= users.length * 0.9, `memcached evicted most session copies (${evicted} of ${users.length})`)

  await letTimePass(Math.max(0, loggedInAt + REVALIDATE_MS + 150 - Date.now()))
  let loggedOut = 0
  for (const [i, user] of users.entries()) if ((await user.get(holder(i).url, '/')).body.session?.user !== `u${i}`) loggedOut++
  t.equal(loggedOut, 0, `0 of ${users.length} users logged out on the sidecar holding them`)

  await flushAll(sidecars)
  let storedAgain = 0
  const restored = await eventually(async () => {
    storedAgain = 0
    for (const [i, user] of users.entries()) if ((dataOf(await m.copy(keyOf(user.sid))) as { user?: string } | undefined)?.user === `u${i}`) storedAgain++
    return storedAgain === users.length
  }, 5000, 'every session copy stored again')
  t.ok(restored, `every session's copy is stored again (${storedAgain} of ${users.length})`)
})

t.test('a login (Set + Regenerate) during a full memcached outage survives memcached returning empty: served on the same sidecar, then on another, never reported destroyed', async (t) => {
  const { nodes, sidecars, logs } = await fleet(t, { nodes: 2, sidecars: 2 })
  const [a, b] = sidecars as [Sidecar, Sidecar]
  const user = new Browser()
  // The anonymous session a login replaces (regenerate: a new key against session fixation).
  await user.get(a.url, `/?set=${q({ cart: ['book'] })}`)
  const anonymous = user.sid
  await flushAll(sidecars)

  for (const m of nodes) await m.stop()
  const login = await user.get(a.url, `/?set=${q({ user: 'alice' })}&regenerate=1`)
  t.equal(login.status, 200, 'the login is answered while every memcached node is down')
  const key = keyOf(user.sid)
  t.not(key, keyOf(anonymous), 'with a new key')
  t.same((await user.get(a.url, '/')).body.session, { user: 'alice' }, 'served by A from its local copy during the outage')

  for (const m of nodes) await m.start()
  t.equal(await a.store.flush(8000), 0, 'A has no write left pending once memcached is back')
  const after = await user.get(a.url, '/')
  t.same(after.body.session, { user: 'alice' }, 'still logged in on A after memcached returned empty')
  t.equal(keyOf(user.sid), key, 'the cookie still names the new key (never cleared)')

  const [, , primary] = fields(user.sid)
  const node = nodes.find((m) => m.address === primary)
  const written = await eventually(async () => isDeepStrictEqual(dataOf(await node?.copy(key)), { user: 'alice' }), 5000, 'the new session in memcached')
  t.ok(written, 'the new session was written to memcached once it came back')
  t.same((await user.get(b.url, '/')).body.session, { user: 'alice' }, 'B, which never held it, finds it in memcached')

  const reported = logs.flatMap((l) => l.entries).filter((e) => /destroyed|gone|dropped/i.test(String(e.msg)))
  t.same(reported.map((e) => e.msg), [], 'no sidecar reported the session as destroyed or gone')

  const replay = new Browser()
  replay.cookies.set('sid', anonymous as string)
  t.equal((await replay.get(b.url, '/')).body.session, undefined, 'the pre-login session is not served again')
})
