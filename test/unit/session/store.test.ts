import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { until } from '../../../harness/index.js'
import { EmbeddedMemcached } from '../../../demo/embedded-memcached.js'
import type { MemcachedNode } from '../../../src/memcached/node.js'
import { NodePool } from '../../../src/memcached/pool.js'
import { Metrics } from '../../../src/metrics.js'
import type { CookieFields } from '../../../src/session/cookie.js'
import type { SessionObject } from '../../../src/session/data.js'
import type { SessionRecord, StoredCopy } from '../../../src/session/record.js'
import { CopySeal } from '../../../src/session/sealed-copy.js'
import { SessionStore } from '../../../src/session/store.js'

// The store's rules (SPEC "Storage and consistency") against an in-process memcached, with a
// fake monotonic clock for the store and a fake wall clock for memcached's TTLs: nothing here
// waits for time to pass.

const REVALIDATE_MS = 1000
const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url')
const data = (header: string | undefined): unknown => header === undefined ? undefined : JSON.parse(Buffer.from(header, 'base64url').toString())

interface Rig {
  readonly store: SessionStore
  readonly pool: NodePool
  readonly metrics: Metrics
  readonly clock: { now: number }
  /** A read's deadline on the store's clock: memcached.timeoutMs (500) from now, as the proxy passes it. */
  deadline: () => number
  readonly memcached: EmbeddedMemcached
  /** What memcached holds for a key, opened; undefined for a miss. */
  stored: (key: string) => Promise<StoredCopy | undefined>
  /** Stores a copy as another sidecar of the fleet would. */
  put: (key: string, copy: StoredCopy) => Promise<void>
  /** Drops a key, as an eviction or a restart would. */
  evict: (key: string) => Promise<void>
  /** Another sidecar's store on the same memcached. */
  sibling: () => SessionStore
  /** The in-process memcached at an address. */
  server: (address: string) => EmbeddedMemcached
}

async function rig (t: Test, options: { realClock?: boolean, revalidateMs?: number, backup?: boolean, spare?: boolean } = {}): Promise<Rig> {
  const wall = { now: Date.now() }
  const memcached = new EmbeddedMemcached({ now: () => wall.now })
  const port = await memcached.listen()
  t.teardown(() => memcached.close())
  const address = `127.0.0.1:${port}`
  const nodes = [address]
  const others: EmbeddedMemcached[] = []
  // A backup (replicas 2), and a spare node to move a session to when one of its nodes fails.
  for (let i = 0; i < (options.spare === true ? 2 : options.backup === true ? 1 : 0); i++) {
    const other = new EmbeddedMemcached({ now: () => wall.now })
    nodes.push(`127.0.0.1:${await other.listen()}`)
    others.push(other)
    t.teardown(() => other.close())
  }
  // At debug, into nothing: the session trace's lines are built on every path these tests take.
  const log = pino({ level: 'debug' }, { write () {} })
  const metrics = new Metrics(false)
  const pool = new NodePool({ nodes, replicas: nodes.length >= 2 ? 2 : 1, allow: [], timeoutMs: 500, ttl: 1800, log, ops: metrics })
  t.teardown(() => pool.close())
  const seal = new CopySeal(['store-unit-test-secret-0123'], true)
  const clock = { now: 0 }
  const store = new SessionStore({ pool, keyPrefix: 'sess:', seal, idleTimeout: 1800, revalidateMs: options.revalidateMs ?? REVALIDATE_MS, cacheMaxBytes: 1 << 20, maxBytes: 8192, log, metrics, ...(options.realClock === true ? {} : { now: () => clock.now }) })
  t.teardown(() => store.close())
  const sibling = (): SessionStore => {
    const theirs = new NodePool({ nodes, replicas: nodes.length >= 2 ? 2 : 1, allow: [], timeoutMs: 500, ttl: 1800, log, ops: new Metrics(false) })
    const other = new SessionStore({ pool: theirs, keyPrefix: 'sess:', seal, idleTimeout: 1800, revalidateMs: options.revalidateMs ?? REVALIDATE_MS, cacheMaxBytes: 1 << 20, maxBytes: 8192, log, metrics: new Metrics(false), ...(options.realClock === true ? {} : { now: () => clock.now }) })
    t.teardown(() => { other.close(); theirs.close() })
    return other
  }
  const node = pool.node(address)
  if (node === undefined) throw new Error('node expected')
  return {
    store,
    pool,
    metrics,
    clock,
    deadline: () => (options.realClock === true ? performance.now() : clock.now) + 500,
    memcached,
    stored: async (key) => {
      const hit = await node.gets(`sess:${key}`)
      return hit === undefined ? undefined : seal.open(`sess:${key}`, hit.value)
    },
    evict: async (key) => { await node.delete(`sess:${key}`) },
    sibling,
    server: (at) => {
      const found = [memcached, ...others].find((m) => m.address === at)
      if (found === undefined) throw new Error(`no memcached at ${at}`)
      return found
    },
    put: async (key, copy) => {
      const hit = await node.gets(`sess:${key}`)
      const value = seal.seal(`sess:${key}`, copy)
      if (!(hit === undefined ? await node.add(`sess:${key}`, value) : await node.cas(`sess:${key}`, value, hit.cas))) throw new Error('put failed')
    }
  }
}

