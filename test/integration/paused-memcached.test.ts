import { readFile } from 'node:fs/promises'
import t, { type Test } from 'tap'
import type { Sidecar } from '../../src/sidecar.js'
import { Browser, keyOf, q, versionOf } from '../helpers/client.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { until } from '../../harness/index.js'
import { startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { TestApp, b64 } from '../helpers/upstream.js'

// Found by an adversarial review (slow, paused and replayed memcached nodes); each case failed
// before its fix. SIGSTOP pauses a node: it loses nothing, it just does not answer.

interface Fleet { readonly nodes: MemcachedProcess[], readonly app: TestApp, sidecar: (memcached?: Record<string, unknown>) => Promise<Sidecar> }

async function fleet (t: Test, nodeCount = 2, settings: Record<string, Record<string, unknown>> = {}): Promise<Fleet> {
  const nodes: MemcachedProcess[] = []
  for (let i = 0; i < nodeCount; i++) {
    const m = await MemcachedProcess.start()
    // A paused node must be resumed before it can be killed cleanly.
    t.teardown(async () => { if (m.pid !== undefined) process.kill(m.pid, 'SIGCONT'); await m.stop() })
    nodes.push(m)
  }
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  return {
    nodes,
    app,
    sidecar: async (memcached = {}) => {
      // memcached.timeoutMs 1000: a loaded machine (the full suite) must not mark a live node down here.
      const s = await startTestSidecar(testConfig(app.url, nodes.map((m) => m.address), { cache: { revalidateMs: 300 }, shutdown: { timeoutMs: 500 }, ...settings, memcached: { timeoutMs: 1000, ...settings.memcached, ...memcached } }))
      t.teardown(() => s.close())
      return s
    }
  }
}

/** A session logged out on sidecar `a` that sidecar `holder` had cached before its end; `old` is its cookie. */
async function endedWhileCached (t: Test): Promise<Fleet & { a: Sidecar, holder: Sidecar, old: string }> {
  const f = await fleet(t, 2)
  const a = await f.sidecar()
  const holder = await f.sidecar()
  const { user, old } = await loggedIn(a, { user: 'ada' })
  t.same((await user.get(holder.url, '/')).body.session, { user: 'ada' }, 'a sidecar caches the session')
  await user.get(a.url, '/logout?destroy=1')
  await a.store.flush(2000)
  return { ...f, a, holder, old }
}

/** A user logged in on `s`, the login stored: `old` is its cookie. */
async function loggedIn (s: Sidecar, data: Record<string, unknown>): Promise<{ user: Browser, old: string }> {
  const user = new Browser()
  await user.get(s.url, `/login?set=${q(data)}`)
  await s.store.flush(2000)
  return { user, old: user.sid as string }
}

/** Stops a node and returns once the kernel reports it stopped (a signal is delivered asynchronously). */
const pause = async (m: MemcachedProcess): Promise<void> => {
  process.kill(m.pid as number, 'SIGSTOP')
  await until(async () => (await readFile(`/proc/${m.pid as number}/stat`, 'latin1')).split(') ')[1]?.startsWith('T') === true, 2000, `${m.address} to stop`)
}
const resume = (m: MemcachedProcess): void => { process.kill(m.pid as number, 'SIGCONT') }
const addressesIn = (sid: string | undefined): string[] => (sid ?? '').split('~').slice(2, -2)

t.test('a session that lost its backup while a node was paused gets one again, and survives its primary restarting empty', async (t) => {
  const { nodes, sidecar } = await fleet(t)
  const a = await sidecar()
  const user = new Browser()
  await user.get(a.url, `/login?set=${q({ user: 'ada' })}`)
  await a.store.flush(2000)
  const [primary, backup] = addressesIn(user.sid)
  t.equal(addressesIn(user.sid).length, 2, 'two copies (replicas 2)')
  const backupNode = nodes.find((m) => m.address === backup) as MemcachedProcess
  const primaryNode = nodes.find((m) => m.address === primary) as MemcachedProcess

  await pause(backupNode)
  // A change finds the backup not answering and marks it down; the next ones are placed
  // without it (there is no third node to take its place), and a later cookie says so.
  await until(async () => {
    await user.get(a.url, `/?merge=${q({ n: versionOf(user.sid) })}`)
    await a.store.flush(3000)
    return addressesIn(user.sid).length === 1
  }, 5000, 'the cookie to lose its backup')
  t.same(addressesIn(user.sid), [primary], 'while the backup is down the cookie names the primary only')
  resume(backupNode)
  // Past the node's backoff (at most 2 s), the next change places a backup again.
  await until(async () => {
    await user.get(a.url, `/?merge=${q({ n: versionOf(user.sid) })}`)
    await a.store.flush(2000)
    return addressesIn(user.sid).length === 2
  }, 6000, 'a backup again')
  t.equal(addressesIn(user.sid).length, 2, 'a later change gives the session a backup again')

  await primaryNode.stop()
  await primaryNode.start()
  const b = await sidecar()
  t.same((await user.get(b.url, '/')).body.session?.user, 'ada', 'another sidecar finds the session after its primary restarted empty')
})

t.test('a local copy older than the cookie is not served when memcached cannot answer: the app is told the session is unavailable, its change refused', async (t) => {
  const { nodes, app, sidecar } = await fleet(t)
  const a = await sidecar()
  const b = await sidecar()
  const user = new Browser()
  await user.get(a.url, `/login?set=${q({ n: 1 })}`)
  await user.get(b.url, '/') // B caches version 1
  await user.get(a.url, `/?merge=${q({ n: 2 })}`)
  await a.store.flush(2000)
  t.equal(versionOf(user.sid), 2, 'the cookie is at version 2, B holds version 1')
  for (const m of nodes) await pause(m)
  const res = await user.get(b.url, `/?merge=${q({ n: 3 })}`)
  for (const m of nodes) resume(m)
  t.equal(res.status, 200)
  t.equal(app.last?.headers['x-session-unavailable'], '1', 'the app is told the session could not be loaded')
  t.equal(res.body.session, undefined, 'and does not get version 1\'s stale data')
  t.equal(versionOf(user.sid), 2, 'the cookie is unchanged (the change computed from nothing was refused)')
  await until(async () => (await user.get(b.url, '/')).body.session?.n === 2, 5000, 'B to serve version 2 once memcached answers')
  t.pass('once memcached answers, B serves version 2')
})

t.test('a login while the session could not be loaded ends the key the cookie names, on every sidecar', async (t) => {
  // Found by an adversarial helper: a login (Regenerate + Set) on a sidecar that could not load
  // the session minted a new key and left the old one live for good: a shared browser's
  // previous user, or a fixated key, stayed logged in.
  const { nodes, app, sidecar } = await fleet(t)
  const a = await sidecar()
  const b = await sidecar()
  const { user, old } = await loggedIn(a, { user: 'olduser' })
  for (const m of nodes) await pause(m)
  const login = await user.get(b.url, `/login?regenerate=1&set=${q({ user: 'newuser' })}`)
  for (const m of nodes) resume(m)
  t.equal(app.last?.headers['x-session-unavailable'], '1', 'the login\'s request could not load the session')
  t.equal(login.status, 200)
  t.not(keyOf(user.sid), keyOf(old), 'the login has a new key')
  await b.store.flush(5000)
  for (const m of nodes) t.match(await m.copy(keyOf(old)), /^\d+ ended$/, `${m.address} holds the old key's tombstone`)
  for (const [name, s] of [['A, which cached it', a], ['B, which logged in', b]] as const) {
    const replay = new Browser()
    replay.cookies.set('sid', old)
    await until(async () => (await replay.get(s.url, '/')).body.session === undefined, 5000, `${name} to stop serving the old key`)
    t.pass(`${name} no longer serves the old key`)
  }
  t.same((await user.get(a.url, '/')).body.session, { user: 'newuser' }, 'the new key is the session, on the other sidecar too')
})

t.test('a login with no data while the session could not be loaded ends it, as a logout', async (t) => {
  const { nodes, sidecar } = await fleet(t)
  const a = await sidecar()
  const { user, old } = await loggedIn(a, { user: 'olduser' })
  const b = await sidecar()
  for (const m of nodes) await pause(m)
  await user.get(b.url, '/login?regenerate=1')
  for (const m of nodes) resume(m)
  t.equal(user.sid, undefined, 'the cookie is cleared: there is no session left')
  await b.store.flush(5000)
  const replay = new Browser()
  replay.cookies.set('sid', old)
  await until(async () => (await replay.get(a.url, '/')).body.session === undefined, 5000, 'A to stop serving the old key')
  t.pass('the sidecar that cached it stops serving it')
})

t.test('a stale live copy on the primary does not serve a session whose backup holds a tombstone', async (t) => {
  const { nodes, sidecar } = await fleet(t)
  const a = await sidecar()
  const { user, old } = await loggedIn(a, { user: 'ada' })
  const key = keyOf(old)
  const [primary] = addressesIn(old)
  await user.get(a.url, '/logout?destroy=1')
  await a.store.flush(2000)
  for (const m of nodes) t.match(await m.copy(key), /^\d+ ended$/, `${m.address} holds the tombstone`)
  // The primary gets a live copy back (a replay by someone who can write to memcached, or a
  // node that missed the tombstone while paused and came back holding its old copy).
  await (nodes.find((m) => m.address === primary) as MemcachedProcess).putCopy(key, 5, b64({ user: 'ada' }))
  for (let i = 0; i < 3; i++) {
    const cold = await sidecar()
    const replay = new Browser()
    replay.cookies.set('sid', old)
    t.equal((await replay.get(cold.url, '/')).body.session, undefined, `cold sidecar ${i + 1}: the backup's tombstone wins over the primary's live copy`)
  }
})

t.test('a login (Merge + Regenerate) carries over a change another sidecar stored on the old key meanwhile', async (t) => {
  for (const write of ['sync', 'async'] as const) {
    const { sidecar } = await fleet(t, 2, { memcached: { write } })
    const a = await sidecar()
    const b = await sidecar()
    const user = new Browser()
    await user.get(a.url, `/?set=${q({ cart: ['book'] })}`)
    await a.store.flush(2000)
    const anonymous = user.sid as string
    // B stores a change; A, which never saw it, gets the login with the cookie from before
    // it (two requests of one browser in flight at once).
    await user.get(b.url, `/?merge=${q({ item: 1 })}`)
    await b.store.flush(2000)
    const racing = new Browser()
    racing.cookies.set('sid', anonymous)
    await racing.get(a.url, `/login?merge=${q({ user: 'ada' })}&regenerate=1`)
    await a.store.flush(2000)
    t.not(keyOf(racing.sid), keyOf(anonymous), `${write}: a new key`)
    const fresh = await sidecar()
    t.same((await racing.get(fresh.url, '/')).body.session, { cart: ['book'], item: 1, user: 'ada' }, `${write}: the new key holds the login and B's change`)
  }
})

t.test('a node back from a restart, empty, gets the tombstones written to it again: a logout survives it with replicas 1', async (t) => {
  const { nodes, sidecar } = await fleet(t, 1, { cache: { revalidateMs: 3000 } })
  const m = nodes[0] as MemcachedProcess
  const a = await sidecar()
  const b = await sidecar()
  const { user, old } = await loggedIn(a, { user: 'ada' })
  t.same((await user.get(b.url, '/')).body.session, { user: 'ada' }, 'B holds the session')
  await user.get(a.url, '/logout?destroy=1')
  t.match(await m.copy(keyOf(old)), /^\d+ ended$/, 'the tombstone is stored')

  await m.stop()
  // A notices the outage (a write fails), so it knows to check the node when it answers.
  await new Browser().get(a.url, `/login?set=${q({ user: 'bob' })}`)
  await m.start()
  await until(async () => /^\d+ ended$/.test(await m.copy(keyOf(old)) ?? ''), 8000, 'the tombstone to be written again')
  t.pass('A wrote the tombstone again once the node answered')
  const replay = new Browser()
  replay.cookies.set('sid', old)
  await until(async () => (await replay.get(b.url, '/')).body.session === undefined, 5000, 'B to stop serving the session')
  t.pass('B, which still held the session, does not restore it: it finds the tombstone')
  t.match(await m.copy(keyOf(old)), /^\d+ ended$/, 'the key stays ended')
})

t.test('a read that finds a tombstone writes it again to a node of the key that lost it: a second restart leaves the end known', async (t) => {
  const { nodes, sidecar, a, holder, old } = await endedWhileCached(t)
  const [primary, backup] = addressesIn(old).map((address) => nodes.find((m) => m.address === address) as MemcachedProcess)
  await a.close() // the destroying sidecar is gone: it cannot write its tombstones again
  await primary?.stop()
  await primary?.start()
  t.equal(await primary?.copy(keyOf(old)), undefined, 'the primary is back empty')

  const replay = new Browser()
  replay.cookies.set('sid', old)
  const cold = await sidecar()
  t.equal((await replay.get(cold.url, '/')).body.session, undefined, 'a cold sidecar finds the backup\'s tombstone')
  await until(async () => /^\d+ ended$/.test(await primary?.copy(keyOf(old)) ?? ''), 5000, 'the tombstone to be written to the primary again')
  t.pass('and writes it to the primary again')
  await backup?.stop()
  await backup?.start()
  await until(async () => (await replay.get(holder.url, '/')).body.session === undefined, 3000, 'the caching sidecar to find the end')
  t.pass('after the backup restarts empty too, the sidecar that cached the session still finds its end')
  t.match(await primary?.copy(keyOf(old)), /^\d+ ended$/, 'no live copy was stored again')
})

// A memcached restart closes the sidecars' connections. That alone (no command failing, no
// request for the session) must lead the sidecars to write back what the node lost, within
// about cache.revalidateMs: otherwise the session's other node restarting before its next
// request leaves a live session only in a cache, and an end no trace at all.

t.test('a node restarted empty while idle gets the tombstones of the sidecar that ended them written again, with no request in between', async (t) => {
  const { nodes, sidecar } = await fleet(t, 1)
  const m = nodes[0] as MemcachedProcess
  const a = await sidecar()
  const user = new Browser()
  await user.get(a.url, `/login?set=${q({ user: 'ada' })}`)
  const old = user.sid as string
  await user.get(a.url, '/logout?destroy=1')
  t.match(await m.copy(keyOf(old)), /^\d+ ended$/, 'the tombstone is stored')
  await m.stop()
  await m.start()
  t.equal(await m.copy(keyOf(old)), undefined, 'the node is back empty')
  await until(async () => /^\d+ ended$/.test(await m.copy(keyOf(old)) ?? ''), 5000, 'the tombstone to be written again')
  t.pass('the ending sidecar noticed the restart by itself and wrote the tombstone again')
})

t.test('an end survives both nodes restarting empty one after the other, after the ending sidecar is gone, while another sidecar caches the session', async (t) => {
  const { nodes, a, holder, old } = await endedWhileCached(t)
  const key = keyOf(old)
  await a.close() // the ending sidecar is gone with what it knew
  const [primary, backup] = addressesIn(old).map((address) => nodes.find((m) => m.address === address) as MemcachedProcess)
  for (const node of [primary, backup] as MemcachedProcess[]) {
    await node.stop()
    await node.start()
    t.equal(await node.copy(key), undefined, `${node.address} is back empty`)
    await until(async () => /^\d+ ended$/.test(await node.copy(key) ?? ''), 5000, `the tombstone on ${node.address} again`)
    t.pass(`the caching sidecar found the end on the other node and wrote it to ${node.address} again`)
  }
  const replay = new Browser()
  replay.cookies.set('sid', old)
  t.equal((await replay.get(holder.url, '/')).body.session, undefined, 'the old cookie gets no session from the sidecar that cached it')
  t.equal(holder.store.local(key), undefined, 'which no longer holds it')
})

t.test('a live session survives both its nodes restarting empty one after the other while its user is idle', async (t) => {
  const { nodes, sidecar } = await fleet(t, 2)
  const a = await sidecar()
  const user = new Browser()
  await user.get(a.url, `/login?set=${q({ user: 'ada' })}`)
  await a.store.flush(2000)
  const key = keyOf(user.sid)
  for (const address of addressesIn(user.sid)) {
    const node = nodes.find((m) => m.address === address) as MemcachedProcess
    await node.stop()
    await node.start()
    await until(async () => /^\d+ [\w-]+$/.test(await node.copy(key) ?? '') && !(await node.copy(key) as string).endsWith(' ended'), 5000, `the live copy on ${address} again`)
    t.pass(`the sidecar holding the session stored it on ${address} again, with no request`)
  }
  await a.close()
  const b = await sidecar()
  t.same((await user.get(b.url, '/')).body.session, { user: 'ada' }, 'another sidecar, which never held it, loads it from memcached')
})

t.test('only an older copy answers while the node holding the newest is paused: the session is unavailable, not served stale and changed above the newest', async (t) => {
  const { nodes, app, sidecar } = await fleet(t)
  const a = await sidecar()
  const user = new Browser()
  await user.get(a.url, `/login?set=${q({ user: 'ada' })}`)
  await user.get(a.url, `/?merge=${q({ cart: 1 })}`)
  await a.store.flush(2000)
  const key = keyOf(user.sid)
  const [primary, backup] = addressesIn(user.sid).map((address) => nodes.find((m) => m.address === address) as MemcachedProcess)
  // The backup still holds the version before the change (its write was on its way).
  await (backup as MemcachedProcess).putCopy(key, versionOf(user.sid) - 1, b64({ user: 'ada' }))
  await pause(primary as MemcachedProcess)
  t.teardown(() => { resume(primary as MemcachedProcess) })
  const b = await sidecar()
  const res = await user.get(b.url, `/?merge=${q({ coupon: 'x' })}`)
  resume(primary as MemcachedProcess)
  t.equal(app.last?.headers['x-session-unavailable'], '1', 'the app is told the session could not be loaded')
  t.equal(res.body.session, undefined, 'it does not get the older copy')
  t.equal(keyOf(user.sid), key, 'the cookie is kept')
  await until(async () => (await user.get(b.url, '/')).body.session?.cart === 1, 5000, 'the newest version once the primary answers')
  t.same((await user.get(b.url, '/')).body.session, { user: 'ada', cart: 1 }, 'nothing was written above it')
})

t.test('a login stored early on its backup while its primary hangs is not written again above a change made on it meanwhile', async (t) => {
  const { nodes, sidecar } = await fleet(t, 2, { memcached: { write: 'async' } })
  // A's writes wait 3 s on a node that does not answer; B gives up on it after 500 ms.
  const a = await sidecar({ timeoutMs: 3000 })
  const b = await sidecar({ timeoutMs: 500 })
  // Logins while one node is paused, until one is placed on it as its primary (by key: one
  // in two), before A's commands to it time out and mark it down.
  const primary = nodes[0] as MemcachedProcess
  await pause(primary)
  t.teardown(() => { resume(primary) })
  let user = new Browser()
  for (let i = 0; i < 12; i++) {
    user = new Browser()
    await user.get(a.url, `/login?set=${q({ user: 'ada' })}`)
    if (addressesIn(user.sid)[0] === primary.address) break
  }
  t.equal(addressesIn(user.sid)[0], primary.address, 'a login placed on the paused node')
  // B reads the login from the backup (its early add) and stores a change there.
  const changed = await user.get(b.url, `/?merge=${q({ cart: 1 })}`)
  t.same(changed.body.session, { user: 'ada' }, 'B found the login on the backup')
  await b.store.flush(5000)
  // A's write gives up on the paused primary and moves to the backup, which takes its role.
  await a.store.flush(8000)
  resume(primary)
  const c = await sidecar()
  t.same((await user.get(c.url, '/')).body.session, { user: 'ada', cart: 1 }, 'the change made on the login is kept')
})

t.test('an idle session that lost its backup while a node was down gets it back when the node answers again, with no request in between', async (t) => {
  const { nodes, sidecar } = await fleet(t)
  const a = await sidecar()
  const user = new Browser()
  await user.get(a.url, `/login?set=${q({ user: 'ada' })}`)
  await a.store.flush(2000)
  const [primary, backup] = addressesIn(user.sid)
  const backupNode = nodes.find((m) => m.address === backup) as MemcachedProcess
  const primaryNode = nodes.find((m) => m.address === primary) as MemcachedProcess
  await pause(backupNode)
  await until(async () => {
    await user.get(a.url, `/?merge=${q({ n: versionOf(user.sid) })}`)
    await a.store.flush(3000)
    return addressesIn(user.sid).length === 1
  }, 5000, 'the cookie to lose its backup')
  const version = versionOf(user.sid)
  const key = keyOf(user.sid)
  resume(backupNode)
  // No request from the user: the sidecar notices the node answering again (its probe, within
  // the 2 s backoff cap) and gives the session its backup back.
  await until(async () => (await backupNode.copy(key))?.startsWith(`${version} `) === true, 8000, `the returned node to hold version ${version}`)
  t.pass(`the node back from its pause holds the session's current version ${version}`)
  const next = await user.get(a.url, '/')
  t.same(addressesIn(user.sid), [primary, backup], 'the next response\'s cookie names the backup again')
  t.equal(next.body.session?.user, 'ada')
  await primaryNode.stop()
  await primaryNode.start()
  const b = await sidecar()
  t.same((await user.get(b.url, '/')).body.session?.user, 'ada', 'another sidecar finds the session on the backup after its primary restarted empty')
})

t.test('a sidecar that moved a session off a paused node, after the cookie naming it was issued, finds the end written to the nodes that cookie names once the node both share is lost', async (t) => {
  // Chaos seed 8 (write async, within the guarantee): sidecar-1 moved u6's session off its
  // paused primary onto a third node after the response whose cookie still named the primary
  // and the backup; a login on another sidecar with that cookie wrote the old key's tombstones
  // to those two only. The backup was then lost, and sidecar-1's revalidation, asking only the
  // nodes it had moved the session to (the lost backup and the third node, with no tombstone),
  // served the ended session to a replay of that cookie.
  const { nodes, sidecar } = await fleet(t, 3)
  const holder = await sidecar()
  const ender = await sidecar()
  const { user, old } = await loggedIn(holder, { user: 'ada' })
  const key = keyOf(old)
  const [primary, backup] = addressesIn(old).map((address) => nodes.find((m) => m.address === address) as MemcachedProcess) as [MemcachedProcess, MemcachedProcess]
  const third = nodes.find((m) => m !== primary && m !== backup) as MemcachedProcess

  await pause(primary)
  t.teardown(() => { resume(primary) })
  // The holder's change finds the primary not answering: the session moves to the backup
  // (primary now) and the third node. `old` stands for a cookie issued before the move.
  await until(async () => {
    await user.get(holder.url, `/?merge=${q({ n: versionOf(user.sid) })}`)
    await holder.store.flush(3000)
    return addressesIn(user.sid)[0] === backup.address
  }, 8000, 'the session to move off the paused primary')
  t.same(addressesIn(user.sid), [backup.address, third.address], 'the holder moved the session to the backup and the third node')
  resume(primary)
  await until(async () => await primary.copy(key) === undefined, 8000, 'the copy left on the primary to be deleted')
  t.pass('once the primary answers, the holder deletes the copy it left there')

  // A login on another sidecar with the cookie naming the primary and the backup: the old key
  // gets its tombstones there. The third node, which that cookie does not name, gets none.
  const login = new Browser()
  login.cookies.set('sid', old)
  await login.get(ender.url, `/?regenerate=1&set=${q({ user: 'ada', login: 2 })}`)
  await ender.store.flush(3000)
  t.not(keyOf(login.sid), key, 'the login has a new key')
  for (const node of [primary, backup]) t.match(await node.copy(key), /^\d+ ended$/, `${node.address} holds the old key's tombstone`)
  t.match(await third.copy(key), /^\d+ (?!ended)/, 'the third node still holds a live copy')

  // The backup, the one node both sets share, is lost; the holder's check is due.
  await backup.stop()
  await new Promise((resolve) => setTimeout(resolve, 600))
  const replay = new Browser()
  replay.cookies.set('sid', old)
  t.equal((await replay.get(holder.url, '/')).body.session, undefined, 'the holder does not serve the ended session to a replay of that cookie')
  t.equal(holder.store.local(key), undefined, 'it no longer holds it')
  await until(async () => /^\d+ ended$/.test(await third.copy(key) ?? ''), 5000, 'the tombstone on the third node')
  t.pass('and writes the tombstone to the node it had moved the session to')
})
