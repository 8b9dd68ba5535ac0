import type { SessionCookieHeaders } from '../http/cookies.js'
import type { CookieCodec } from '../session/cookie.js'
import type { SessionRecord } from '../session/record.js'
import type { RequestSession } from './state.js'

/**
 * store -> cookie: the one place that decides a response's Set-Cookie, from what the request
 * found and the app changed. Nothing else writes the session cookie.
 */
export class SessionSetCookie {
  readonly #codec: CookieCodec
  readonly #cookies: SessionCookieHeaders
  /** Half of `session.cookie.maxAge`, in ms: a cookie unchanged for that long here is sent again. */
  readonly #refreshMs: number | undefined
  readonly #now: () => number

  constructor (codec: CookieCodec, cookies: SessionCookieHeaders, maxAge?: number, now: () => number = performance.now.bind(performance)) {
    this.#codec = codec
    this.#cookies = cookies
    this.#refreshMs = maxAge === undefined ? undefined : maxAge * 500
    this.#now = now
  }

  /**
   * The Set-Cookie header for the response, or undefined to leave the client's cookie as it is:
   * - no session, and the one the cookie named has ended (gone, destroyed): clear it;
   * - a session older than the cookie (a stale read): keep the cookie, never lower its version
   *   (one signed with an old secret is reissued, at its own version);
   * - otherwise the session's cookie, when it is not what the client sent (a change, a
   *   relocation, a new key) or the client's was signed with an old secret;
   * - with `session.cookie.maxAge`, the same cookie again once this sidecar has not sent it for
   *   half of maxAge: the browser's expiry slides while the user is active, as the session's
   *   idle timeout does (whichever sidecar sent it last, a request leaves the cookie at least
   *   maxAge / 2 to live).
   */
  for (state: RequestSession): string | undefined {
    const record = state.record
    if (record === undefined) return state.ended ? this.#cookies.clear : undefined
    const cookie = state.cookie
    if (cookie !== undefined && record.key === cookie.key && record.version < cookie.version) {
      return state.oldSecret ? this.#cookies.set(this.#codec.encode({ key: record.key, primary: record.primary, backup: record.backup, version: cookie.version })) : undefined
    }
    const current = this.#valueFor(record)
    if (current !== state.sent || state.oldSecret) return this.#sent(record, current)
    if (this.#refreshMs === undefined) return undefined
    const sentAt = record.cookieSentAt
    return sentAt === undefined || this.#now() - sentAt >= this.#refreshMs ? this.#sent(record, current) : undefined
  }

  #sent (record: SessionRecord, value: string): string {
    if (this.#refreshMs !== undefined) record.cookieSentAt = this.#now()
    return this.#cookies.set(value)
  }

  /** The cookie value for a record, memoised on it: the next request's fast path compares it, no HMAC. */
  #valueFor (record: SessionRecord): string {
    record.cookie ??= this.#codec.encode(record)
    return record.cookie
  }
}
