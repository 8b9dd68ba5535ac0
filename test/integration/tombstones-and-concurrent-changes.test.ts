import { connect, createServer, type Server, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import type { Sidecar } from '../../src/sidecar.js'
import { CopySeal } from '../../src/session/sealed-copy.js'
import { Browser, keyOf, q, versionOf } from '../helpers/client.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { listenOnLoopback, until } from '../../harness/index.js'
import { SECRET, startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { TestApp, b64 } from '../helpers/upstream.js'

// SPEC, "Storage and consistency":
// - Destroy and regenerate write tombstones (the key's next version, state ended) on every node
//   the session names; a destroy waits for the primary's tombstone whatever memcached.write
//   says (a logout is durable when answered). A tombstone always wins over live data, whatever
//   the versions; no write makes it live again.
// - A change is applied to the copy the primary holds (a Merge re-applied to it); a sidecar
//   never writes its whole local state over a copy it has not seen.
// - A local copy is checked against memcached once per cache.revalidateMs: newer, or the same
//   version with other data -> adopt it; tombstone -> the session is gone.
//
// idleTimeout is far above each case's duration: a session that expires proves nothing.

const IDLE_TIMEOUT = 10

type Overrides = Record<string, Record<string, unknown>>

/** The kind of session copy a command stores: a destroy is a tombstone (or, before tombstones, a delete). */
type Written = 'live' | 'ended'

const SEAL = new CopySeal([SECRET], true)

/** One command the sidecars sent, as the relay parsed it off the wire. */
interface Command {
  readonly bytes: Buffer
  readonly verb: string
  readonly key: string | undefined
  readonly value: string | undefined
}

const STORAGE = new Set(['set', 'add', 'replace', 'cas', 'append', 'prepend'])

/** The first complete text-protocol command in `buf`, or undefined until it has fully arrived. */
function nextCommand (buf: Buffer): Command | undefined {
  const eol = buf.indexOf('\r\n')
  if (eol < 0) return undefined
  const words = buf.subarray(0, eol).toString('latin1').split(' ')
  const verb = words[0] ?? ''
  const length = STORAGE.has(verb) ? Number(words[4]) : verb === 'ms' ? Number(words[2]) : NaN
  if (!Number.isInteger(length)) return { bytes: buf.subarray(0, eol + 2), verb, key: words[1], value: undefined }
  const end = eol + 2 + length + 2
  if (buf.length < end) return undefined
  return { bytes: buf.subarray(0, end), verb, key: words[1], value: buf.subarray(eol + 2, eol + 2 + length).toString('latin1') }
}

/**
 * A TCP relay in front of one real memcached, at the address the sidecars (and so the cookies)
 * name. It opens each session copy written through it with the tests' secret and can:
 * - hold every write that ends a session back by `delayEndsMs` (a slow primary), and
 * - refuse writes of one kind of copy of one key by cutting that connection, as a failing node
 *   would (`refuse`): which of two pending writes reaches memcached first is then decided by
 *   the test, not by the sidecars' retry timers.
 * Everything else passes through unchanged, in order.
 */
class Relay {
  port = 0
  delayEndsMs = 0
  refuse: { readonly mkey: string, readonly kind: Written } | undefined
  refused = 0
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined

  constructor (readonly target: MemcachedProcess) {}

  get address (): string { return `127.0.0.1:${this.port}` }

  async start (): Promise<this> {
    this.#server = createServer((client) => this.#relay(client))
    this.port = await listenOnLoopback(this.#server)
    return this
  }

  async close (): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    await new Promise((resolve) => this.#server?.close(resolve))
  }

  #relay (client: Socket): void {
    const upstream = connect(this.target.port, this.target.host)
    for (const s of [client, upstream]) {
      this.#sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => {
        this.#sockets.delete(s)
        client.destroy()
        upstream.destroy()
      })
    }
    upstream.on('data', (chunk: Buffer) => client.write(chunk))
    let buffered = Buffer.alloc(0)
    let queue = Promise.resolve()
    client.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      for (let command = nextCommand(buffered); command !== undefined; command = nextCommand(buffered)) {
        buffered = buffered.subarray(command.bytes.length)
        const { bytes } = command
        const kind = this.#kind(command)
        const refused = kind !== undefined && this.refuse?.kind === kind && this.refuse.mkey === command.key
        const delay = kind === 'ended' ? this.delayEndsMs : 0
        queue = queue.then(async () => {
          if (refused) {
            this.refused++
            client.destroy()
            return
          }
          if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
          if (!upstream.destroyed) upstream.write(bytes)
        })
      }
    })
  }

  #kind (command: Command): Written | undefined {
    if (command.key?.startsWith('sess:') !== true) return undefined
    if (command.verb === 'delete' || command.verb === 'md') return 'ended'
    if (command.value === undefined) return undefined
    const copy = SEAL.open(command.key, command.value)
    if (copy === undefined) return undefined
    return (copy as { ended?: boolean }).ended === true ? 'ended' : 'live'
  }
}