/** A session created through the store, stored, and the cookie its client holds. */
async function login (r: Rig, session: SessionObject): Promise<CookieFields> {
  const applied = r.store.apply(undefined, 0, { set: session, merge: undefined, regenerate: false })
  if (applied === undefined) throw new Error('a change expected')
  await applied.written
  const { key, primary, backup, version } = applied.record
  return { key, primary, backup, version }
}

const counter = async (m: Metrics, name: string): Promise<number> => (await m.registry.getSingleMetricAsString(name)).split('\n').filter((l) => l.startsWith(name)).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0)

t.test('a local copy is served without memcached until cache.revalidateMs passes on the monotonic clock', async (t) => {
  const r = await rig(t)
  const cookie = await login(r, { user: 'ada' })
  const local = r.store.local(cookie.key)
  if (local === undefined) throw new Error('cached')
  t.ok(r.store.fresh(local, cookie.version, r.clock.now + REVALIDATE_MS - 1), 'fresh just before revalidateMs')
  t.notOk(r.store.fresh(local, cookie.version, r.clock.now + REVALIDATE_MS), 'due at revalidateMs')
  t.notOk(r.store.fresh(local, cookie.version + 1, r.clock.now), 'never for a cookie newer than the copy')
})

t.test('revalidation adopts a newer or different stored copy (another sidecar changed it)', async (t) => {
  const r = await rig(t)
  const cookie = await login(r, { user: 'ada' })
  await r.put(cookie.key, { version: 2, header: b64({ user: 'ada', cart: [1] }), ended: false })
  r.clock.now += REVALIDATE_MS
  const loaded = await r.store.load(cookie, r.store.local(cookie.key), r.deadline())
  t.equal(loaded.outcome, 'miss-loaded')
  t.same(data(loaded.record?.header), { user: 'ada', cart: [1] }, 'the newer copy is served')
  t.equal(loaded.record?.version, 2)

  await r.put(cookie.key, { version: 2, header: b64({ user: 'ada', cart: [2] }), ended: false })
  r.clock.now += REVALIDATE_MS
  const same = await r.store.load(cookie, r.store.local(cookie.key), r.deadline())
  t.same(data(same.record?.header), { user: 'ada', cart: [2] }, 'the same version with other data is adopted too (the primary orders versions)')
})

t.test('revalidation that finds a tombstone ends the session here, whatever the versions', async (t) => {
  const r = await rig(t)
  const cookie = await login(r, { user: 'ada' })
  const changed = r.store.apply(r.store.local(cookie.key), cookie.version, { set: undefined, merge: { page: 1 }, regenerate: false })
  await changed?.written
  await r.put(cookie.key, { version: 1, header: 'e30', ended: true })
  r.clock.now += REVALIDATE_MS
  const loaded = await r.store.load({ ...cookie, version: 2 }, r.store.local(cookie.key), r.deadline())
  t.equal(loaded.outcome, 'gone', 'a tombstone at version 1 ends a local copy at version 2')
  t.equal(r.store.local(cookie.key), undefined, 'and the local copy is dropped')
  const late = r.store.apply(changed?.record, 2, { set: undefined, merge: { page: 2 }, regenerate: false })
  t.equal(late, undefined, 'a late change of the ended key is not applied')
  t.same(await r.stored(cookie.key), { version: 1, header: 'e30', ended: true, current: true }, 'the tombstone stands')
})

