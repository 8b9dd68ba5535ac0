import { itemCode, itemName, parseCookie, type Exchange, type FaultRecord, type SessionLife } from './history.js'
import { FAULT_LABELS } from './schedule.js'

/**
 * The checks, per session, over a finished run's history, and the verdict on each anomaly:
 * was the schedule beyond the guarantee for that session at that moment (SPEC, "Storage and
 * consistency": at most one of a session's copies lost per cache.revalidateMs), or, with
 * write: async, was it an update acknowledged within the loss window before its sidecar died?
 */

export type FindingKind =
  /** An update the user saw acknowledged (or saw in a response) is missing from the session's last read. */
  | 'lost-update'
  /** A response showed the session without an update the user already knew of (it came back later). */
  | 'stale-read'
  /** A Set-Cookie lowered the version the user held for that key. */
  | 'version-backwards'
  /** A request with a valid cookie got no session (cookie cleared or a new key), the user had not logged out. */
  | 'logged-out'
  /** An ended session (logout, or replaced by a login) served after cache.revalidateMs. */
  | 'resurrected'
  /** The app got another session than the cookie's, or data of another user or session. */
  | 'foreign-session'
  /** The app got an item this session never sent. */
  | 'phantom-item'

export const FINDING_LABELS: Readonly<Record<FindingKind, string>> = {
  'lost-update': 'acknowledged update lost',
  'stale-read': 'read went backwards (came back)',
  'version-backwards': 'cookie version went backwards',
  'logged-out': 'logged out (not by the user)',
  resurrected: 'ended session served again',
  'foreign-session': 'another session served',
  'phantom-item': 'item never sent appeared'
}

/**
 * within: the schedule stayed inside the guarantee for that session: a product bug.
 * beyond: two of the session's copies were lost within cache.revalidateMs around it.
 * async-window: write: async, and the sidecar that acknowledged the update was killed within
 * the loss window after its answer (documented).
 */
export type Verdict = 'within' | 'beyond' | 'async-window'

export interface Finding {
  readonly kind: FindingKind
  readonly verdict: Verdict
  readonly user: number
  readonly session: string
  readonly key: string
  readonly item: string | undefined
  /** The request that showed it first. */
  readonly rid: string
  /** From the evidence (ack, login, end) to the first request that showed the anomaly. */
  readonly from: number
  readonly to: number
  /** How many requests showed it. */
  readonly observations: number
  readonly detail: string
  /** Why the verdict (the faults that explain it, or those nearby). */
  readonly reason: string
}

export interface Notes {
  /** Requests answered without a session but with X-Session-Unavailable and the cookie kept (documented), by verdict. */
  readonly unavailable: Record<'within' | 'beyond', number>
  /** Replays of ended sessions served inside cache.revalidateMs after the end (allowed). */
  readonly servedInWindow: number
  /** Appends answered 2xx with the session but no new cookie version. */
  readonly ackedWithoutNewVersion: number
  /** Acknowledged updates after the session's last read (never checked). */
  readonly unverified: number
  /** Async-window verdicts: ms from the answer to the kill -9 of the sidecar that gave it. */
  readonly asyncDelays: number[]
  /** Sessions that went beyond the guarantee at some point (two copies lost within revalidateMs). */
  readonly sessionsBeyond: number
}

export interface CheckOptions {
  readonly revalidateMs: number
  readonly write: 'async' | 'sync'
  /** The async loss window after an answer (the README states the measured one). */
  readonly asyncWindowMs: number
}

export interface CheckInput {
  readonly exchanges: readonly Exchange[]
  readonly sessions: readonly SessionLife[]
  readonly faults: readonly FaultRecord[]
}

const ok = (e: Exchange): boolean => e.status >= 200 && e.status < 300 && e.view !== undefined

/** A span during which one of the session's copies was lost or unreachable. */
interface Loss { readonly fault: FaultRecord, readonly start: number, readonly end: number }
/** A span beyond the guarantee for one session: two losses within revalidateMs. */
interface Period { readonly start: number, readonly end: number, readonly why: string }