interface Fleet {
  readonly nodes: MemcachedProcess[]
  /** One per node; the sidecars reach each node only through its relay. */
  readonly relays: Relay[]
  readonly app: TestApp
  /** A sidecar with the fleet's settings, torn down with the test. */
  sidecar: () => Promise<Sidecar>
  /** The memcached behind the address a cookie names. */
  nodeAt: (address: string | undefined) => MemcachedProcess
}

async function fleet (t: Test, options: { nodes: number, settings: Overrides }): Promise<Fleet> {
  const nodes: MemcachedProcess[] = []
  const relays: Relay[] = []
  for (let i = 0; i < options.nodes; i++) {
    const m = await MemcachedProcess.start()
    t.teardown(() => m.stop())
    nodes.push(m)
    const relay = await new Relay(m).start()
    t.teardown(() => relay.close())
    relays.push(relay)
  }
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const settings: Overrides = {
    ...options.settings,
    session: { idleTimeout: IDLE_TIMEOUT, ...options.settings.session },
    shutdown: { timeoutMs: 1000 }
  }
  return {
    nodes,
    relays,
    app,
    sidecar: async () => {
      const sidecar = await startTestSidecar(testConfig(app.url, relays.map((r) => r.address), settings))
      t.teardown(() => sidecar.close())
      return sidecar
    },
    nodeAt: (address) => {
      const relay = relays.find((r) => r.address === address)
      if (relay === undefined) throw new Error(`no node at ${String(address)}`)
      return relay.target
    }
  }
}

/** Cookie fields: `1~key~primary~backup~version~mac`. */
const fields = (sid: string | undefined): string[] => (sid ?? '').split('~')

const isTombstone = (copy: string | undefined): boolean => copy !== undefined && / ended$/.test(copy)
const isLive = (copy: string | undefined): boolean => copy !== undefined && copy !== 'unopenable' && !isTombstone(copy)

/** The data of a live copy, from MemcachedProcess.copy's `<version> <base64url data>`. */
const dataOf = (copy: string | undefined): Record<string, unknown> | undefined => {
  const data = copy?.split(' ')[1]
  if (data === undefined || data === 'ended') return undefined
  return JSON.parse(Buffer.from(data, 'base64url').toString('utf8')) as Record<string, unknown>
}

/** One request carrying exactly `sid`, from a client that learns nothing from it. */
async function replay (sidecar: Sidecar, sid: string, path = '/'): Promise<{ status: number, session: Record<string, unknown> | undefined, sid: string | undefined }> {
  const client = new Browser()
  client.cookies.set('sid', sid)
  const res = await client.get(sidecar.url, path)
  return { status: res.status, session: res.body.session as Record<string, unknown> | undefined, sid: client.sid }
}

interface Attempt { readonly startedAt: number, readonly served: boolean }

/** Replays `sid` until it gets no session (bounded by `ms`); records when each attempt started. */
async function replayUntilGone (sidecar: Sidecar, sid: string, ms: number): Promise<{ gone: boolean, attempts: Attempt[] }> {
  const attempts: Attempt[] = []
  const gone = await eventually(async () => {
    const startedAt = Date.now()
    const served = (await replay(sidecar, sid)).session !== undefined
    attempts.push({ startedAt, served })
    return !served
  }, ms, 'the session to be refused')
  return { gone, attempts }
}