t.test('a change made here does not count as a check: a session ended elsewhere is found at the check due since the last one, even while the change\'s write is still on its way', async (t) => {
  const r = await rig(t)
  const cookie = await login(r, { user: 'ada' })
  // Another sidecar's logout: a tombstone this sidecar has not seen.
  await r.put(cookie.key, { version: 2, header: 'e30', ended: true })
  r.clock.now += REVALIDATE_MS - 100
  // A replayed cookie is served the cached copy (within revalidateMs, allowed) and changes it.
  const changed = r.store.apply(r.store.local(cookie.key), cookie.version, { set: undefined, merge: { page: 1 }, regenerate: false })
  r.clock.now += 200
  // Its write has not landed (nothing awaited since): the copy is due for a check all the same.
  const local = r.store.local(cookie.key)
  t.equal(local?.version, 2)
  t.notOk(local !== undefined && r.store.fresh(local, 2, r.clock.now), 'not served as fresh: the change confirmed nothing')
  const loaded = await r.store.load({ ...cookie, version: 2 }, local, r.deadline())
  t.equal(loaded.outcome, 'gone', 'the check finds the tombstone: not served again')
  await changed?.written
  t.same(await r.stored(cookie.key), { version: 2, header: 'e30', ended: true, current: true }, 'and the change did not revive it')
})

t.test('revalidation that finds a miss (eviction, restart) keeps serving the local copy and stores it again', async (t) => {
  const r = await rig(t)
  const cookie = await login(r, { user: 'ada' })
  await r.evict(cookie.key)
  r.clock.now += REVALIDATE_MS
  const loaded = await r.store.load(cookie, r.store.local(cookie.key), r.deadline())
  t.equal(loaded.outcome, 'miss-loaded', 'served: a miss is not a destroy')
  t.same(data(loaded.record?.header), { user: 'ada' })
  t.equal(await r.store.flush(2000), 0)
  t.same(await r.stored(cookie.key), { version: 1, header: b64({ user: 'ada' }), ended: false, current: true }, 'the copy is back in memcached')
  t.equal(await counter(r.metrics, 'sidecar_restored_copies_total'), 1, 'counted as restored')
})

t.test('no answer from memcached: the local copy is served as it is (degraded); with no local copy, unavailable', async (t) => {
  const r = await rig(t)
  const cookie = await login(r, { user: 'ada' })
  await r.memcached.close()
  r.clock.now += REVALIDATE_MS
  const loaded = await r.store.load(cookie, r.store.local(cookie.key), r.deadline())
  t.equal(loaded.outcome, 'degraded')
  t.same(data(loaded.record?.header), { user: 'ada' })
  const other = await r.store.load({ ...cookie, key: 'B'.repeat(22) }, undefined, r.deadline())
  t.equal(other.outcome, 'unavailable', 'a session held nowhere here is unavailable, not gone: the cookie is kept')
})

t.test('a merge is applied to the stored copy, not over it', async (t) => {
  const r = await rig(t)
  const cookie = await login(r, { user: 'ada' })
  // Another sidecar stored version 3 meanwhile; this one still holds version 1.
  await r.put(cookie.key, { version: 3, header: b64({ user: 'ada', fromOther: true }), ended: false })
  const applied = r.store.apply(r.store.local(cookie.key), cookie.version, { set: undefined, merge: { mine: true }, regenerate: false })
  const result = await applied?.written
  t.same(result?.copy, { version: 4, header: b64({ user: 'ada', fromOther: true, mine: true }), ended: false }, 'version 3 + 1, both changes')
  t.same(data(r.store.local(cookie.key)?.header), { user: 'ada', fromOther: true, mine: true }, 'the local copy follows the primary')
})

t.test('a change of a session whose nodes answer does not rank the nodes (a hash per node): only placing a new key or a relocation does', async (t) => {
  const r = await rig(t, { backup: true })
  let ranked = 0
  const rank = r.pool.ranked.bind(r.pool)
  r.pool.ranked = (key) => { ranked++; return rank(key) }
  const cookie = await login(r, { user: 'ada' })
  t.equal(ranked, 1, 'the login placed its new key once')
  t.ok(cookie.backup !== undefined, 'on a primary and a backup')
  for (let i = 0; i < 10; i++) {
    const applied = r.store.apply(r.store.local(cookie.key), 0, { set: undefined, merge: { [`i${i}`]: true }, regenerate: false })
    await applied?.written
  }
  t.equal(await r.store.flush(2000), 0)
  t.equal(r.store.local(cookie.key)?.version, 11, 'ten changes stored')
  t.equal(ranked, 1, 'and none of them ranked the nodes again')
})

