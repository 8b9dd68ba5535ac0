import t from 'tap'
import { CookieCodec } from '../../src/session/cookie.js'
import { CopySeal } from '../../src/session/sealed-copy.js'
import type { Sidecar } from '../../src/sidecar.js'
import { Browser, keyOf, q } from '../helpers/client.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { metricValue } from '../helpers/metrics.js'
import { until } from '../../harness/index.js'
import { startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { TestApp } from '../helpers/upstream.js'

// Issue 11, part 1: a secret rotation in two rolling deploys (README, "Secret rotation") logs
// nobody out. Two sidecars behind round-robin, two memcached nodes, users appending items to
// their sessions all along; each phase rolls one sidecar at a time (out of the rotation,
// drained, closed, started again on the next config, back in).

const OLD = 'rotation-old-secret-0123456789'
const NEW = 'rotation-new-secret-0123456789'
const USERS = 16
/** Requests each user completes between two steps of the rollout. */
const BETWEEN_STEPS = 5

interface Secrets { readonly secrets: string[], readonly verifyOnly: string[] }
const BEFORE: Secrets = { secrets: [OLD], verifyOnly: [] }
const PHASE_1: Secrets = { secrets: [OLD], verifyOnly: [NEW] }
const PHASE_2: Secrets = { secrets: [NEW], verifyOnly: [OLD] }
const PHASE_3: Secrets = { secrets: [NEW], verifyOnly: [] }

/**
 * A load balancer in the test: round-robin over the sidecars in rotation, counting each one's
 * requests in flight so that one taken out is closed only once it has answered them (what
 * HAProxy does with a server whose /readyz fails: no new requests, in-flight ones finish).
 */
class RoundRobin {
  readonly #live: Sidecar[] = []
  readonly #inFlight = new Map<Sidecar, number>()
  readonly #idle = new Map<Sidecar, () => void>()
  #next = 0

  add (s: Sidecar): void { this.#live.push(s) }

  /** Takes `s` out of the rotation; resolves once its requests in flight have been answered. */
  async remove (s: Sidecar): Promise<void> {
    this.#live.splice(this.#live.indexOf(s), 1)
    if ((this.#inFlight.get(s) ?? 0) === 0) return
    await new Promise<void>((resolve) => this.#idle.set(s, resolve))
  }

  async send (browser: Browser, path: string): Promise<Awaited<ReturnType<Browser['get']>>> {
    const s = this.#live[this.#next++ % this.#live.length] as Sidecar
    this.#inFlight.set(s, (this.#inFlight.get(s) ?? 0) + 1)
    try {
      return await browser.get(s.url, path)
    } finally {
      const left = (this.#inFlight.get(s) ?? 1) - 1
      this.#inFlight.set(s, left)
      if (left === 0 && !this.#live.includes(s)) this.#idle.get(s)?.()
    }
  }
}

interface User {
  readonly name: string
  readonly browser: Browser
  key: string
  /** Items whose request was answered 200: acknowledged, so never to be lost. */
  readonly items: string[]
}

t.test('secret rotation in two phases, each rolled across two sidecars one at a time under round-robin traffic: no session lost', async (t) => {
  const memcached = [await MemcachedProcess.start(), await MemcachedProcess.start()]
  t.teardown(async () => { for (const m of memcached) await m.stop() })
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const nodes = memcached.map((m) => m.address)
  const started: Sidecar[] = []
  t.teardown(async () => { for (const s of started) await s.close() })
  // sync: a change is in memcached when answered, so the next request, on the other sidecar,
  // finds it however loaded this machine is (async is not what this test is about).
  const start = async ({ secrets, verifyOnly }: Secrets): Promise<Sidecar> => {
    const s = await startTestSidecar(testConfig(app.url, nodes, {
      session: { secrets, verifyOnly, cookie: { secure: false } },
      memcached: { write: 'sync', timeoutMs: 1000 }
    }))
    started.push(s)
    return s
  }
  /** Counters of every sidecar, read before it closes. */
  const counted = { forged: 0, rejected: 0, created: 0, stale: 0 }
  const count = async (s: Sidecar): Promise<void> => {
    counted.forged += await metricValue(s.adminUrl, 'sidecar_forged_cookies_total')
    counted.rejected += await metricValue(s.adminUrl, 'sidecar_rejected_copies_total')
    counted.created += await metricValue(s.adminUrl, 'sidecar_requests_total', { outcome: 'new' })
    counted.stale += await metricValue(s.adminUrl, 'sidecar_requests_total', { outcome: 'stale' })
  }

  const lb = new RoundRobin()
  const instances = [await start(BEFORE), await start(BEFORE)]
  for (const s of instances) lb.add(s)

  const problems: string[] = []
  const login = async (name: string): Promise<User> => {
    const user: User = { name, browser: new Browser(), key: '', items: [] }
    const res = await lb.send(user.browser, `/?set=${q({ user: name, items: [] })}`)
    if (res.status !== 200) throw new Error(`${name}: login answered ${res.status}`)
    user.key = keyOf(user.browser.sid)
    return user
  }
  const users = await Promise.all(Array.from({ length: USERS }, async (_, i) => await login(`user-${i}`)))
  // Logged in before the rotation, back only after it: its cookie and copies carry the old secret.
  const idle = await login('idle')

  let stopping = false
  let requests = 0
  const loops = users.map(async (user) => {
    // eslint-disable-next-line no-unmodified-loop-condition -- `stopping` is set by the test body while this loop awaits
    while (!stopping) {
      const item = String(user.items.length)
      let res
      try {
        res = await lb.send(user.browser, `/?push=items:${item}`)
      } catch (err) {
        problems.push(`${user.name}: item ${item}: ${(err as Error).message}`)
        return
      }
      requests++
      const seen = res.body?.session as { user?: string, items?: string[] } | undefined
      if (res.status !== 200 || res.body?.sessionId !== user.key || seen?.user !== user.name || JSON.stringify(seen?.items) !== JSON.stringify(user.items)) {
        problems.push(`${user.name}: item ${item}: status ${res.status}, key ${res.body?.sessionId === user.key ? 'kept' : 'changed'}, the app saw ${JSON.stringify(seen)} instead of ${user.items.length} items`)
        return
      }
      user.items.push(item)
    }
  })
  /** Waits until every user has had `n` more items acknowledged (or a loop has failed). */
  const progress = async (n: number, what: string): Promise<void> => {
    const from = users.map((u) => u.items.length)
    await until(() => problems.length > 0 || users.every((u, i) => u.items.length >= (from[i] as number) + n), 60_000, `${n} more items per user ${what}`)
  }
  /** One instance of the rollout: out of the rotation, drained, closed, started on `next`, back in. */
  const roll = async (i: number, next: Secrets, what: string): Promise<void> => {
    const old = instances[i] as Sidecar
    await lb.remove(old)
    await count(old)
    await old.close()
    const replacement = await start(next)
    instances[i] = replacement
    lb.add(replacement)
    await progress(BETWEEN_STEPS, `after ${what}`)
  }

  await progress(BETWEEN_STEPS, 'before the rotation')
  await roll(0, PHASE_1, 'phase 1 on sidecar A')
  await roll(1, PHASE_1, 'phase 1 on sidecar B')
  // From here A signs with the new secret while B, still on phase 1, only verifies it.
  await roll(0, PHASE_2, 'phase 2 on sidecar A')
  await roll(1, PHASE_2, 'phase 2 on sidecar B')
  stopping = true
  await Promise.all(loops)

  t.same(problems, [], 'every request answered 200 with the user\'s own session and every item acknowledged before it')
  t.ok(users.every((u) => u.items.length >= 5 * BETWEEN_STEPS), `traffic all along: ${requests} appends by ${USERS} users`)

  // After phase 2 every cookie is signed with the new secret alone.
  const newOnly = new CookieCodec([NEW])
  const oldOnly = new CookieCodec([OLD])
  t.ok(users.every((u) => newOnly.verify(u.browser.sid ?? '') !== undefined), 'every active user\'s cookie verifies with the new secret alone')
  t.ok(users.every((u) => oldOnly.verify(u.browser.sid ?? '') === undefined), 'and none with the old one')

  // The idle user comes back: cookie and copies sealed with the old secret, now verify-only.
  t.ok(oldOnly.verify(idle.browser.sid ?? '') !== undefined, 'the idle user\'s cookie is still the old secret\'s')
  const back = await lb.send(idle.browser, '/')
  t.equal(back.status, 200)
  t.equal(back.body.sessionId, idle.key, 'the idle user keeps the session')
  t.same(back.body.session, { user: 'idle', items: [] })
  t.ok(newOnly.verify(idle.browser.sid ?? '') !== undefined, 'and gets the cookie reissued, signed with the new secret')
  // Read from memcached (both sidecars restarted since), its copies were resealed there.
  const mkey = `sess:${idle.key}`
  const newSeal = new CopySeal([NEW], true)
  for (const m of memcached) {
    await until(async () => newSeal.open(mkey, await m.get(mkey) ?? '')?.current === true, 5000, `the idle user's copy on ${m.address} to be resealed with the new secret`)
  }
  t.pass('the idle user\'s copies on both memcached nodes were resealed with the new secret')

  for (const s of instances) {
    await lb.remove(s)
    await count(s)
  }
  t.same(counted, { forged: 0, rejected: 0, created: USERS + 1, stale: 0 },
    'no cookie taken for a forged one, no copy that did not open, no session created but the logins, no stale read')

  // Phase 3's config (the new secret alone) serves every session as it was left.
  const after = await start(PHASE_3)
  let intact = 0
  for (const user of [...users, idle]) {
    const res = await user.browser.get(after.url, '/')
    if (res.status === 200 && res.body.sessionId === user.key && JSON.stringify(res.body.session?.items) === JSON.stringify(user.items)) intact++
  }
  t.equal(intact, USERS + 1, 'a sidecar that knows only the new secret serves every user\'s session with every acknowledged item')
  t.equal(await metricValue(after.adminUrl, 'sidecar_forged_cookies_total'), 0)
  t.equal(await metricValue(after.adminUrl, 'sidecar_rejected_copies_total'), 0)
})

t.test('control: without phase 1, a sidecar that does not know the new secret takes its cookies for forged ones', async (t) => {
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const start = async (session: Secrets): Promise<Sidecar> => {
    const s = await startTestSidecar(testConfig(app.url, [m.address], { session: { ...session, cookie: { secure: false } } }))
    t.teardown(() => s.close())
    return s
  }
  // The one-step rotation: A already signs with the new secret, B knows only the old one.
  const a = await start({ secrets: [NEW, OLD], verifyOnly: [] })
  const b = await start(BEFORE)
  const user = new Browser()
  await user.get(a.url, `/?set=${q({ user: 'ada' })}`)
  const res = await user.get(b.url, '/')
  t.equal(res.body.sessionId, undefined, 'B serves the request without the session')
  t.equal(await metricValue(b.adminUrl, 'sidecar_forged_cookies_total'), 1, 'and counts the cookie as forged')
})