export function check (input: CheckInput, options: CheckOptions): { findings: Finding[], notes: Notes } {
  const R = options.revalidateMs
  const bySession = new Map<string, Exchange[]>()
  const byRid = new Map<string, Exchange>()
  for (const e of input.exchanges) {
    byRid.set(e.rid, e)
    if (e.session === undefined) continue
    const list = bySession.get(e.session) ?? []
    list.push(e)
    bySession.set(e.session, list)
  }
  const findings: Finding[] = []
  const unavailable = { within: 0, beyond: 0 }
  const asyncDelays: number[] = []
  let servedInWindow = 0
  let ackedWithoutNewVersion = 0
  let unverified = 0
  let sessionsBeyond = 0

  for (const s of input.sessions) {
    const exchanges = (bySession.get(s.id) ?? []).sort((a, b) => a.sentAt - b.sentAt)
    const losses = lossesOf(s, exchanges, input.faults, R)
    const periods = periodsOf(losses, R)
    if (periods.length > 0) sessionsBeyond++
    const describe = (from: number, to: number): string => {
      const lost = losses.filter((l) => l.start <= to && l.end >= from - R)
      if (lost.length > 0) return `its copies lost, each more than revalidateMs after the previous: ${lost.map((l) => faultText(l.fault)).join('; ')}`
      const near = input.faults.filter((f) => f.kind !== 'scale-out' && f.at <= to && f.healedAt >= to - 2 * R)
      return near.length === 0 ? 'no fault within revalidateMs' : `none of its copies lost; faults nearby: ${near.map(faultText).join('; ')}`
    }
    /** The verdict for an anomaly of this session spanning [from, to]; `evidence` is the update it concerns. */
    const judge = (from: number, to: number, evidence: Exchange | undefined, kind?: FindingKind): { verdict: Verdict, reason: string } => {
      if (options.write === 'async' && evidence !== undefined) {
        const waited = kind === 'stale-read' ? outageExcuse(s, evidence, to, input.faults, options.asyncWindowMs) : undefined
        if (waited !== undefined) return { verdict: 'async-window', reason: waited }
        const excuse = asyncExcuse(s, evidence, input.faults, options.asyncWindowMs)
        if (excuse !== undefined) {
          asyncDelays.push(excuse.delay)
          return { verdict: 'async-window', reason: excuse.reason }
        }
      }
      const period = periods.find((p) => p.start <= to && p.end >= from)
      if (period !== undefined) return { verdict: 'beyond', reason: period.why }
      return { verdict: 'within', reason: describe(from, to) }
    }
    const add = (f: Omit<Finding, 'verdict' | 'reason' | 'user' | 'session' | 'key'>, evidence: Exchange | undefined): void => {
      findings.push({ ...f, user: s.user, session: s.id, key: s.key, ...judge(f.from, f.to, evidence, f.kind) })
    }

    // Requests made as this session's user before any attempt to end it.
    const endLimit = s.endAttemptAt ?? s.abandonedAt ?? Infinity
    const live = exchanges.filter((e) => e.kind !== 'replay' && e.sentAt <= endLimit)

    // Versions: never lower than the highest the user was given for this key.
    let highest = s.cookies[0]?.version ?? 0
    let highestAt = s.createdAt
    for (const e of [...exchanges].filter((x) => x.kind !== 'replay').sort((a, b) => a.doneAt - b.doneAt)) {
      if (typeof e.setCookie !== 'string') continue
      const c = parseCookie(e.setCookie)
      if (c === undefined || c.key !== s.key) continue
      if (c.version < highest) {
        add({ kind: 'version-backwards', item: undefined, rid: e.rid, from: highestAt, to: e.doneAt, observations: 1, detail: `Set-Cookie version ${c.version} after ${highest}` }, undefined)
      } else {
        highest = c.version
        highestAt = e.doneAt
      }
    }

    // Items: what the user knew (acknowledged, or shown in a response) before each request.
    const sentItems = new Map<number, Exchange>()
    for (const e of exchanges) {
      const code = e.item === undefined ? undefined : itemCode(e.item)
      if (code !== undefined) sentItems.set(code, e)
    }
    const evidence: Array<{ item: number, at: number, acked: boolean }> = []
    for (const e of live) {
      const code = e.item === undefined ? undefined : itemCode(e.item)
      if (e.kind !== 'append' || code === undefined || !ok(e) || e.view?.key !== s.key) continue
      evidence.push({ item: code, at: e.doneAt, acked: true })
      const c = typeof e.setCookie === 'string' ? parseCookie(e.setCookie) : undefined
      if (c === undefined || c.key !== s.key || c.version <= (e.sentVersion ?? 0)) ackedWithoutNewVersion++
    }
    for (const e of live) {
      if (!ok(e) || e.view?.key !== s.key) continue
      for (const item of e.view.items) evidence.push({ item, at: e.doneAt, acked: false })
    }
    evidence.sort((a, b) => a.at - b.at)
    const known = new Map<number, { at: number, acked: boolean }>()
    const missing = new Map<number, Exchange[]>()
    let next = 0
    let lastView: Exchange | undefined
    let lastGood = s.createdAt
    for (const e of live) {
      while (next < evidence.length && (evidence[next]?.at ?? Infinity) < e.sentAt) {
        const ev = evidence[next++] as { item: number, at: number, acked: boolean }
        // An answer always comes before any read that shows its item: the first evidence says which.
        if (!known.has(ev.item)) known.set(ev.item, { at: ev.at, acked: ev.acked })
      }
      if (!ok(e) || e.sentVersion === undefined) continue
      const view = e.view as NonNullable<Exchange['view']>
      if (view.key === undefined) {
        const login = byRid.get(s.createdBy)
        // The documented degradation (X-Session-Unavailable, the cookie kept) is no logout; nor is
        // the user's own logout that met it: the sidecar ends the session wherever its cookie
        // says (tombstones, the primary's awaited) and clears the cookie, as the user asked. A
        // logout that found no session while memcached answered is still reported: the session
        // was gone before the user ended it.
        if (view.unavailable && (e.setCookie !== null || e.kind === 'logout')) {
          unavailable[judge(lastGood, e.doneAt, undefined).verdict === 'within' ? 'within' : 'beyond']++
        } else {
          add({ kind: 'logged-out', item: undefined, rid: e.rid, from: lastGood, to: e.doneAt, observations: 1, detail: `${said(e)} got no session${typeof e.setCookie === 'string' ? `, new key ${parseCookie(e.setCookie)?.key ?? '?'}` : ''}; the session was created ${ms(e.sentAt - s.createdAt)} before by ${login === undefined ? s.createdBy : said(login)}` }, byRid.get(s.createdBy))
        }
        continue
      }
      if (view.key !== s.key || view.user !== `u${s.user}` || view.session !== s.id) {
        add({ kind: 'foreign-session', item: undefined, rid: e.rid, from: e.sentAt, to: e.doneAt, observations: 1, detail: `cookie of ${s.key} (${s.id}) served key ${view.key} with user ${String(view.user)}, session ${String(view.session)}` }, undefined)
        continue
      }
      lastGood = e.doneAt
      lastView = e
      const items = new Set(view.items)
      for (const item of items) {
        const sent = sentItems.get(item)
        if (sent === undefined || sent.sentAt > e.doneAt) {
          add({ kind: 'phantom-item', item: itemName(item), rid: e.rid, from: e.sentAt, to: e.doneAt, observations: 1, detail: `${itemName(item)} in the session, never sent with its cookie` }, undefined)
        }
      }
      for (const item of known.keys()) {
        if (items.has(item)) continue
        const list = missing.get(item) ?? []
        list.push(e)
        missing.set(item, list)
      }
    }
    const lastItems = new Set(lastView?.view?.items)
    for (const [item, views] of missing) {
      const name = itemName(item)
      const first = views[0] as Exchange
      const k = known.get(item) as { at: number, acked: boolean }
      const lost = !lastItems.has(item)
      const sent = sentItems.get(item)
      const how = k.acked && sent !== undefined ? `acknowledged by ${said(sent)}` : 'shown in a response'
      add({
        kind: lost ? 'lost-update' : 'stale-read',
        item: name,
        rid: first.rid,
        from: k.at,
        to: first.doneAt,
        observations: views.length,
        detail: lost
          ? `${name} ${how}, missing from ${views.length} later read(s), first ${said(first)}, to the last (${lastView?.kind ?? '?'} ${lastView?.rid ?? '?'})`
          : `${name} ${how}, missing from ${views.length} read(s), first ${said(first)}; back by the last read`
      }, sentItems.get(item))
    }
    // Its own answer is the last read of an append: the item it added was never read back.
    for (const ev of evidence) if (ev.acked && lastView !== undefined && ev.at >= lastView.doneAt) unverified++

    // Ended sessions: never served again once revalidateMs has passed since the end.
    if (s.endedAt !== undefined) {
      const ended = s.endedAt
      const served = exchanges.filter((e) => e.kind === 'replay' && ok(e) && e.view?.key === s.key)
      const late = served.filter((e) => e.sentAt > ended + R)
      servedInWindow += served.length - late.length
      const first = late[0]
      if (first !== undefined) {
        const before = exchanges.filter((e) => e.servedBy === first.servedBy && e !== first && e.doneAt < first.sentAt && e.view?.key === s.key).at(-1)
        const held = first.servedBy === undefined ? '' : before === undefined ? `; sidecar-${first.servedBy} had never served it` : `; sidecar-${first.servedBy} last served it ${before.rid} at ${ms(before.doneAt)}`
        // The tombstones went to the nodes of its last cookie: which of them lost their copies since.
        const last = s.cookies.at(-1)
        const wiped = input.faults.filter((f) => (f.kind === 'memcached-kill' || f.kind === 'memcached-restart-empty') && f.at >= ended && f.at <= first.sentAt && (f.address === last?.primary || f.address === last?.backup))
        const tombstones = wiped.length === 0 ? '; no node of its last cookie lost its copies since the end' : `; nodes of its last cookie restarted empty since the end: ${wiped.map(faultText).join('; ')}`
        add({
          kind: 'resurrected',
          item: undefined,
          rid: first.rid,
          from: ended,
          to: first.doneAt,
          observations: late.length,
          detail: `ended by ${s.endedBy ?? '?'} ${s.endRid ?? ''} at ${ms(ended)}, served ${late.length} time(s) later, first ${ms(first.sentAt - ended)} after the end: ${said(first)}${held}${tombstones}`
        }, s.endedBy === 'login' ? byRid.get(s.endRid ?? '') : undefined)
      }
    }
  }
  findings.sort((a, b) => a.to - b.to)
  return { findings, notes: { unavailable, servedInWindow, ackedWithoutNewVersion, unverified, asyncDelays, sessionsBeyond } }
}