/** Counts a node's `gats` (the checks), how many are in flight at once, and slows each by `delayMs`: a memcached under load. */
function slowChecks (node: MemcachedNode, delayMs: number, onCheck: (total: number) => void = () => {}): { total: number, inFlight: number, peak: number } {
  const seen = { total: 0, inFlight: 0, peak: 0 }
  const gats = node.gats.bind(node)
  node.gats = async (key) => {
    seen.total++
    onCheck(seen.total)
    seen.peak = Math.max(seen.peak, ++seen.inFlight)
    try {
      await sleep(delayMs)
      return await gats(key)
    } finally {
      seen.inFlight--
    }
  }
  return seen
}

const SWEPT = 500
const BATCH = 200

t.test('after a node comes back, the cached sessions with a copy there are checked a batch at a time, each awaited: a slow memcached slows the sweep instead of piling reads on it', async (t) => {
  const r = await rig(t)
  const cookies = await Promise.all(Array.from({ length: SWEPT }, async (_, i) => await login(r, { user: `u${i}` })))
  const address = cookies[0]?.primary as string
  const checks = slowChecks(r.pool.node(address) as MemcachedNode, 50)
  // memcached restarts empty on the same port: the node's connection is lost, a probe
  // reconnects, and its recovery starts the sweep.
  await r.memcached.close()
  await r.memcached.listen(Number(address.split(':')[1]))
  await until(() => checks.total >= SWEPT && checks.inFlight === 0, 15_000, 'every cached session checked')
  t.equal(checks.total, SWEPT, 'each cached session checked once')
  t.ok(checks.peak <= BATCH, `at most one batch of checks in flight (peak ${checks.peak})`)
  t.equal(await r.store.flush(5000), 0)
  const restored = await Promise.all(cookies.map(async (c) => await r.stored(c.key)))
  t.equal(restored.filter((c) => c?.version === 1).length, SWEPT, 'and each lost copy is stored again')
})

t.test('a node that fails again during its sweep stops it: the rest waits for its next recovery, not for reads that would time out one by one', async (t) => {
  const r = await rig(t)
  const cookies = await Promise.all(Array.from({ length: SWEPT }, async (_, i) => await login(r, { user: `u${i}` })))
  const address = cookies[0]?.primary as string
  const node = r.pool.node(address) as MemcachedNode
  // Down again while the first batch is in flight: closed as its first check goes out (a
  // batch's checks all go out in one tick), not when a poll notices, by which time the batch
  // may have been answered and the next one sent.
  let closing: Promise<void> | undefined
  const checks = slowChecks(node, 50, (total) => { if (total === 1) closing = r.memcached.close() })
  await r.memcached.close()
  await r.memcached.listen(Number(address.split(':')[1]))
  await until(() => closing !== undefined, 15_000, 'the sweep started')
  await closing
  await until(() => checks.inFlight === 0 && node.down, 15_000, 'the first batch failed and the node is down')
  const afterFailure = checks.total
  t.ok(afterFailure <= BATCH, `only the first batch went out (${afterFailure})`)
  // Nothing to wait for but time: the next batch would have followed within RECHECK_TICK_MS (10 ms).
  await sleep(300)
  t.equal(checks.total, afterFailure, 'and no later batch')
})

const SEAL = new CopySeal(['store-unit-test-secret-0123'], true)

/** What the node at `address` holds for a key, opened; undefined for a miss. */
async function copyAt (r: Rig, address: string, key: string): Promise<StoredCopy | undefined> {
  const hit = await (r.pool.node(address) as MemcachedNode).gets(`sess:${key}`)
  return hit === undefined ? undefined : SEAL.open(`sess:${key}`, hit.value)
}

/**
 * A session on a primary and a backup (a spare node beside them); the backup hangs (frozen) while
 * a change is stored on the primary, another sidecar's logout then puts its tombstone on the
 * primary, and the backup fails, so the writer moves the copy to the spare node. The clock moves
 * by `step` before the change and again before the backup fails.
 */
