import type { FaultKind } from './schedule.js'

/**
 * What a run records: every request as the user saw it (and which sidecar's app saw it), every
 * session a user created, every fault as it really ran. Times are ms since the start of the
 * run, on one monotonic clock (performance.now).
 */

export type ExchangeKind =
  /** X-Session-Set + Regenerate: a new session (replacing the user's current one, if any). */
  | 'login'
  /** X-Session-Merge of one unique item `i<n>: true`. */
  | 'append'
  /** X-Session-Destroy. */
  | 'logout'
  /** An ended session's last cookie sent again (with a merge `z<n>: true`): must never be served after revalidateMs. */
  | 'replay'
  /** After the faults: the session read through the load balancer. */
  | 'final'
  /** After the faults: the session read from one sidecar directly (`via`). */
  | 'final-direct'

/** The session the app received, from the JSON the test app echoes (compact: long runs keep hundreds of thousands). */
export interface View {
  /** X-Session-Id: the key, or undefined when the app got no session. */
  readonly key: string | undefined
  /** The data's `user` and `session` members, set at login. */
  readonly user: unknown
  readonly session: unknown
  /** The items in the data, as itemCode numbers. */
  readonly items: Int32Array
  /** X-Session-Unavailable: the sidecar could not load the session in time (documented degradation). */
  readonly unavailable: boolean
}

export interface Exchange {
  /** `u<user>.<n>`, sent as ?rid= so the test apps' logs tell which sidecar passed it on. */
  readonly rid: string
  readonly user: number
  readonly kind: ExchangeKind
  /** The session whose cookie was sent, if any. */
  readonly session: string | undefined
  readonly sentVersion: number | undefined
  /** The item (or zombie item) this request merges. */
  readonly item: string | undefined
  readonly sentAt: number
  doneAt: number
  /** HTTP status; 0 when no response came (reset, timeout). */
  status: number
  /** What the app received, when the app answered; undefined for answers not from the app. */
  view: View | undefined
  /** The session cookie in the response: undefined none, null cleared, else the new value. */
  setCookie: string | null | undefined
  /** Sidecar slot whose app received the request; undefined when no app did. */
  servedBy: number | undefined
  /** final-direct: the sidecar slot asked. */
  readonly via: number | undefined
}

/** One cookie a user held for a session: its version and where its copies were placed. */
export interface Placement {
  readonly at: number
  readonly version: number
  readonly primary: string
  readonly backup: string | undefined
}

/** One session a user logged in to, from its acknowledged login to its end. */
export interface SessionLife {
  /** `u<user>.s<n>`, also stored in the session data (`session`), with `user`. */
  readonly id: string
  readonly user: number
  readonly key: string
  /** rid of the acknowledged login that created it. */
  readonly createdBy: string
  readonly createdAt: number
  /** Set when the user's own logout (or next login) was acknowledged: ms of that answer. */
  endedAt: number | undefined
  endedBy: 'logout' | 'login' | undefined
  /** rid of the exchange that ended it. */
  endRid: string | undefined
  /** sentAt of the user's first attempt to end it (an unanswered one may have ended it already). */
  endAttemptAt: number | undefined
  /** The user gave it up after being logged out (or served another key): no later checks. */
  abandonedAt: number | undefined
  /** Every cookie the user held for it, in order. */
  readonly cookies: Placement[]
  /** The last cookie value the user held (what replays send). */
  lastCookie: string
}

/** A fault as it really ran. */
export interface FaultRecord {
  readonly index: number
  readonly kind: FaultKind
  /** `sidecar-2`, `memcached-0`, or `scale-out`. */
  readonly target: string
  readonly slot: number
  /** memcached faults: the node's address, as cookies name it. */
  readonly address: string | undefined
  readonly plannedAt: number
  /** When the signal was sent. */
  at: number
  /** When the copy was gone: the process had exited (sidecars), or = at. */
  lostAt: number
  /** When the target was back (restarted, continued); the end of scale-out. */
  healedAt: number
  readonly holdMs: number
  error?: string
}

/** Cookie format 1: `1~<key>~<primary>[~<backup>]~<version>~<mac>`. */
export function parseCookie (value: string): { key: string, primary: string, backup: string | undefined, version: number } | undefined {
  const f = value.split('~')
  if (f[0] !== '1' || (f.length !== 5 && f.length !== 6)) return undefined
  const version = Number(f[f.length - 2])
  if (!Number.isInteger(version)) return undefined
  return { key: f[1] as string, primary: f[2] as string, backup: f.length === 6 ? f[3] : undefined, version }
}

/** Items merged by appends are `i<n>`, zombies merged by replays `z<n>`: as numbers, n and -1-n. */
export function itemCode (name: string): number | undefined {
  const m = /^([iz])(\d+)$/.exec(name)
  if (m === null) return undefined
  const n = Number(m[2])
  return m[1] === 'i' ? n : -1 - n
}

export const itemName = (code: number): string => code >= 0 ? `i${code}` : `z${-1 - code}`

/** The items among a session's members. */
export function itemsOf (data: Readonly<Record<string, unknown>> | undefined): Int32Array {
  const codes: number[] = []
  for (const k of Object.keys(data ?? {})) {
    const code = itemCode(k)
    if (code !== undefined) codes.push(code)
  }
  return Int32Array.from(codes)
}