/**
 * The spans when the session was beyond the guarantee: two of its copies lost (a sidecar that
 * had served it since its last start; a memcached node its cookie named) with less than
 * revalidateMs between the end of one loss and the start of the next; each such span lasts
 * until revalidateMs after the later loss (the time the sidecars take to restore copies).
 */
export function beyondPeriods (s: SessionLife, exchanges: readonly Exchange[], faults: readonly FaultRecord[], R: number): Period[] {
  return periodsOf(lossesOf(s, exchanges, faults, R), R)
}

/** The faults that took one of the session's copies, in order. */
function lossesOf (s: SessionLife, exchanges: readonly Exchange[], faults: readonly FaultRecord[], R: number): Loss[] {
  const losses: Loss[] = []
  for (const f of faults) {
    if (f.kind === 'scale-out' || f.at < s.createdAt - R) continue
    if (f.kind === 'sidecar-kill' || f.kind === 'sidecar-term') {
      const since = Math.max(0, ...faults.filter((g) => g.target === f.target && g.index !== f.index && g.healedAt <= f.at).map((g) => g.healedAt))
      if (exchanges.some((e) => e.servedBy === f.slot && e.doneAt >= since && e.doneAt <= f.lostAt)) losses.push({ fault: f, start: f.at, end: f.lostAt })
    } else if (f.address !== undefined && placedOn(s, f.address, f.at - R, f.healedAt)) {
      losses.push({ fault: f, start: f.at, end: f.healedAt })
    }
  }
  return losses.sort((a, b) => a.start - b.start)
}