async function logoutWhileBackupHangs (t: Test, step: number): Promise<{ r: Rig, cookie: CookieFields, backup: string }> {
  const r = await rig(t, { spare: true })
  const cookie = await login(r, { user: 'ada' })
  const backup = cookie.backup as string
  let fail: () => void = () => {}
  const failing = new Promise<void>((resolve) => { fail = resolve })
  const node = r.pool.node(backup) as MemcachedNode
  const cas = node.cas.bind(node)
  node.cas = async (...args) => { await failing; return await cas(...args) }
  r.clock.now += step
  const applied = r.store.apply(r.store.local(cookie.key), cookie.version, { set: undefined, merge: { page: 1 }, regenerate: false })
  await applied?.written // the primary took it; the backup's copy hangs
  const primary = r.pool.node(cookie.primary) as MemcachedNode
  const live = await primary.gets(`sess:${cookie.key}`)
  t.ok(live !== undefined && await primary.cas(`sess:${cookie.key}`, SEAL.seal(`sess:${cookie.key}`, { version: 3, header: 'e30', ended: true }), live.cas), 'the logout\'s tombstone is on the primary')
  r.clock.now += step
  await r.server(backup).close()
  fail()
  await r.store.flush(2000)
  return { r, cookie, backup }
}

t.test('a write landing is not a check: a session moved off a failing backup after another sidecar\'s logout reached its primary is checked when due, not served for another cache.revalidateMs', async (t) => {
  const { r, cookie, backup } = await logoutWhileBackupHangs(t, REVALIDATE_MS - 100)
  t.not(r.store.local(cookie.key)?.backup, backup, 'the session was moved off the failed backup')
  r.clock.now += 200
  const local = r.store.local(cookie.key)
  t.notOk(local !== undefined && r.store.fresh(local, 2, r.clock.now), 'not fresh: its last check was at the login, more than cache.revalidateMs ago')
  const loaded = await r.store.load({ ...cookie, version: 2 }, local, r.deadline())
  t.equal(loaded.outcome, 'gone', 'the check finds the primary\'s tombstone')
})

t.test('a copy moved off a failing backup to a node no cookie names is not written over a logout: the primary\'s tombstone, found first, ends the session here', async (t) => {
  const { r, cookie, backup } = await logoutWhileBackupHangs(t, 0)
  const spare = r.pool.placement.find((a) => a !== cookie.primary && a !== backup) as string
  t.notOk((await copyAt(r, spare, cookie.key))?.ended === false, 'the spare node holds no live copy')
  t.equal(r.store.local(cookie.key), undefined, 'and the session ended here')
})

/** A login on `store`: the session held there, changed and given a new key; resolves with the new key's record, or undefined when it ended. */
async function relogin (store: SessionStore, cookie: CookieFields): Promise<string | undefined> {
  const applied = store.apply(store.local(cookie.key), cookie.version, { set: undefined, merge: { login: true }, regenerate: true })
  if (applied === undefined) throw new Error('a change expected')
  await applied.written
  await store.flush(2000)
  return store.local(applied.record.key) === undefined ? undefined : applied.record.key
}

t.test('a login sent again with the same old cookie (its first answer lost with its sidecar) gets a session that stays: an earlier regeneration of the old key is not a logout', async (t) => {
  const r = await rig(t, { backup: true })
  const cookie = await login(r, { user: 'ada' })
  const other = r.sibling()
  t.equal((await other.load(cookie, undefined, r.deadline())).outcome, 'miss-loaded', 'another sidecar holds the session too')
  // The first login: regenerated here, and its answer never reached the client.
  t.ok(await relogin(r.store, cookie), 'the first login\'s new key is live')
  // The client sends it again with the cookie it still holds; another sidecar answers.
  const again = await relogin(other, cookie)
  t.ok(again, 'the second login\'s new key is live too')
  t.match(await r.stored(again as string), { ended: false }, 'and stored live')
  t.match(await r.stored(cookie.key), { ended: true }, 'the old key stays ended')
})

t.test('a logout before a login sent with the same old cookie still wins: the login\'s new key ends too', async (t) => {
  const r = await rig(t, { backup: true })
  const cookie = await login(r, { user: 'ada' })
  const other = r.sibling()
  await other.load(cookie, undefined, r.deadline())
  await r.store.destroy(r.store.local(cookie.key) as SessionRecord, cookie)
  t.equal(await relogin(other, cookie), undefined, 'the regeneration of a destroyed key ends its new key')
})

t.test('a logout after a regeneration marks the old key destroyed: a login sent later with that old cookie ends too', async (t) => {
  const r = await rig(t, { backup: true })
  const cookie = await login(r, { user: 'ada' })
  const other = r.sibling()
  await other.load(cookie, undefined, r.deadline())
  t.ok(await relogin(r.store, cookie), 'regenerated here')
  // The old cookie's logout, on a third sidecar: it holds no copy and ends the key by its cookie.
  await r.sibling().destroyByCookie(cookie)
  t.equal(await relogin(other, cookie), undefined, 'the destroy won over the earlier regeneration\'s mark')
})