/** A bounded poll, as a value to assert on: true once `check` holds, false when `ms` pass first. */
async function eventually (check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<boolean> {
  return await until(check, ms, what).then(() => true, () => false)
}

/** Records each change of what one node holds under a session key, until stopped. */
function watchCopies (t: Test, m: MemcachedProcess, key: string): { states: string[], stop: () => Promise<void> } {
  const states: string[] = []
  let running = true
  const loop = (async () => {
    // eslint-disable-next-line no-unmodified-loop-condition -- `running` is cleared by stop() while this loop awaits
    while (running) {
      const copy = await m.copy(key).catch(() => 'unreachable')
      const state = copy === undefined ? 'none' : isLive(copy) ? `${copy.split(' ')[0] ?? ''} live` : copy
      if (states.at(-1) !== state) states.push(state)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })()
  const stop = async (): Promise<void> => {
    running = false
    await loop
  }
  t.teardown(stop)
  return { states, stop }
}

t.test('a logout is durable when answered, with memcached.write: async', async (t) => {
  const revalidateMs = 400
  const { relays, sidecar, nodeAt } = await fleet(t, {
    nodes: 2,
    settings: { cache: { revalidateMs }, memcached: { write: 'async', timeoutMs: 1000 } }
  })
  const a = await sidecar()
  const b = await sidecar()
  const user = new Browser()
  await user.get(a.url, `/login?set=${q({ user: 'ada' })}`)
  await user.get(a.url, `/?merge=${q({ page: 1 })}`)
  await a.store.flush(2000)
  const old = user.sid as string
  const key = keyOf(old)
  const [, , primary, backup] = fields(old)
  t.ok(backup !== undefined && backup !== primary, 'the session names a primary and a backup (replicas 2)')
  t.same((await replay(b, old)).session, { user: 'ada', page: 1 }, 'B serves the session and now caches it')

  // Every write that ends a session takes 150 ms to reach memcached: an async logout that does
  // not wait for the primary answers before its tombstone is there.
  for (const r of relays) r.delayEndsMs = 150
  const logout = await user.get(a.url, '/logout?destroy=1')
  const answeredAt = Date.now()
  t.equal(logout.status, 200)
  t.equal(user.sid, undefined, 'the logout response clears the cookie')

  const stored = await nodeAt(primary).copy(key)
  t.ok(isTombstone(stored), `when the logout response arrives, the primary already holds a tombstone (holds: ${String(stored)})`)
  t.ok(Number(stored?.split(' ')[0]) > versionOf(old), `the tombstone's version (${String(stored?.split(' ')[0])}) is above the session's last version (${versionOf(old)})`)

  const c = await sidecar()
  t.equal((await replay(c, old)).session, undefined, 'a sidecar started after the logout does not serve the old cookie, from its first request')

  const { gone, attempts } = await replayUntilGone(b, old, revalidateMs + 2000)
  t.ok(gone, 'B, which had the session cached, stops serving it')
  const late = attempts.filter((x) => x.startedAt >= answeredAt + revalidateMs && x.served)
  t.same(late, [], `B served no request started more than cache.revalidateMs (${revalidateMs} ms) after the logout was answered`)

  await a.store.flush(2000)
  t.ok(isTombstone(await nodeAt(backup).copy(key)), 'the backup holds a tombstone too')
  t.ok(isTombstone(await nodeAt(primary).copy(key)), 'and the primary still does')
})

/**
 * A and B hold a session; every memcached node dies; the user logs out on A and, with the same
 * old cookie, B changes the session; memcached comes back empty. `first` decides which of the
 * two pending writes the restarted node takes first (the relay refuses the other until then).
 */
async function logoutDuringOutage (t: Test, first: Written): Promise<void> {
  const revalidateMs = 500
  const { nodes, relays, sidecar } = await fleet(t, { nodes: 1, settings: { cache: { revalidateMs } } })
  const m = nodes[0] as MemcachedProcess
  const relay = relays[0] as Relay
  const a = await sidecar()
  const b = await sidecar()
  const user = new Browser()
  await user.get(a.url, `/login?set=${q({ user: 'ada' })}`)
  await a.store.flush(2000)
  const old = user.sid as string
  const key = keyOf(old)
  t.same((await replay(b, old)).session, { user: 'ada' }, 'B holds the session too')

  await m.stop()
  relay.refuse = { mkey: `sess:${key}`, kind: first === 'ended' ? 'live' : 'ended' }
  const logout = await user.get(a.url, '/logout?destroy=1')
  t.equal(logout.status, 200, 'A answers the logout although memcached is down')
  t.equal(user.sid, undefined, 'and clears the cookie')
  const other = new Browser()
  other.cookies.set('sid', old)
  const change = await other.get(b.url, `/?merge=${q({ cart: ['book'] })}`)
  t.equal(change.status, 200)
  t.same(change.body.session, { user: 'ada' }, 'B, which has not heard of the logout, serves its local copy during the outage and the app changes it')
  const issued = other.sid

  await m.start()
  const watch = watchCopies(t, m, key)
  if (first === 'ended') {
    t.ok(await eventually(async () => isTombstone(await m.copy(key)), 6000, 'the tombstone'),
      'A\'s pending tombstone reaches the restarted node (B\'s pending change is held back until then)')
  } else {
    t.ok(await eventually(async () => isLive(await m.copy(key)), 6000, 'B\'s change'),
      'B\'s pending change reaches the restarted node first (A\'s tombstone is held back until then)')
    t.same(dataOf(await m.copy(key)), { user: 'ada', cart: ['book'] }, 'memcached holds B\'s changed session for now')
  }
  relay.refuse = undefined
  t.ok(await eventually(async () => isTombstone(await m.copy(key)), 8000, 'the tombstone'), 'once both pending writes are through, memcached holds a tombstone for the key')
  await a.store.flush(3000)
  await b.store.flush(3000)
  t.comment(`refused by the relay while ordering the writes: ${relay.refused}`)

  const cookies: Array<[string, string]> = [['the old cookie', old]]
  if (issued !== undefined && issued !== old) cookies.push(['the cookie B issued during the outage', issued])
  for (const [label, sid] of cookies) {
    t.ok((await replayUntilGone(b, sid, revalidateMs + 3000)).gone, `B stops serving ${label} within cache.revalidateMs (+ margin)`)
  }
  const c = await sidecar()
  for (const [label, sid] of cookies) {
    for (const [name, node] of [['A', a], ['B', b], ['C (started after the outage)', c]] as const) {
      let served = 0
      for (let i = 0; i < 3; i++) if ((await replay(node, sid)).session !== undefined) served++
      t.equal(served, 0, `${name}: ${label} gets no session (0 of 3 replays served)`)
    }
  }
  await a.store.flush(2000)
  await b.store.flush(2000)
  await c.store.flush(2000)
  const final = await m.copy(key)
  await watch.stop()
  t.ok(isTombstone(final), `memcached still holds a tombstone for the key at the end (holds: ${String(final)})`)
  const ended = watch.states.findIndex((s) => isTombstone(s))
  const liveAfter = ended < 0 ? [] : watch.states.slice(ended).filter((s) => / live$/.test(s))
  t.same(liveAfter, [], 'once memcached held the tombstone, it never held a live copy of the key again')
  if (first === 'ended') t.same(watch.states.filter((s) => / live$/.test(s)), [], 'the key was never live on the restarted node')
  t.comment(`what the restarted node held under the key, in order: ${watch.states.join(' -> ')}`)
}

t.test('a logout during a memcached outage is not undone by a change on another sidecar', async (t) => {
  t.test('when A\'s tombstone reaches the restarted node before B\'s change', async (t) => {
    await logoutDuringOutage(t, 'ended')
  })
  t.test('when B\'s change reaches the restarted node before A\'s tombstone', async (t) => {
    await logoutDuringOutage(t, 'live')
  })
})

t.test('a tombstone always wins over live data, whatever the versions', async (t) => {
  t.test('a sidecar holding a newer live copy stops serving the session within cache.revalidateMs', async (t) => {
    const revalidateMs = 400
    const { nodes, sidecar } = await fleet(t, { nodes: 1, settings: { cache: { revalidateMs } } })
    const m = nodes[0] as MemcachedProcess
    const b = await sidecar()
    const user = new Browser()
    await user.get(b.url, `/login?set=${q({ user: 'ada' })}`)
    await user.get(b.url, `/?merge=${q({ page: 1 })}`)
    await user.get(b.url, `/?merge=${q({ page: 2 })}`)
    await b.store.flush(2000)
    const old = user.sid as string
    const key = keyOf(old)
    t.equal(versionOf(old), 3, 'B holds the session at version 3')

    await m.putCopy(key, 1, b64({ user: 'ada' }), 'sess:', true)
    const endedAt = Date.now()
    t.equal(await m.copy(key), '1 ended', 'memcached holds a tombstone at version 1, below B\'s')
    const { gone, attempts } = await replayUntilGone(b, old, revalidateMs + 2000)
    t.ok(gone, 'B stops serving the session')
    t.same(attempts.filter((x) => x.startedAt >= endedAt + revalidateMs && x.served), [], `B served no request started more than cache.revalidateMs (${revalidateMs} ms) after the tombstone was stored`)

    await replay(b, old, `/?merge=${q({ page: 3 })}`)
    await b.store.flush(2000)
    t.equal(await m.copy(key), '1 ended', 'a change sent with the old cookie afterwards leaves the tombstone as it was')
  })

  t.test('a change a sidecar makes before it noticed the tombstone does not make the key live again', async (t) => {
    // Wide, so B surely still serves its local copy when the change comes.
    const revalidateMs = 2500
    const { nodes, sidecar } = await fleet(t, { nodes: 1, settings: { cache: { revalidateMs } } })
    const m = nodes[0] as MemcachedProcess
    const b = await sidecar()
    const user = new Browser()
    await user.get(b.url, `/login?set=${q({ user: 'ada' })}`)
    await user.get(b.url, `/?merge=${q({ page: 1 })}`)
    await b.store.flush(2000)
    const old = user.sid as string
    const key = keyOf(old)

    await m.putCopy(key, 1, b64({ user: 'ada' }), 'sess:', true)
    const change = await user.get(b.url, `/?merge=${q({ cart: ['book'] })}`)
    t.equal(change.status, 200)
    t.comment(change.body.session === undefined ? 'B had already seen the tombstone' : 'B served its local copy and the app changed it')
    await b.store.flush(2000)
    t.ok(isTombstone(await m.copy(key)), `the change did not make the key live: memcached holds ${String(await m.copy(key))}`)

    const cookies = [old, ...(user.sid !== undefined && user.sid !== old && keyOf(user.sid) === key ? [user.sid] : [])]
    for (const sid of cookies) {
      t.ok((await replayUntilGone(b, sid, revalidateMs + 1000)).gone, `B stops serving version ${versionOf(sid)} of the ended key`)
    }
    const again = new Browser()
    again.cookies.set('sid', old)
    await again.get(b.url, `/?merge=${q({ again: 1 })}`)
    await b.store.flush(2000)
    t.ok(isTombstone(await m.copy(key)), 'a later change sent with the old cookie does not either')
    const c = await sidecar()
    for (const sid of cookies) t.equal((await replay(c, sid)).session, undefined, `a sidecar started now does not serve version ${versionOf(sid)}`)
  })
})

t.test('concurrent changes on two sidecars lose nothing', async (t) => {
  for (const write of ['sync', 'async'] as const) {
    t.test(`write: ${write}: a change stored by B survives three parallel merges on A, whose cached copy lacks it (10 trials)`, async (t) => {
      // Wide, so A surely serves (and changes) its cached copy without revalidating it first.
      const { nodes, sidecar } = await fleet(t, { nodes: 1, settings: { cache: { revalidateMs: 5000 }, memcached: { write } } })
      const m = nodes[0] as MemcachedProcess
      const a = await sidecar()
      const b = await sidecar()
      const trials = 10
      const lost: Record<'memcached' | 'A' | 'B', string[]> = { memcached: [], A: [], B: [] }
      for (let i = 0; i < trials; i++) {
        const user = new Browser()
        await user.get(a.url, `/?set=${q({ trial: i })}`)
        await a.store.flush(2000)
        const cached = user.sid as string
        // B changes the session, and the change is stored before A's requests come.
        const tabOnB = new Browser()
        tabOnB.cookies.set('sid', cached)
        await tabOnB.get(b.url, `/?merge=${q({ b: 1 })}`)
        await b.store.flush(2000)
        // Three requests sent with the cookie the browser had before: A serves its cached copy.
        const tabsOnA = [1, 2, 3].map(() => new Browser())
        for (const tab of tabsOnA) tab.cookies.set('sid', cached)
        await Promise.all(tabsOnA.map(async (tab, j) => await tab.get(a.url, `/?merge=${q({ [`a${j + 1}`]: 1 })}`)))
        await a.store.flush(2000)
        await b.store.flush(2000)

        const want = ['trial', 'b', 'a1', 'a2', 'a3']
        const missing = (session: Record<string, unknown> | undefined): string[] => want.filter((k) => session?.[k] === undefined)
        const stored = await m.copy(keyOf(cached))
        if (missing(dataOf(stored)).length > 0) lost.memcached.push(`trial ${i}: ${String(stored?.split(' ')[0])} lacks ${missing(dataOf(stored)).join(',')}`)
        const newest = [tabOnB, ...tabsOnA].map((x) => x.sid).filter((s): s is string => s !== undefined && keyOf(s) === keyOf(cached))
          .sort((x, y) => versionOf(y) - versionOf(x))[0] ?? cached
        for (const [name, node] of [['A', a], ['B', b]] as const) {
          const gap = missing((await replay(node, newest)).session)
          if (gap.length > 0) lost[name].push(`trial ${i}: lacks ${gap.join(',')}`)
        }
      }
      t.same(lost.memcached, [], `memcached's copy holds b, a1, a2 and a3 in each of ${trials} trials`)
      t.same(lost.A, [], `a read on A (newest cookie) has all of them in each of ${trials} trials`)
      t.same(lost.B, [], `a read on B (newest cookie) has all of them in each of ${trials} trials`)
    })
  }

  t.test('a change made on B becomes visible on A within cache.revalidateMs, though A has the session cached (revalidation compares content)', async (t) => {
    const revalidateMs = 300
    const { sidecar } = await fleet(t, { nodes: 1, settings: { cache: { revalidateMs } } })
    const a = await sidecar()
    const b = await sidecar()
    const user = new Browser()
    await user.get(a.url, `/?set=${q({ user: 'ada' })}`)
    await a.store.flush(2000)
    const cached = user.sid as string
    t.same((await replay(a, cached)).session, { user: 'ada' }, 'A serves its cached copy')

    await replay(b, cached, `/?merge=${q({ b: 1 })}`)
    await b.store.flush(2000)
    const changedAt = Date.now()
    const attempts: Attempt[] = []
    const seen = await eventually(async () => {
      const startedAt = Date.now()
      const session = (await replay(a, cached)).session
      attempts.push({ startedAt, served: session?.b === 1 })
      return session?.b === 1
    }, revalidateMs + 2000, 'B\'s change on A')
    t.ok(seen, 'A serves B\'s change to a request carrying the cookie A already knew')
    t.same(attempts.filter((x) => x.startedAt >= changedAt + revalidateMs && !x.served), [], `no request on A started more than cache.revalidateMs (${revalidateMs} ms) after B's change was stored missed it`)
  })
})

t.test('a login sent again with the old cookie, its first answer lost, gets a session that stays; a logout before it still wins', async (t) => {
  const { sidecar, nodeAt } = await fleet(t, { nodes: 2, settings: { memcached: { write: 'sync' } } })
  const a = await sidecar()
  const b = await sidecar()
  for (const logoutFirst of [false, true]) {
    const user = new Browser()
    await user.get(a.url, `/login?set=${q({ user: 'guest' })}`)
    const old = user.sid as string
    t.same((await replay(b, old)).session, { user: 'guest' }, 'B holds the session too')
    if (logoutFirst) {
      // Another tab logs out first: the login that follows with the old cookie must not bring it back.
      t.equal((await replay(a, old, '/logout?destroy=1')).sid, undefined, 'the logout clears the cookie')
    } else {
      // The login reaches A, which regenerates the session; its answer never reaches the browser.
      t.ok((await replay(a, old, `/login?merge=${q({ user: 'ada' })}&regenerate=1`)).sid, 'A regenerated the session')
    }
    // The browser sends the login again with the cookie it still holds; B answers.
    const again = await user.get(b.url, `/login?merge=${q({ user: 'ada' })}&regenerate=1`)
    t.equal(again.status, 200)
    if (logoutFirst) {
      // write: sync: the response waited for the new key's write, which found the logout.
      t.equal(user.sid, undefined, 'after a logout, the login sent with the old cookie ends with it: its response clears the cookie')
      t.equal((await user.get(b.url, '/')).body.session, undefined, 'and the next request has no session')
      t.equal((await replay(a, old)).session, undefined, 'nor does the old cookie, on either sidecar')
    } else {
      const sid = user.sid as string
      t.not(keyOf(sid), keyOf(old), 'a new key')
      const next = await user.get(b.url, '/')
      const [, , primary] = fields(sid)
      t.same(next.body.session, { user: 'ada' }, 'the next request has the session: the earlier regeneration was not a logout')
      t.equal(keyOf(user.sid as string), keyOf(sid), 'under the key the second login gave')
      t.ok(isLive(await nodeAt(primary).copy(keyOf(sid))), 'stored live on its primary')
    }
  }
})