function periodsOf (losses: readonly Loss[], R: number): Period[] {
  const periods: Period[] = []
  for (let i = 0; i < losses.length; i++) {
    for (let j = i + 1; j < losses.length; j++) {
      const a = losses[i] as Loss
      const b = losses[j] as Loss
      if (b.start - a.end >= R) continue
      periods.push({ start: a.start, end: Math.max(a.end, b.end) + R, why: `${faultText(a.fault)}, then ${faultText(b.fault)} ${b.start - a.end < 0 ? 'while it lasted' : `${ms(b.start - a.end)} after`}` })
    }
  }
  return periods
}

/** True when a cookie the user held for the session named `address` at some time in [from, to]. */
function placedOn (s: SessionLife, address: string, from: number, to: number): boolean {
  let current: SessionLife['cookies'][number] | undefined
  for (const c of s.cookies) {
    if (c.at <= from) {
      current = c
      continue
    }
    if (c.at > to) break
    if (c.primary === address || c.backup === address) return true
  }
  return current !== undefined && (current.primary === address || current.backup === address)
}

/**
 * write: async: an update is lost only if its sidecar dies before the primary stored it, about
 * a millisecond after the answer normally, or until a node returns during an outage of one of
 * the session's nodes. The excuse: a kill -9 of the sidecar that took the update within that
 * window (`windowMs` after the answer, or after the end of such an outage).
 */