t.test('a check that finds a regeneration\'s tombstone copies it as a regeneration\'s: a login sent again later with the old cookie keeps its new key', async (t) => {
  const r = await rig(t, { backup: true })
  const cookie = await login(r, { user: 'ada' })
  const checker = r.sibling()
  const retrier = r.sibling()
  await checker.load(cookie, undefined, r.deadline())
  await retrier.load(cookie, undefined, r.deadline())
  t.ok(await relogin(r.store, cookie), 'the first login\'s new key is live')
  // The old key's backup restarts empty: the checker's next check copies the tombstone there.
  await (r.pool.node(cookie.backup as string) as MemcachedNode).delete(`sess:${cookie.key}`)
  r.clock.now += REVALIDATE_MS
  t.equal((await checker.load(cookie, checker.local(cookie.key), r.deadline())).outcome, 'gone', 'the check finds the old key ended')
  t.equal(await checker.flush(2000), 0)
  t.ok(await relogin(retrier, cookie), 'the login sent again keeps its new key')
  const regenerated = { ended: true, header: Buffer.from('{"regenerated":true}').toString('base64url') }
  t.match(await copyAt(r, cookie.primary, cookie.key), regenerated, 'the old key\'s primary holds a regeneration\'s tombstone')
  t.match(await copyAt(r, cookie.backup as string, cookie.key), regenerated, 'and so does its backup')
})

t.test('a wall-clock step does not move freshness: a session ended elsewhere is found at the next check although Date.now jumped back 60 s', async (t) => {
  const r = await rig(t, { realClock: true, revalidateMs: 100 })
  const cookie = await login(r, { user: 'ada' })
  await r.put(cookie.key, { version: 2, header: 'e30', ended: true })
  const realNow = Date.now
  Date.now = () => realNow() - 60_000
  t.teardown(() => { Date.now = realNow })
  const local = r.store.local(cookie.key)
  if (local === undefined) throw new Error('cached')
  // Real time passes (the store's clock is monotonic): the revalidation is due after 100 ms.
  await new Promise((resolve) => setTimeout(resolve, 150))
  t.notOk(r.store.fresh(local, cookie.version, performance.now()), 'due after revalidateMs of monotonic time')
  t.equal((await r.store.load(cookie, local, r.deadline())).outcome, 'gone', 'and the check finds the tombstone')
})

t.test('revalidation asks the nodes the cookie names too when they are not the record\'s: a tombstone written there from that cookie ends the session, and the record\'s node gets it', async (t) => {
  // Chaos seed 8: this sidecar moved the session after the cookie was issued; a sidecar that
  // ended it from that cookie wrote its tombstone to the cookie's node only.
  const r = await rig(t)
  const cookie = await login(r, { user: 'ada' })
  const elsewhere = new EmbeddedMemcached()
  const port = await elsewhere.listen()
  t.teardown(() => elsewhere.close())
  const address = `127.0.0.1:${port}`
  const log = pino({ level: 'silent' })
  const pool = new NodePool({ nodes: [address], replicas: 1, allow: [], timeoutMs: 500, ttl: 1800, log, ops: new Metrics(false) })
  t.teardown(() => pool.close())
  const node = pool.node(address)
  if (node === undefined) throw new Error('node expected')
  const seal = new CopySeal(['store-unit-test-secret-0123'], true)
  t.ok(await node.add(`sess:${cookie.key}`, seal.seal(`sess:${cookie.key}`, { version: 2, header: 'e30', ended: true })), 'the tombstone is on the node the cookie names')
  r.clock.now += REVALIDATE_MS
  const loaded = await r.store.load({ ...cookie, primary: address, backup: undefined }, r.store.local(cookie.key), r.deadline())
  t.equal(loaded.outcome, 'gone', 'the check finds the tombstone on the cookie\'s node')
  t.equal(r.store.local(cookie.key), undefined, 'and the local copy is dropped')
  t.equal(await r.store.flush(2000), 0)
  t.match(await r.stored(cookie.key), { ended: true }, 'the node the session was on holds the tombstone too')
})

