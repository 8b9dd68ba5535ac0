import type { RequestOutcome } from '../metrics.js'
import type { CookieFields } from '../session/cookie.js'
import type { SessionRecord } from '../session/record.js'

/**
 * What the sidecar knows about one request's session, from the cookie to the response. Facts
 * only: set-cookie.ts decides from them what the client's cookie becomes.
 */
export class RequestSession {
  /** The session served to the app, then the one the app's change made, if any. */
  record: SessionRecord | undefined = undefined
  /** The client's cookie the session was looked up by: its value and fields (verified, or issued here). */
  sent: string | undefined = undefined
  cookie: CookieFields | undefined = undefined
  /** The cookie was signed by a verify-only secret: reissue it signed by the current one. */
  oldSecret = false
  /** The session the cookie names has ended: found gone, or destroyed by the app. */
  ended = false
  /** A verified cookie whose session memcached could not produce in time (not a miss). */
  unavailable = false
  /** Set while the response waits for memcached (write: sync, or a destroy). */
  pending: Promise<void> | undefined = undefined
  /** When the request's memcached budget runs out (monotonic ms); 0 until it first waits on memcached. */
  memcachedDeadline = 0
  /** Counted once the response is under way (ignored requests are counted when they arrive). */
  outcome: RequestOutcome | undefined = undefined

  /**
   * Forgets what one cookie led to, before the next of several is tried. (`unavailable` stays:
   * a session memcached could not produce is still the client's.)
   */
  forgetCookie (): void {
    this.sent = undefined
    this.cookie = undefined
    this.oldSecret = false
    this.ended = false
    this.outcome = undefined
  }
}

/** Requests on ignored paths (and TRACE) share one marker: no allocation, no session work. */
export const IGNORED = new RequestSession()

declare module 'fastify' {
  interface FastifyRequest {
    session: RequestSession | null
  }
}

/**
 * `memcached.timeoutMs` on the monotonic clock: the one place a request's time with memcached
 * is reckoned. The response waits on a write only for what is left of the budget its first
 * read started; each read gets the whole timeout (several cookies: one read each, as before).
 */
export class MemcachedBudget {
  readonly #timeoutMs: number

  constructor (timeoutMs: number) {
    this.#timeoutMs = timeoutMs
  }

  /** The deadline of a read that starts now; the first one starts the request's budget. */
  read (state: RequestSession): number {
    const deadline = performance.now() + this.#timeoutMs
    if (state.memcachedDeadline === 0) state.memcachedDeadline = deadline
    return deadline
  }

  /** How long the response may wait for memcached now (the whole budget if nothing was read). */
  left (state: RequestSession): number {
    return state.memcachedDeadline === 0 ? this.#timeoutMs : Math.max(0, state.memcachedDeadline - performance.now())
  }
}
