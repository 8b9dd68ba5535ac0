import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { beyondPeriods, check, said, type CheckOptions, type Finding } from '../../chaos/lib/checks.js'
import { runSchedule, type ChaosResult } from '../../chaos/lib/experiment.js'
import { claim, LOCK_DIR, PortReservation } from '../../chaos/lib/ports.js'
import { itemCode, itemName, itemsOf, parseCookie, type Exchange, type ExchangeKind, type FaultRecord, type SessionLife } from '../../chaos/lib/history.js'
import { Rng } from '../../chaos/lib/prng.js'
import { details, summary, table, tally, timeline } from '../../chaos/lib/report.js'
import { ACTION_MS, planSchedule, type PlannedFault, type Schedule, type ScheduleOptions } from '../../chaos/lib/schedule.js'

// The fault-injection checker's own logic (chaos/lib), on synthetic histories: a checker that
// cannot see a lost update is worse than none. The real run is test/e2e/chaos.test.ts.

const R = 1000
const SYNC: CheckOptions = { revalidateMs: R, write: 'sync', asyncWindowMs: 50 }
const ASYNC: CheckOptions = { ...SYNC, write: 'async' }

const cookie = (version: number, key = 'K', primary = '127.0.0.1:1', backup = '127.0.0.1:2'): string => `1~${key}~${primary}~${backup}~${version}~mac`

function session (over: Partial<SessionLife> = {}): SessionLife {
  return {
    id: 'u0.s0',
    user: 0,
    key: 'K',
    createdBy: 'u0.0',
    createdAt: 10,
    endedAt: undefined,
    endedBy: undefined,
    endRid: undefined,
    endAttemptAt: undefined,
    abandonedAt: undefined,
    cookies: [{ at: 10, version: 1, primary: '127.0.0.1:1', backup: '127.0.0.1:2' }],
    lastCookie: cookie(1),
    ...over
  }
}

let rids = 0
/** One request of user 0: `items` is what the app saw (null: no session). */
function ex (kind: ExchangeKind, sentAt: number, o: { items?: number[] | null, item?: string, sent?: number, back?: string | null, servedBy?: number, status?: number, unavailable?: boolean, key?: string, user?: string, session?: string | undefined, duration?: number } = {}): Exchange {
  const items = o.items === undefined ? [] : o.items
  return {
    rid: `u0.${rids++}`,
    user: 0,
    kind,
    session: 'session' in o ? o.session : 'u0.s0',
    sentVersion: o.sent,
    item: o.item,
    sentAt,
    doneAt: sentAt + (o.duration ?? 5),
    status: o.status ?? 200,
    view: o.status !== undefined && o.status !== 200
      ? undefined
      : { key: items === null ? undefined : o.key ?? 'K', user: items === null ? undefined : o.user ?? 'u0', session: items === null ? undefined : 'u0.s0', items: Int32Array.from(items ?? []), unavailable: o.unavailable ?? false },
    setCookie: o.back,
    servedBy: o.servedBy ?? 0,
    via: undefined
  }
}

/** A login, then appends of i0..i<n-1> (each acknowledged with the next version), then a final read showing `final`. */
function run (n: number, final: number[], opts: { servedBy?: (i: number) => number } = {}): Exchange[] {
  rids = 0
  const list: Exchange[] = [ex('login', 5, { session: undefined, back: cookie(1) })]
  const seen: number[] = []
  for (let i = 0; i < n; i++) {
    list.push(ex('append', 100 + i * 100, { items: [...seen], item: `i${i}`, sent: i + 1, back: cookie(i + 2), servedBy: opts.servedBy?.(i) ?? i % 3 }))
    seen.push(i)
  }
  list.push(ex('final', 100 + n * 100, { items: final, sent: n + 1 }))
  return list
}

function fault (over: Partial<FaultRecord> & Pick<FaultRecord, 'kind' | 'at'>): FaultRecord {
  const sidecar = over.kind.startsWith('sidecar')
  const slot = over.slot ?? 0
  return {
    index: 0,
    target: sidecar ? `sidecar-${slot}` : `memcached-${slot}`,
    slot,
    address: sidecar ? undefined : `127.0.0.1:${slot + 1}`,
    plannedAt: over.at,
    lostAt: over.at,
    healedAt: over.at,
    holdMs: 0,
    ...over
  }
}