/**
 * Chaos seed 7: a session moved off its failing primary P to B and S after its cookie (naming P
 * and B) was issued; another sidecar ends it from that cookie, so its tombstones are on P and B
 * only, and S keeps a live copy; then B restarts empty (or goes down). Resolves with the moved
 * session's cookie.
 */
async function endedAfterAMove (t: Test, r: Rig, lose: 'restart' | 'down' = 'restart'): Promise<{ moved: CookieFields, spare: string }> {
  const cookie = await login(r, { user: 'ada' })
  const { primary, backup } = cookie
  const spare = r.pool.placement.find((a) => a !== primary && a !== backup) as string
  const port = r.server(primary).port
  // Its recovery probe is held: it stays failing past its backoff window, as between the
  // window's end and the probe's answer (CI caught a check in that gap skipping the node).
  const old = r.pool.node(primary) as MemcachedNode
  old.probe = async () => await new Promise<boolean>(() => {})
  await r.server(primary).close()
  const applied = r.store.apply(r.store.local(cookie.key), cookie.version, { set: undefined, merge: { page: 1 }, regenerate: false })
  await applied?.written
  await r.store.flush(2000)
  const record = r.store.local(cookie.key) as SessionRecord
  t.same([record.primary, record.backup], [backup, spare], 'the change moved the session to the backup and the spare node')
  await r.server(primary).listen(port)
  await r.sibling().destroyByCookie({ ...cookie, version: record.version })
  t.match(await copyAt(r, spare, cookie.key), { ended: false }, 'the spare node still holds a live copy: no cookie named it')
  if (lose === 'restart') await (r.pool.node(backup as string) as MemcachedNode).delete(`sess:${cookie.key}`)
  else await r.server(backup as string).close()
  // The old primary answers again, its backoff window has passed, and nothing here has seen it answer yet.
  await until(() => !old.down, 5000, 'the old primary\'s backoff window to end')
  t.ok(old.failing, 'the old primary is still failing here: no command has reached it since')
  return { moved: { key: cookie.key, primary: record.primary, backup: record.backup, version: record.version }, spare }
}

t.test('a check that finds a node of the session empty asks its other possible nodes for a tombstone before storing the local copy again: a session ended from a cookie naming the nodes it was moved off stays ended', async (t) => {
  const r = await rig(t, { spare: true })
  const { moved, spare } = await endedAfterAMove(t, r)
  r.clock.now += REVALIDATE_MS
  const loaded = await r.store.load(moved, r.store.local(moved.key), r.deadline())
  t.equal(loaded.outcome, 'gone', 'the old primary\'s tombstone ends the session')
  t.equal(await r.store.flush(2000), 0)
  t.match(await copyAt(r, spare, moved.key), { ended: true }, 'and the spare node gets the tombstone over its live copy')
})

t.test('a read that finds a node of the session empty asks its other possible nodes for a tombstone before serving a copy found on the rest', async (t) => {
  const r = await rig(t, { spare: true })
  const { moved } = await endedAfterAMove(t, r)
  const loaded = await r.sibling().load(moved, undefined, r.deadline())
  t.equal(loaded.outcome, 'gone', 'a sidecar with no copy of its own does not serve the spare node\'s live copy')
})

t.test('so does a check that finds a node of the session down: the live copy left on the rest does not decide alone', async (t) => {
  const r = await rig(t, { spare: true })
  const { moved } = await endedAfterAMove(t, r, 'down')
  r.clock.now += REVALIDATE_MS
  const loaded = await r.store.load(moved, r.store.local(moved.key), r.deadline())
  t.equal(loaded.outcome, 'gone', 'the old primary\'s tombstone ends the session')
})

t.test('a check whose nodes both answer asks no other node; one that finds a node empty asks the others with a plain read, no TTL refreshed there', async (t) => {
  const r = await rig(t, { spare: true })
  const cookie = await login(r, { user: 'ada' })
  const spare = r.pool.placement.find((a) => a !== cookie.primary && a !== cookie.backup) as string
  const node = r.pool.node(spare) as MemcachedNode
  const sent: string[] = []
  const gets = node.gets.bind(node)
  const gats = node.gats.bind(node)
  node.gets = async (key) => { sent.push('gets'); return await gets(key) }
  node.gats = async (key) => { sent.push('gats'); return await gats(key) }
  r.clock.now += REVALIDATE_MS
  t.equal((await r.store.load(cookie, r.store.local(cookie.key), r.deadline())).outcome, 'miss-loaded')
  t.same(sent, [], 'nothing sent to the spare node while the session\'s nodes hold it')
  await (r.pool.node(cookie.backup as string) as MemcachedNode).delete(`sess:${cookie.key}`)
  r.clock.now += REVALIDATE_MS
  t.equal((await r.store.load(cookie, r.store.local(cookie.key), r.deadline())).outcome, 'miss-loaded', 'the lost copy found nowhere else ended: the session is served')
  t.same(sent, ['gets'], 'the backup\'s miss: one plain read of the spare node')
  t.equal(await r.store.flush(2000), 0)
  t.match(await copyAt(r, cookie.backup as string, cookie.key), { ended: false, version: 1 }, 'and the backup\'s copy is stored again')
})