function asyncExcuse (s: SessionLife, update: Exchange, faults: readonly FaultRecord[], windowMs: number): { delay: number, reason: string } | undefined {
  if (update.servedBy === undefined) return undefined
  let until = update.doneAt + windowMs
  let outage = ''
  for (const f of faults) {
    if (f.address === undefined || f.at > update.doneAt || f.healedAt < update.doneAt) continue
    if (!placedOn(s, f.address, update.doneAt, update.doneAt)) continue
    if (f.healedAt + windowMs > until) {
      until = f.healedAt + windowMs
      outage = ` (during ${faultText(f)})`
    }
  }
  const kill = faults.find((f) => f.kind === 'sidecar-kill' && f.slot === update.servedBy && f.at >= update.sentAt && f.at <= until)
  if (kill === undefined) return undefined
  const delay = kill.at - update.doneAt
  return { delay, reason: `sidecar-${kill.slot} killed ${ms(delay)} after answering ${update.rid}${outage}` }
}

/**
 * With write: async, an update is stored once a node takes it (SPEC: "during an outage, until
 * a node returns"): a read that missed it, on another sidecar, while one of the session's
 * memcached nodes was out (frozen or down) and the write waited for it, is inside that window.
 * Only for reads that later saw the update (a lost one is judged by asyncExcuse alone).
 */
function outageExcuse (s: SessionLife, update: Exchange, readAt: number, faults: readonly FaultRecord[], windowMs: number): string | undefined {
  const outage = faults.find((f) => f.address !== undefined && (f.kind === 'memcached-stop' || f.kind === 'memcached-kill') &&
    f.at <= readAt && f.healedAt + windowMs >= update.sentAt && placedOn(s, f.address, update.sentAt, readAt))
  return outage === undefined ? undefined : `read while the async write waited for a node of the session: ${faultText(outage)}`
}

export function faultText (f: FaultRecord): string {
  const span = f.healedAt > f.at + 1 ? `${ms(f.at)}-${ms(f.healedAt)}` : ms(f.at)
  return `#${f.index} ${FAULT_LABELS[f.kind]} ${f.target} ${span}`
}

export const ms = (n: number): string => `${(n / 1000).toFixed(3)} s`

/** One request in a sentence: which, where, with which cookie version, what came back. */
export function said (e: Exchange): string {
  const back = typeof e.setCookie === 'string' ? `v${parseCookie(e.setCookie)?.version ?? '?'}` : e.setCookie === null ? 'cookie cleared' : 'no cookie'
  return `${e.rid} (${e.kind} sent ${ms(e.sentAt)} with v${e.sentVersion ?? '-'}, ${e.servedBy === undefined ? 'no app' : `sidecar-${e.servedBy}`}, ${e.status} after ${Math.round(e.doneAt - e.sentAt)} ms, ${back})`
}