t.test('Rng: the same seed gives the same numbers, ranges hold', async (t) => {
  const a = new Rng(42)
  const b = new Rng(42)
  const xs = Array.from({ length: 50 }, () => a.next())
  t.same(xs, Array.from({ length: 50 }, () => b.next()), 'same sequence')
  t.notSame(xs, Array.from({ length: 50 }, () => new Rng(43).next()), 'another seed differs')
  const r = new Rng(7)
  for (let i = 0; i < 1000; i++) {
    const n = r.int(3, 5)
    if (n < 3 || n > 5 || !Number.isInteger(n)) t.fail(`int out of range: ${n}`)
    const f = r.between(1, 2)
    if (f < 1 || f >= 2) t.fail(`between out of range: ${f}`)
  }
  t.equal(r.pick(['only']), 'only')
  t.throws(() => r.pick([]), /empty/)
  t.ok(['a', 'b'].includes(r.weighted({ a: 1, b: 0 })))
  t.equal(new Rng(1).weighted({ a: 0, b: 0 }), 'b', 'all-zero weights fall back to the last')
  t.ok(r.exponential(10) >= 0)
  t.equal(new Rng(9).fork(3).next(), new Rng(9).fork(3).next(), 'forks are stable')
  t.ok(r.chance(1) && !r.chance(0))
})

t.test('schedule: seeded, bounded, one fault at a time revalidateMs apart, one scale-out', async (t) => {
  const options: ScheduleOptions = { seed: 5, durationMs: 60_000, revalidateMs: R, overlap: false, sidecars: 3, memcached: 3, scaleOut: { at: 0.4, sidecars: 2, memcached: 2 }, maxEvents: 100 }
  const s = planSchedule(options)
  t.same(planSchedule(options).faults, s.faults, 'same seed, same schedule')
  t.notSame(planSchedule({ ...options, seed: 6 }).faults, s.faults, 'another seed, another schedule')
  t.equal(s.faults.filter((f) => f.kind === 'scale-out').length, 1, 'one scale-out')
  const scaleAt = s.faults.find((f) => f.kind === 'scale-out')?.at ?? Infinity
  t.ok(scaleAt >= 24_000, 'at 40% of the run')
  for (const [i, f] of s.faults.entries()) {
    if (f.at >= options.durationMs) t.fail(`fault #${i} after the end`)
    const limit = f.at >= scaleAt ? 5 : 3
    if (f.target >= limit) t.fail(`fault #${i} targets slot ${f.target} of ${limit}`)
    const next = s.faults[i + 1]
    if (next !== undefined && next.at < f.at + f.holdMs + ACTION_MS[f.kind] + R) t.fail(`fault #${i + 1} too close to #${i}`)
  }
  t.ok(new Set(s.faults.map((f) => f.kind)).size >= 5, 'several kinds')
  t.equal(planSchedule({ ...options, maxEvents: 4 }).faults.length, 4, 'bounded by maxEvents')
  t.equal(planSchedule({ ...options, scaleOut: undefined }).faults.filter((f) => f.kind === 'scale-out').length, 0)

  const o = planSchedule({ ...options, overlap: true, meanGapMs: 200 })
  const scaledAt = o.faults.find((f) => f.kind === 'scale-out')?.at ?? Infinity
  let overlaps = 0
  for (const [i, f] of o.faults.entries()) {
    if (f.at >= options.durationMs) t.fail('overlap: after the end')
    const end = f.at + f.holdMs + ACTION_MS[f.kind]
    if (o.faults.slice(i + 1).some((g) => g.at < end && g.kind !== 'scale-out')) overlaps++
    if (f.kind.startsWith('sidecar')) {
      const total = f.at >= scaledAt ? 5 : 3
      const busy = o.faults.filter((g) => g.kind.startsWith('sidecar') && g.at <= f.at && g.at + g.holdMs + ACTION_MS[g.kind] > f.at).length
      if (busy >= total) t.fail(`overlap: every sidecar down at ${f.at}`)
    }
  }
  t.ok(overlaps > 10, `faults overlap (${overlaps})`)
})