t.test('a destroy\'s tombstone wins over a regeneration\'s when a check finds both: the mark copied is the destroy\'s', async (t) => {
  const r = await rig(t, { backup: true })
  const cookie = await login(r, { user: 'ada' })
  const regenerated = Buffer.from('{"regenerated":true}').toString('base64url')
  const backup = r.pool.node(cookie.backup as string) as MemcachedNode
  const primary = r.pool.node(cookie.primary) as MemcachedNode
  const mkey = `sess:${cookie.key}`
  // The primary holds a regeneration's tombstone, the backup a destroy's: a logout after the login, its tombstone landed on the backup only.
  const onPrimary = await primary.gets(mkey)
  const onBackup = await backup.gets(mkey)
  t.ok(onPrimary !== undefined && await primary.cas(mkey, SEAL.seal(mkey, { version: 2, header: regenerated, ended: true }), onPrimary.cas))
  t.ok(onBackup !== undefined && await backup.cas(mkey, SEAL.seal(mkey, { version: 3, header: 'e30', ended: true }), onBackup.cas))
  // A third node of the session's (a cookie that names it) missed: the check writes the tombstone there.
  const other = new EmbeddedMemcached()
  const port = await other.listen()
  t.teardown(() => other.close())
  const third = `127.0.0.1:${port}`
  r.clock.now += REVALIDATE_MS
  const loaded = await r.store.load({ ...cookie, primary: third, backup: undefined }, r.store.local(cookie.key), r.deadline())
  t.equal(loaded.outcome, 'gone')
  t.equal(await r.store.flush(2000), 0)
  t.match(await copyAt(r, third, cookie.key), { ended: true, header: 'e30' }, 'the node that missed gets a destroy\'s tombstone')
  t.match(await copyAt(r, cookie.primary, cookie.key), { ended: true, header: 'e30' }, 'and the primary\'s becomes one')
})

t.test('a login whose old key\'s backup hangs does not hold up the new key\'s next change: that tombstone is written outside the new key\'s queue', async (t) => {
  const r = await rig(t, { backup: true })
  const cookie = await login(r, { user: 'ada' })
  const oldKey = `sess:${cookie.key}`
  const backup = r.pool.node(cookie.backup as string) as MemcachedNode
  let release: () => void = () => {}
  const released = new Promise<void>((resolve) => { release = resolve })
  t.teardown(() => { release() })
  // Only the old key hangs there (a frozen node, as far as that key is concerned).
  for (const command of ['gets', 'cas', 'add'] as const) {
    const real = (backup[command] as (...args: unknown[]) => Promise<unknown>).bind(backup)
    Object.assign(backup, { [command]: async (...args: unknown[]) => { if (args[0] === oldKey) await released; return await real(...args) } })
  }
  const loggedIn = r.store.apply(r.store.local(cookie.key), cookie.version, { set: undefined, merge: { login: true }, regenerate: true })
  if (loggedIn === undefined) throw new Error('a change expected')
  await loggedIn.written
  const next = r.store.apply(loggedIn.record, loggedIn.record.version, { set: undefined, merge: { page: 2 }, regenerate: false })
  // A failure detector, not a wait: on success the change lands at once.
  const landed = await Promise.race([next?.written?.then(() => true), sleep(3000).then(() => false)])
  t.ok(landed, 'the new key\'s next change is stored while the old key\'s backup still hangs')
  t.match(await copyAt(r, loggedIn.record.primary, loggedIn.record.key), { version: loggedIn.record.version + 1, ended: false }, 'at its next version')
  release()
  t.equal(await r.store.flush(2000), 0, 'and the old key\'s tombstone lands once the backup answers')
  t.match(await copyAt(r, cookie.backup as string, cookie.key), { ended: true })
})
