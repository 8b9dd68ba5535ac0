import t from 'tap'
import { MemcachedProcess } from '../helpers/memcached.js'
import { TestApp, b64 } from '../helpers/upstream.js'
import { startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { Browser, keyOf, versionOf } from '../helpers/client.js'
import type { Sidecar } from '../../src/sidecar.js'
import { monotonicClock, until } from '../../harness/index.js'

async function setup (t: any, overrides: Record<string, Record<string, unknown>> = {}, nodeCount = 1) {
  const nodes = await Promise.all(Array.from({ length: nodeCount }, async () => await MemcachedProcess.start()))
  t.teardown(async () => { for (const m of nodes) await m.stop() })
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const sidecar = await startTestSidecar(testConfig(app.url, nodes.map((m) => m.address), overrides))
  t.teardown(() => sidecar.close())
  return { nodes, m: nodes[0] as MemcachedProcess, app, sidecar, browser: new Browser() }
}

t.test('reads never write: an unchanged session costs no store command until revalidation is due', async (t) => {
  const { m, sidecar, browser } = await setup(t)
  await browser.get(sidecar.url, '/?set={"a":1}')
  await sidecar.store.flush(2000)
  const before = await m.stats()
  for (let i = 0; i < 50; i++) await browser.get(sidecar.url, '/')
  const after = await m.stats()
  t.equal(after.cmd_set - before.cmd_set, 0, 'no set, add or cas')
  t.equal(after.cmd_get - before.cmd_get, 0, 'no get')
  t.equal(after.cmd_touch - before.cmd_touch, 0, 'no touch within cache.revalidateMs')
  const same = await browser.get(sidecar.url, '/?set={"a":1}')
  t.equal(same.status, 200)
  t.match(browser.sid, /~1~[^~]+$/, 'setting identical data is not a change: version stays 1')
  await sidecar.store.flush(2000)
  t.equal((await m.stats()).cmd_set - after.cmd_set, 0, 'and nothing was written')
})

t.test('a touch, not a rewrite, keeps an accessed session alive, once per cache.revalidateMs', async (t) => {
  // cache.revalidateMs runs on the sidecar's monotonic clock, which the test moves: 50 ms of it
  // per request, so about every 6th request is due (one touch per 300 ms over 3 s: about 10),
  // however long a request takes on a busy machine. (Not exactly 10: a CI run counted 9.) Real time passes too (50 ms between requests), so the copy's
  // 2 s TTL in memcached runs out unless the touches renew it.
  const clock = monotonicClock()
  t.teardown(() => clock.restore())
  const { m, sidecar, browser } = await setup(t, { session: { idleTimeout: 2 }, cache: { revalidateMs: 300 } })
  clock.freeze()
  await browser.get(sidecar.url, '/?set={"a":1}')
  await sidecar.store.flush(2000)
  const before = await m.stats()
  let served = 0
  const requests = 60
  // Keep using the session for longer than its 2 s TTL: touches must keep the copy alive.
  for (let i = 0; i < requests; i++) {
    clock.advance(50)
    if ((await browser.get(sidecar.url, '/')).body.session?.a === 1) served++
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.equal(served, requests, 'every request had the session')
  const after = await m.stats()
  const touches = after.cmd_touch - before.cmd_touch
  t.ok(touches >= 5 && touches <= 11, `about one touch per 300 ms over 3 s (got ${touches})`)
  t.equal(after.cmd_set - before.cmd_set, 0, 'no rewrites')
  t.match(await m.copy(keyOf(browser.sid)), /^1 /, 'the copy outlived its 2 s TTL thanks to the touches')
})

t.test('a session destroyed elsewhere stops being served after cache.revalidateMs', async (t) => {
  const { m, sidecar, browser } = await setup(t, { cache: { revalidateMs: 200 } })
  await browser.get(sidecar.url, '/?set={"a":1}')
  await sidecar.store.flush(2000)
  // What another sidecar's logout leaves: a tombstone at the next version.
  await m.putCopy(keyOf(browser.sid), 2, 'e30', 'sess:', true)
  const replay = browser.sid
  await until(async () => (await browser.get(sidecar.url, '/')).body.session === undefined, 3000, 'the session to be gone')
  t.equal(browser.sid, undefined, 'the cookie of a destroyed session is cleared')
  const again = new Browser()
  again.cookies.set('sid', replay as string)
  t.equal((await again.get(sidecar.url, '/')).body.session, undefined, 'replaying the old cookie gets nothing')
})

t.test('a verified cookie whose key exists nowhere (and on no sidecar) is never adopted', async (t) => {
  const first = await setup(t)
  await first.browser.get(first.sidecar.url, '/?set={"a":1}')
  const sid = first.browser.sid as string
  await first.sidecar.store.flush(2000)
  await first.m.delete(`sess:${keyOf(sid)}`)
  const other = await startTestSidecar(testConfig(first.app.url, [first.m.address]))
  t.teardown(() => other.close())
  const browser = new Browser()
  browser.cookies.set('sid', sid)
  const res = await browser.get(other.url, '/?set={"b":2}')
  t.equal(res.body.session, undefined)
  t.not(keyOf(browser.sid), keyOf(sid), 'the app\'s new data got a freshly minted key')
})

t.test('a write never replaces a stored copy of an equal or higher version', async (t) => {
  const { m, sidecar, browser } = await setup(t)
  await browser.get(sidecar.url, '/?set={"a":1}')
  await sidecar.store.flush(2000)
  const key = keyOf(browser.sid)
  // Another node got ahead meanwhile: version 7 with other data.
  await m.putCopy(key, 7, b64({ a: 1, fromOther: true }))
  await browser.get(sidecar.url, '/?merge={"mine":true}')
  await sidecar.store.flush(2000)
  t.equal(await m.copy(key), `8 ${b64({ a: 1, fromOther: true, mine: true })}`, 'the merge was re-applied to version 7, giving 8')
  t.same((await browser.get(sidecar.url, '/')).body.session, { a: 1, fromOther: true, mine: true }, 'the local copy followed')

  await m.putCopy(key, 20, b64({ replaced: 'no' }))
  await browser.get(sidecar.url, '/?set={"replaced":"yes"}')
  await sidecar.store.flush(2000)
  t.equal(await m.copy(key), `21 ${b64({ replaced: 'yes' })}`, 'a set wins with a version above the stored one')
})

t.test('write: sync holds the response until memcached has the copy', async (t) => {
  const { m, sidecar, browser } = await setup(t, { memcached: { write: 'sync' } })
  await browser.get(sidecar.url, '/?set={"a":1}')
  t.equal(await m.copy(keyOf(browser.sid)), `1 ${b64({ a: 1 })}`, 'stored before the response arrived (no flush)')
  await browser.get(sidecar.url, '/?merge={"b":2}')
  t.equal(await m.copy(keyOf(browser.sid)), `2 ${b64({ a: 1, b: 2 })}`)
})

t.test('replicas: 2 keeps a backup copy on a second node and names it in the cookie', async (t) => {
  const { nodes, sidecar, browser } = await setup(t, {}, 3)
  await browser.get(sidecar.url, '/?set={"a":1}')
  await sidecar.store.flush(2000)
  const parts = (browser.sid as string).split('~')
  t.equal(parts.length, 6, '1~key~primary~backup~version~mac')
  const holders = []
  for (const n of nodes) if (await n.get(`sess:${parts[1]}`) !== undefined) holders.push(n.address)
  t.same(holders.sort(), [parts[2], parts[3]].sort(), 'exactly the primary and the backup hold it')
})

/** Every command a node answered: reads, stores (add, cas, set), touches and deletes. */
const commands = (s: Record<string, number>): number => (s.cmd_get ?? 0) + (s.cmd_set ?? 0) + (s.cmd_touch ?? 0) + (s.delete_hits ?? 0) + (s.delete_misses ?? 0)

t.test('a change costs two memcached commands when nothing else changed the session: one store on the primary, one on the backup, no read', async (t) => {
  const { nodes, sidecar, browser } = await setup(t, { memcached: { write: 'sync' } }, 2)
  await browser.get(sidecar.url, '/?set={"n":0}')
  await sidecar.store.flush(2000)
  const before = await Promise.all(nodes.map(async (m) => await m.stats()))
  const CHANGES = 20
  for (let n = 1; n <= CHANGES; n++) await browser.get(sidecar.url, `/?merge={"n":${n}}`)
  await sidecar.store.flush(2000)
  const after = await Promise.all(nodes.map(async (m) => await m.stats()))
  const total = nodes.reduce((sum, _m, i) => sum + commands(after[i] as Record<string, number>) - commands(before[i] as Record<string, number>), 0)
  const reads = nodes.reduce((sum, _m, i) => sum + (after[i]?.cmd_get ?? 0) - (before[i]?.cmd_get ?? 0), 0)
  t.equal(total, 2 * CHANGES, `${CHANGES} changes cost ${total} commands`)
  t.equal(reads, 0, 'none of them a read')
  const [, , primary, backup] = (browser.sid as string).split('~')
  for (const address of [primary, backup]) {
    const node = nodes.find((m) => m.address === address)
    t.match(await node?.copy(keyOf(browser.sid)), new RegExp(`^${CHANGES + 1} ${b64({ n: CHANGES })}$`), `${String(address)} holds the last change`)
  }
})

t.test('a change after another sidecar changed the session reads the copy first and keeps both changes', async (t) => {
  const { m, sidecar, browser } = await setup(t, { memcached: { write: 'sync' } })
  await browser.get(sidecar.url, '/?set={"mine":0}')
  await sidecar.store.flush(2000)
  const key = keyOf(browser.sid)
  // Another sidecar's change, stored on the primary behind this sidecar's back (version 2).
  await m.putCopy(key, 2, b64({ mine: 0, theirs: 1 }))
  const before = await m.stats()
  await browser.get(sidecar.url, '/?merge={"mine":1}')
  await sidecar.store.flush(2000)
  const after = await m.stats()
  t.equal(after.cmd_get - before.cmd_get, 1, 'the refused store is followed by one read')
  t.match(await m.copy(key), new RegExp(`^3 ${b64({ mine: 1, theirs: 1 })}$`), 'the change is applied to the other sidecar\'s copy: both kept')
})

t.test('after memcached restarts, a CAS learnt before is not trusted: the restarted server counts CAS values from 1 again', async (t) => {
  const { m, sidecar, browser } = await setup(t, { memcached: { write: 'sync' } })
  await browser.get(sidecar.url, '/?set={"mine":0}')
  await sidecar.store.flush(2000)
  const key = keyOf(browser.sid)
  await m.stop('SIGKILL')
  await m.start() // empty, its CAS counter back at 1
  // Another sidecar stores the session there first: the item gets CAS 1 again, the value this
  // sidecar learnt from its own add before the restart.
  await m.putCopy(key, 5, b64({ mine: 0, theirs: 1 }))
  await browser.get(sidecar.url, '/?merge={"mine":1}')
  await sidecar.store.flush(2000)
  t.match(await m.copy(key), new RegExp(`^6 ${b64({ mine: 1, theirs: 1 })}$`), 'the change is applied to the copy memcached holds now: both kept')
})

t.test('a backup that does not answer holds up neither a sync response nor the next change: the primary orders them, the backup gets the newest when it answers', { timeout: 15_000 }, async (t) => {
  // memcached.timeoutMs far beyond the test's own timeout: a response or a change that waited
  // for the paused backup would not arrive before the test fails.
  const { nodes, sidecar, browser } = await setup(t, { memcached: { write: 'sync', timeoutMs: 30_000 } }, 2)
  await browser.get(sidecar.url, '/?set={"n":0}')
  await sidecar.store.flush(2000)
  const [, key, primaryAddress, backupAddress] = (browser.sid as string).split('~')
  const primary = nodes.find((m) => m.address === primaryAddress) as MemcachedProcess
  const backup = nodes.find((m) => m.address === backupAddress) as MemcachedProcess
  process.kill(backup.pid as number, 'SIGSTOP')
  t.teardown(() => { if (backup.pid !== undefined) process.kill(backup.pid, 'SIGCONT') })
  const CHANGES = 5
  for (let n = 1; n <= CHANGES; n++) {
    const res = await browser.get(sidecar.url, `/?merge={"n":${n}}`)
    t.equal(res.status, 200)
    t.match(await primary.copy(key as string), new RegExp(`^${n + 1} ${b64({ n })}$`), `change ${n} is on the primary when it is answered (sync)`)
  }
  t.equal(sidecar.store.local(key as string)?.backup, backupAddress, 'the paused backup has not failed yet (no timeout): the cookie still names it')
  t.ok(await sidecar.store.flush(0) > 0, 'its copies are still on their way')
  process.kill(backup.pid as number, 'SIGCONT')
  t.equal(await sidecar.store.flush(5000), 0, 'every write settles once the backup answers')
  t.match(await backup.copy(key as string), new RegExp(`^${CHANGES + 1} ${b64({ n: CHANGES })}$`), 'the backup holds the newest version, whatever order its copies landed in')
})

t.test('a login whose backup does not answer is answered once its primary has it (write: sync): the backup\'s early add is not waited for', { timeout: 15_000 }, async (t) => {
  const { nodes, sidecar } = await setup(t, { memcached: { write: 'sync', timeoutMs: 30_000 } }, 2)
  const [first, paused] = nodes as [MemcachedProcess, MemcachedProcess]
  process.kill(paused.pid as number, 'SIGSTOP')
  t.teardown(() => { if (paused.pid !== undefined) process.kill(paused.pid, 'SIGCONT') })
  // A new key's nodes are drawn by rendezvous hashing: of 16 logins, those whose primary is
  // the answering node (all but 1 in 65,536 runs have one) must not wait for the paused backup.
  const answered = await new Promise<string>((resolve) => {
    for (let i = 0; i < 16; i++) {
      const browser = new Browser()
      browser.get(sidecar.url, '/?set={"u":1}').then(() => {
        if (browser.sid?.split('~')[2] === first.address) resolve(browser.sid)
      }, () => {})
    }
  })
  t.equal(answered.split('~')[3], paused.address, 'its cookie names the paused node as the backup')
  t.match(await first.copy(keyOf(answered)), new RegExp(`^1 ${b64({ u: 1 })}$`), 'the primary holds it (sync)')
})

t.test('a change that finds its own result already on the node it fails over to is not applied again: no second copy of the next version for another sidecar\'s acknowledged change to lose to', { timeout: 30_000 }, async (t) => {
  // Chaos seed 7 (write: async): the primary was killed; sidecar-1's change (v81) timed out on
  // the backup, which it marked down, although the store landed there; sidecar-2 read it there
  // and copied it (a restore: the primary failed) to the third node; sidecar-1's change then
  // went to that third node, found its own result at v81 and applied itself again as v82. The
  // user's next change on sidecar-2 (v82) went to the backup, and its backup copy stood on the
  // third node's v82: two different v82s, and sidecar-1, holding its own v82, served it for
  // the cookie of sidecar-2's: an acknowledged update lost. Here: versions 2 and 3.
  const nodes = await Promise.all([1, 2, 3].map(async () => await MemcachedProcess.start()))
  t.teardown(async () => { for (const m of nodes) { if (m.pid !== undefined) process.kill(m.pid, 'SIGCONT'); await m.stop() } })
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const start = async (): Promise<Sidecar> => {
    const s = await startTestSidecar(testConfig(app.url, nodes.map((m) => m.address), { memcached: { timeoutMs: 1500 }, cache: { revalidateMs: 60_000 } }))
    t.teardown(() => s.close())
    return s
  }
  const one = await start()
  const two = await start()
  const user = new Browser()
  await user.get(one.url, '/login?set={"user":"ada"}')
  await one.store.flush(2000)
  const [, key, primaryAddress, backupAddress] = (user.sid as string).split('~') as [string, string, string, string]
  const primary = nodes.find((m) => m.address === primaryAddress) as MemcachedProcess
  const backup = nodes.find((m) => m.address === backupAddress) as MemcachedProcess
  const third = nodes.find((m) => m !== primary && m !== backup) as MemcachedProcess

  await primary.stop()
  process.kill(backup.pid as number, 'SIGSTOP')
  // Sidecar one's change: the primary refuses it, the backup does not answer (its store waits
  // in the socket), then it goes to the third node.
  t.equal((await user.get(one.url, '/?merge={"j":1}')).status, 200)
  t.equal(versionOf(user.sid), 2, 'the change is acknowledged at version 2')
  // Before the backup's timeout: what sidecar two's restore left on the third node in the
  // chaos run, the change's own result.
  await third.putCopy(key, 2, b64({ user: 'ada', j: 1 }))
  t.ok(one.store.pendingWrites > 0, 'the change is still waiting for the backup')
  await one.store.flush(5000)
  process.kill(backup.pid as number, 'SIGCONT')
  await until(async () => (await backup.copy(key)) === `2 ${b64({ user: 'ada', j: 1 })}`, 3000, 'the store sent to the paused backup to land')
  t.match(await third.copy(key), new RegExp(`^2 ${b64({ user: 'ada', j: 1 })}$`), 'the third node holds the change once, at the version its cookie names: not applied again as version 3')

  // The user's next change goes to sidecar two, which has the backup answering: acknowledged at version 3.
  const res = await user.get(two.url, '/?merge={"k":1}')
  t.same(res.body.session, { user: 'ada', j: 1 }, 'sidecar two serves version 2')
  t.equal(versionOf(user.sid), 3)
  await two.store.flush(5000)
  for (const m of [backup, third]) {
    t.match(await m.copy(key), new RegExp(`^3 ${b64({ user: 'ada', j: 1, k: 1 })}$`), `${m === backup ? 'the backup' : 'the third node'} holds version 3 with the acknowledged change`)
  }
  const back = await user.get(one.url, '/')
  t.same(back.body.session, { user: 'ada', j: 1, k: 1 }, 'sidecar one serves the acknowledged change for the cookie of version 3')
})