t.test('history helpers', async (t) => {
  t.same(parseCookie('1~K~a:1~b:2~7~mac'), { key: 'K', primary: 'a:1', backup: 'b:2', version: 7 })
  t.same(parseCookie('1~K~a:1~7~mac'), { key: 'K', primary: 'a:1', backup: undefined, version: 7 })
  t.equal(parseCookie('2~K~a~1~m'), undefined)
  t.equal(parseCookie('1~K~a~x~m'), undefined)
  t.equal(itemName(itemCode('i12') as number), 'i12')
  t.equal(itemName(itemCode('z3') as number), 'z3')
  t.equal(itemCode('user'), undefined)
  t.same(Array.from(itemsOf({ user: 'u0', i1: true, z0: true })), [1, -1])
  t.same(Array.from(itemsOf(undefined)), [])
})

t.test('a clean history has no finding', async (t) => {
  const exchanges = run(5, [0, 1, 2, 3, 4])
  const { findings, notes } = check({ exchanges, sessions: [session()], faults: [] }, SYNC)
  t.same(findings, [])
  t.equal(notes.ackedWithoutNewVersion, 0)
  t.equal(notes.sessionsBeyond, 0)
})

t.test('an acknowledged update missing at the end is lost; the verdict follows the faults', async (t) => {
  const exchanges = run(5, [0, 1, 3, 4], { servedBy: () => 1 })
  const within = check({ exchanges, sessions: [session()], faults: [] }, SYNC).findings
  t.match(within, [{ kind: 'lost-update', verdict: 'within', item: 'i2', observations: 1, detail: /i2 acknowledged by u0.3 \(append .* sidecar-1, 200 after 5 ms, v4\), missing from 1 later read/ }])
  t.match(within[0]?.reason, /no fault/)

  // write: async and the sidecar that answered killed right after: the documented window.
  const ack = exchanges.find((e) => e.item === 'i2') as Exchange
  const kill = fault({ kind: 'sidecar-kill', slot: 1, at: ack.doneAt + 3 })
  const excused = check({ exchanges, sessions: [session()], faults: [kill] }, ASYNC)
  t.match(excused.findings, [{ kind: 'lost-update', verdict: 'async-window' }])
  t.same(excused.notes.asyncDelays, [3])
  t.match(check({ exchanges, sessions: [session()], faults: [kill] }, SYNC).findings, [{ verdict: 'within', reason: /its copies lost, .*#0 sidecar kill -9 sidecar-1/ }], 'sync has no window')
  t.match(check({ exchanges, sessions: [session()], faults: [{ ...kill, at: ack.doneAt + 500 }] }, ASYNC).findings, [{ verdict: 'within' }], 'a kill long after the answer excuses nothing')
  // ...unless one of the session's nodes was down when it answered: the window lasts until it returns.
  const outage = fault({ kind: 'memcached-stop', slot: 0, at: ack.doneAt - 100, healedAt: ack.doneAt + 800 })
  t.match(check({ exchanges, sessions: [session()], faults: [outage, { ...kill, index: 1, at: ack.doneAt + 500 }] }, ASYNC).findings, [{ verdict: 'async-window', reason: /during #0 memcached SIGSTOP/ }])

  // Two of the session's copies lost within revalidateMs: beyond the guarantee.
  const node = fault({ kind: 'memcached-kill', slot: 0, at: ack.doneAt + 10, healedAt: ack.doneAt + 300 })
  const sidecar = fault({ index: 1, kind: 'sidecar-kill', slot: 1, at: ack.doneAt + 600 })
  const beyond = check({ exchanges, sessions: [session()], faults: [node, sidecar] }, SYNC)
  t.match(beyond.findings, [{ verdict: 'beyond', reason: /memcached kill -9 memcached-0 .*, then #1 sidecar kill -9 sidecar-1/ }])
  t.equal(beyond.notes.sessionsBeyond, 1)
  // The same two losses revalidateMs apart: inside.
  t.match(check({ exchanges, sessions: [session()], faults: [node, { ...sidecar, at: node.healedAt + R }] }, SYNC).findings, [{ verdict: 'within' }])
})

t.test('losses count only for copies the session had', async (t) => {
  const exchanges = run(3, [0, 1, 2], { servedBy: () => 0 })
  const s = session()
  // A node its cookies never named, a sidecar that never served it.
  const elsewhere = [fault({ kind: 'memcached-kill', slot: 4, at: 150, healedAt: 200 }), fault({ index: 1, kind: 'sidecar-kill', slot: 2, at: 250 })]
  t.same(beyondPeriods(s, exchanges, elsewhere, R), [])
  const here = [fault({ kind: 'memcached-kill', slot: 0, at: 150, healedAt: 200 }), fault({ index: 1, kind: 'sidecar-term', slot: 0, at: 250, lostAt: 400 })]
  t.match(beyondPeriods(s, exchanges, here, R), [{ start: 150, end: 1400 }])
  // A sidecar restarted since it last served the session holds no copy of it.
  // (The restart itself was a loss, alone: more than revalidateMs before the next.)
  const restarted = [fault({ index: 2, kind: 'sidecar-kill', slot: 0, at: 130, healedAt: 140 }), ...here.map((f) => ({ ...f, at: f.at + 1500, lostAt: f.lostAt + 1500, healedAt: f.healedAt + 1500 }))]
  const served = exchanges.map((e) => ({ ...e, servedBy: e.sentAt < 130 ? 0 : 1 }))
  t.same(beyondPeriods(s, served, restarted, R), [])
  t.equal(beyondPeriods(s, exchanges, restarted, R).length, 1, 'had it served the session since, its loss would count')
  t.same(beyondPeriods(s, exchanges, [fault({ kind: 'scale-out', at: 150 })], R), [])
})

t.test('a read that lacks a known item and later has it again is a stale read', async (t) => {
  const exchanges = run(3, [0, 1, 2])
  const third = exchanges[3] as Exchange
  exchanges[3] = { ...third, view: { ...(third.view as NonNullable<Exchange['view']>), items: Int32Array.from([0]) } }
  t.match(check({ exchanges, sessions: [session()], faults: [] }, SYNC).findings, [{ kind: 'stale-read', item: 'i1', detail: /back by the last read/ }])
  // write: async while one of the session's nodes is out: the write waits for it (SPEC: until a
  // node returns), and a read elsewhere meanwhile misses the update: the async window.
  const frozen = fault({ kind: 'memcached-stop', slot: 0, at: third.sentAt - 50, healedAt: third.doneAt + 500 })
  t.match(check({ exchanges, sessions: [session()], faults: [frozen] }, ASYNC).findings, [{ kind: 'stale-read', verdict: 'async-window', reason: /waited for a node of the session: #0 memcached SIGSTOP/ }])
  t.match(check({ exchanges, sessions: [session()], faults: [frozen] }, SYNC).findings, [{ kind: 'stale-read', verdict: 'within' }], 'sync has no window')
  const elsewhere = fault({ kind: 'memcached-stop', slot: 4, at: third.sentAt - 50, healedAt: third.doneAt + 500 })
  t.match(check({ exchanges, sessions: [session()], faults: [elsewhere] }, ASYNC).findings, [{ kind: 'stale-read', verdict: 'within' }], 'a node the session is not on excuses nothing')
  const restart = fault({ kind: 'memcached-restart-empty', slot: 0, at: third.sentAt - 50, healedAt: third.sentAt - 40 })
  t.match(check({ exchanges, sessions: [session()], faults: [restart] }, ASYNC).findings, [{ kind: 'stale-read', verdict: 'within' }], 'nor a restart (the node answers at once)')
})

t.test('cookie versions never go backwards', async (t) => {
  const exchanges = run(3, [0, 1, 2])
  exchanges.push(ex('final', 2000, { items: [0, 1, 2], sent: 4, back: cookie(2) }))
  t.match(check({ exchanges, sessions: [session()], faults: [] }, SYNC).findings, [{ kind: 'version-backwards', detail: 'Set-Cookie version 2 after 4' }])
})

t.test('no session for a valid cookie: logged out, unless the sidecar said the session was unavailable', async (t) => {
  const exchanges = run(2, [0, 1])
  exchanges.push(ex('append', 1000, { items: null, item: 'i9', sent: 3, back: null }))
  const { findings } = check({ exchanges, sessions: [session({ abandonedAt: 1005 })], faults: [] }, SYNC)
  t.match(findings, [{ kind: 'logged-out', detail: /got no session/ }])

  const degraded = run(2, [0, 1])
  degraded.splice(2, 0, ex('append', 150, { items: null, item: 'i7', sent: 2, unavailable: true }))
  const checked = check({ exchanges: degraded, sessions: [session()], faults: [] }, SYNC)
  t.same(checked.findings, [], 'documented: X-Session-Unavailable, cookie kept')
  t.same(checked.notes.unavailable, { within: 1, beyond: 0 })

  // After the user's own (unanswered) logout attempt, no session is no anomaly.
  const ended = run(2, [0, 1])
  ended.push(ex('logout', 1000, { items: [0, 1], sent: 3, status: 502 }), ex('logout', 1100, { items: null, sent: 3, back: null }))
  t.same(check({ exchanges: ended, sessions: [session({ endAttemptAt: 1000, endedAt: 1105, endedBy: 'logout' })], faults: [] }, SYNC).findings, [])

  // Chaos seed 7, u14.438: the user's logout met X-Session-Unavailable (a node of the session
  // paused); the sidecar ended the session by its cookie and cleared it: the logout the user
  // asked for, counted as the documented degradation, not a logout by the product.
  const logout = run(2, [0, 1])
  logout.push(ex('logout', 1000, { items: null, sent: 3, back: null, unavailable: true }))
  const out = check({ exchanges: logout, sessions: [session({ endAttemptAt: 1000, endedAt: 1005, endedBy: 'logout' })], faults: [] }, SYNC)
  t.same(out.findings, [], 'a logout answered with X-Session-Unavailable and the cookie cleared is the user\'s logout')
  t.same(out.notes.unavailable, { within: 1, beyond: 0 })
  // The same logout finding no session while memcached answered: the session was gone before.
  const gone = run(2, [0, 1])
  gone.push(ex('logout', 1000, { items: null, sent: 3, back: null }))
  t.match(check({ exchanges: gone, sessions: [session({ endAttemptAt: 1000, endedAt: 1005, endedBy: 'logout' })], faults: [] }, SYNC).findings, [{ kind: 'logged-out', detail: /logout .* got no session/ }])

  // A new key minted for a request that carried a valid cookie.
  const minted = run(1, [0])
  minted.push(ex('append', 1000, { items: null, item: 'i5', sent: 2, back: cookie(1, 'OTHER') }))
  t.match(check({ exchanges: minted, sessions: [session()], faults: [] }, SYNC).findings, [{ kind: 'logged-out', detail: /new key OTHER/ }])
})

t.test('an ended session served after revalidateMs is resurrected; inside it, counted as allowed', async (t) => {
  const exchanges = run(2, [0, 1])
  const s = session({ endAttemptAt: 1000, endedAt: 1005, endedBy: 'logout', endRid: 'u0.99' })
  exchanges.push(
    ex('logout', 1000, { items: [0, 1], sent: 3, back: null }),
    ex('replay', 1500, { items: [0, 1], item: 'z0', sent: 3 }),
    ex('replay', 1005 + R + 1, { items: [0, 1], item: 'z1', sent: 3, servedBy: 2 }),
    ex('replay', 3000, { items: null, item: 'z2', sent: 3 })
  )
  const { findings, notes } = check({ exchanges, sessions: [s], faults: [] }, SYNC)
  t.match(findings, [{ kind: 'resurrected', observations: 1, detail: /ended by logout .* sidecar-2/ }])
  t.equal(notes.servedInWindow, 1)
  // Replaced by a login in async mode, with the sidecar that answered the login killed at once.
  const login = ex('login', 1000, { items: [0, 1], sent: 3, back: cookie(1, 'NEW'), servedBy: 1 })
  const replaced = session({ endAttemptAt: 1000, endedAt: login.doneAt, endedBy: 'login', endRid: login.rid })
  const async = check({ exchanges: [...exchanges.slice(0, -4), login, ...exchanges.slice(-3)], sessions: [replaced], faults: [fault({ kind: 'sidecar-kill', slot: 1, at: login.doneAt + 2 })] }, ASYNC)
  t.match(async.findings, [{ kind: 'resurrected', verdict: 'async-window' }])
})

t.test("another session's data, or an item never sent, is reported", async (t) => {
  const exchanges = run(2, [0, 1])
  exchanges.push(ex('final', 2000, { items: [0, 1], sent: 3, key: 'K2' }), ex('final', 2100, { items: [0, 1], sent: 3, user: 'u9' }), ex('final', 2200, { items: [0, 1, 77, -5], sent: 3 }))
  const kinds = check({ exchanges, sessions: [session()], faults: [] }, SYNC).findings.map((f) => `${f.kind} ${f.item ?? ''}`)
  t.same(kinds, ['foreign-session ', 'foreign-session ', 'phantom-item i77', 'phantom-item z4'])
})

t.test('report: tables, details, timeline', async (t) => {
  t.equal(table([['a', 'bb'], ['ccc', 'd']]), 'a    bb\nccc   d')
  const exchanges = run(3, [0, 2])
  const kill = fault({ kind: 'memcached-stop', slot: 0, at: 150, healedAt: 900, holdMs: 750 })
  const { findings, notes } = check({ exchanges, sessions: [session()], faults: [kill, fault({ index: 1, kind: 'sidecar-kill', slot: 0, at: 950, error: 'did not exit' })] }, SYNC)
  const result: ChaosResult = {
    options: { seed: 1, durationMs: 10_000, write: 'async', revalidateMs: R, overlap: true, users: 1, asyncWindowMs: 50, scaleOut: true },
    schedule: { options: { seed: 1, durationMs: 10_000, revalidateMs: R, overlap: true, sidecars: 3, memcached: 3, maxEvents: 10 }, faults: [{ index: 0, at: 150, kind: 'memcached-stop', target: 0, holdMs: 750 }] },
    faults: [kill],
    skipped: 2,
    exchanges,
    sessions: [session()],
    findings,
    notes: { ...notes, asyncDelays: [1.5, 3], ackedWithoutNewVersion: 1, unverified: 2 },
    counters: { 'stale reads': 1, 'copies restored': 0, relocations: 0, failovers: 0, 'writes that reached no node': 0, 'writes dropped': 0, 'updates refused': 0, 'degraded requests': 0 },
    topology: { memcached: [3, 5], sidecars: [3, 5] },
    problems: ['sidecar-1: writes still pending after 5 s'],
    faultPhaseMs: 9000,
    elapsedMs: 12_000,
    wallT0: 0,
    logs: []
  }
  const text = summary(result)
  t.match(text, /seed 1, write: async, 10 s of faults overlapping faults allowed/)
  t.match(text, /acknowledged update lost\s+0\s+1\s+0/)
  t.match(text, /2 planned faults not run/)
  t.match(text, /async window: 2 anomalies excused, kill -9 from 1.5 to 3.0 ms/)
  t.match(text, /problem: sidecar-1/)
  t.match(details(result), /\[beyond\] acknowledged update lost: user u0, session u0.s0 \(key K\), item i1/)
  t.match(details(result, 0), /\(\+1 more\)/)
  const both = details({ ...result, findings: [...findings, { ...(findings[0] as Finding), verdict: 'within', rid: 'u0.9' }] })
  t.ok(both.indexOf('[within]') < both.indexOf('[beyond]'), 'within the guarantee first')
  t.equal(details({ ...result, findings: [] }), 'no anomalies')
  t.match(timeline(result), /#0 memcached SIGSTOP memcached-0 0.150 s-0.900 s/)
  t.same(tally([]).resurrected, { within: 0, beyond: 0, 'async-window': 0 })
})

t.test('edge cases: nearby faults, unacknowledged items, degraded answers, unverified acks', async (t) => {
  // A fault on a node the session never used: within, and said so.
  const exchanges = run(3, [0, 2])
  const elsewhere = fault({ kind: 'memcached-kill', slot: 7, at: 350, healedAt: 380 })
  t.match(check({ exchanges, sessions: [session()], faults: [elsewhere] }, SYNC).findings, [{ verdict: 'within', reason: /none of its copies lost; faults nearby: #0 memcached kill -9 memcached-7/ }])

  // An item only shown in a response (its append unanswered), gone later: reported too.
  const seen = run(2, [0, 1])
  seen.splice(3, 0, ex('append', 250, { item: 'i2', sent: 3, status: 502 }), ex('append', 260, { items: [0, 1, 2], item: 'i3', sent: 3, back: cookie(4) }))
  seen.push(ex('final', 900, { items: [0, 1, 3], sent: 4 }))
  const shown = check({ exchanges: seen, sessions: [session()], faults: [] }, SYNC).findings
  t.match(shown.filter((f) => f.item === 'i2'), [{ kind: 'lost-update', detail: /i2 shown in a response/ }])
  t.match(shown.filter((f) => f.item === 'i3'), [{ kind: 'stale-read', detail: /i3 acknowledged by/ }], 'i3 missed by one read, back at the end')

  // Answered with the session but no new version; acknowledged after the last read.
  const quiet = run(1, [0])
  quiet.splice(2, 0, ex('append', 150, { items: [0], item: 'i1', sent: 2 }))
  quiet.push(ex('append', 900, { items: [0, 1], item: 'i2', sent: 2, back: cookie(3) }))
  const notes = check({ exchanges: quiet, sessions: [session()], faults: [] }, SYNC).notes
  t.equal(notes.ackedWithoutNewVersion, 1)
  t.equal(notes.unverified, 1)

  // X-Session-Unavailable while two copies were lost: counted beyond.
  const degraded = run(2, [0, 1])
  degraded.splice(2, 0, ex('append', 150, { items: null, item: 'i7', sent: 2, unavailable: true }))
  const losses = [fault({ kind: 'memcached-stop', slot: 0, at: 100, healedAt: 400 }), fault({ index: 1, kind: 'memcached-stop', slot: 1, at: 120, healedAt: 400 })]
  t.same(check({ exchanges: degraded, sessions: [session()], faults: losses }, SYNC).notes.unavailable, { within: 0, beyond: 1 })

  // async: an update no app saw, or an outage elsewhere, excuses nothing.
  const lost = run(3, [0, 2], { servedBy: () => 1 })
  const ack = lost.find((e) => e.item === 'i1') as Exchange
  const unseen = lost.map((e) => e === ack ? { ...e, servedBy: undefined } : e)
  t.match(check({ exchanges: unseen, sessions: [session()], faults: [fault({ kind: 'sidecar-kill', slot: 1, at: ack.doneAt + 1 })] }, ASYNC).findings, [{ verdict: 'within' }])
  const far = [fault({ kind: 'memcached-stop', slot: 5, at: ack.doneAt - 10, healedAt: ack.doneAt + 900 }), fault({ index: 1, kind: 'sidecar-kill', slot: 1, at: ack.doneAt + 500 })]
  t.match(check({ exchanges: lost, sessions: [session()], faults: far }, ASYNC).findings, [{ verdict: 'within' }])

  t.match(said({ ...ack, setCookie: null, servedBy: undefined, sentVersion: undefined }), /with v-, no app, 200 after 5 ms, cookie cleared/)
  t.match(said({ ...ack, setCookie: undefined }), /no cookie\)$/)
})

t.test('resurrected: which sidecar served it, which tombstone nodes were wiped', async (t) => {
  const base = run(1, [0])
  const s = session({ endAttemptAt: 500, endedAt: 505, endedBy: 'logout', endRid: 'x' })
  const replay = (servedBy: number | undefined): Exchange => ({ ...ex('replay', 3000, { items: [0], item: 'z0', sent: 2 }), servedBy })
  const wipe = fault({ kind: 'memcached-restart-empty', slot: 0, at: 1000, healedAt: 1050 })
  t.match(check({ exchanges: [...base, replay(0)], sessions: [s], faults: [wipe] }, SYNC).findings, [{ kind: 'resurrected', detail: /sidecar-0 last served it .*restarted empty since the end: #0 memcached restart empty memcached-0/ }])
  t.match(check({ exchanges: [...base, replay(2)], sessions: [s], faults: [] }, SYNC).findings, [{ detail: /sidecar-2 had never served it; no node of its last cookie lost its copies/ }])
  t.match(check({ exchanges: [...base, replay(undefined)], sessions: [s], faults: [] }, SYNC).findings, [{ detail: /no app\)$|no app, / }])
})

t.test('port reservations: below the ephemeral range, locked by pid, stale locks taken over', async (t) => {
  const ports = new PortReservation()
  t.teardown(() => ports.release())
  const port = await ports.take()
  const file = join(LOCK_DIR, String(port))
  t.equal(readFileSync(file, 'utf8'), String(process.pid), 'locked with our pid')
  t.notOk(claim(port), 'a live owner keeps it')
  ports.release()
  t.notOk(existsSync(file), 'released')
  writeFileSync(file, '')
  t.notOk(claim(port), 'an empty lock is being written by someone: skipped')
  writeFileSync(file, '2147483646')
  t.ok(claim(port), 'the lock of a dead process is taken over')
  t.equal(readFileSync(file, 'utf8'), String(process.pid))
  rmSync(file, { force: true })
})

t.test('the executor: one at a time revalidateMs after each heal, or overlapping per target; capped', async (t) => {
  const start = performance.now()
  const now = (): number => performance.now() - start
  const plan = (overlap: boolean, faults: Array<Pick<PlannedFault, 'at' | 'kind' | 'target'>>): Schedule => ({
    options: { seed: 1, durationMs: 200, revalidateMs: 30, overlap, sidecars: 3, memcached: 3, maxEvents: 10 },
    faults: faults.map((f, index) => ({ ...f, index, holdMs: 20 }))
  })
  const inject = async (f: PlannedFault, clock: () => number): Promise<FaultRecord> => {
    const at = clock()
    await new Promise((resolve) => setTimeout(resolve, f.holdMs))
    return fault({ index: f.index, kind: f.kind, slot: f.target, at, healedAt: clock() })
  }
  const lines: string[] = []
  const one = await runSchedule(plan(false, [{ at: 0, kind: 'sidecar-kill', target: 0 }, { at: 0, kind: 'memcached-stop', target: 1 }]), inject, now, { durationMs: 200, revalidateMs: 30, overlap: false }, (l) => lines.push(l))
  const [a, b] = one.faults as [FaultRecord, FaultRecord]
  t.ok(b.at >= a.healedAt + 30, 'the second starts revalidateMs after the first healed')
  t.match(lines, [/#0 sidecar kill -9 sidecar-0 \(20 ms\)/, /#1 memcached SIGSTOP memcached-1/])

  const t0 = now()
  const many = await runSchedule(plan(true, [{ at: t0, kind: 'sidecar-kill', target: 0 }, { at: t0, kind: 'sidecar-kill', target: 0 }, { at: t0, kind: 'memcached-kill', target: 0 }, { at: t0, kind: 'scale-out', target: 0 }, { at: 1e9, kind: 'memcached-kill', target: 1 }]), inject, now, { durationMs: 200, revalidateMs: 30, overlap: true }, () => undefined)
  t.equal(many.skipped, 1, 'past the cap: not run')
  const [k0, k1, m0] = many.faults as [FaultRecord, FaultRecord, FaultRecord]
  t.ok(k1.at >= k0.healedAt, 'the same target: one after the other')
  t.ok(m0.at < k0.healedAt, 'other targets: at once')
  const capped = await runSchedule(plan(false, [{ at: 1e9, kind: 'sidecar-kill', target: 0 }]), inject, now, { durationMs: 200, revalidateMs: 30, overlap: false }, () => undefined)
  t.same([capped.faults.length, capped.skipped], [0, 1])
})
