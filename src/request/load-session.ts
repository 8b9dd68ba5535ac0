import type { FastifyReply, FastifyRequest } from 'fastify'
import { codes } from '../errors.js'
import type { SessionCookieHeaders } from '../http/cookies.js'
import { clientTarget } from '../http/upstream.js'
import { CookieCodec, type VerifiedCookie } from '../session/cookie.js'
import type { SessionRecord } from '../session/record.js'
import type { SessionStore } from '../session/store.js'
import { IGNORED, RequestSession, type MemcachedBudget } from './state.js'

type Done = (err?: Error) => void

export interface LoadSessionOptions {
  readonly codec: CookieCodec
  readonly cookies: SessionCookieHeaders
  readonly store: SessionStore
  /** `session.ignore`: paths that get no session work; null when every path does. */
  readonly ignore: RegExp | null
  readonly budget: MemcachedBudget
  /** sidecar_requests_total{outcome="ignored"}: counted here, the other outcomes with the response. */
  readonly ignored: { inc: () => void }
  /** sidecar_forged_cookies_total: once per request with a cookie that is not ours. */
  readonly forged: { inc: () => void }
}

// A browser holds a few path/domain variants; more is someone making the sidecar work.
const MAX_SESSION_COOKIES = 8
const NO_VALUES: readonly string[] = []

/**
 * cookie -> store: which of the request's session cookies counts, verified (or recognised as
 * the one this node issued), and the session it names, from the local cache or memcached.
 * `preHandler` runs before the request goes to the app and leaves a RequestSession on it.
 */
export class SessionLoader {
  readonly #options: LoadSessionOptions
  readonly #local: (key: string) => SessionRecord | undefined

  constructor (options: LoadSessionOptions) {
    this.#options = options
    // Made once: the fast path runs on every request.
    this.#local = (key) => options.store.local(key)
  }

  readonly preHandler = (request: FastifyRequest, _reply: FastifyReply, done: Done): void => {
    const { ignore, cookies, store } = this.#options
    // TRACE echoes the request back: the app would hand the session's data to the client.
    if ((ignore !== null && ignore.test(pathOf(clientTarget(request.raw)))) || request.raw.method === 'TRACE') {
      request.session = IGNORED
      this.#options.ignored.inc()
      done()
      return
    }
    const state = new RequestSession()
    request.session = state
    const header = request.headers.cookie
    const values = cookies.mayHold(header) ? cookies.readAll(header) : NO_VALUES
    if (values.length === 0) {
      state.outcome = 'none'
      done()
      return
    }
    if (values.length > 1) {
      this.#fromSeveral(request, state, values, done)
      return
    }
    const value = values[0] as string
    // The exact cookie this node issued or verified for this state: no parsing, no HMAC.
    const issued = CookieCodec.issued(value, this.#local)
    if (issued !== undefined && store.fresh(issued, issued.version, performance.now())) {
      state.record = issued
      state.sent = value
      state.cookie = issued
      state.outcome = 'hit'
      done()
      return
    }
    const verified = this.#options.codec.accept(value)
    if (verified === undefined) {
      this.#options.forged.inc()
      state.outcome = 'none'
      request.log.debug('session cookie did not verify; treated as absent')
      done()
      return
    }
    this.#fromVerified(request, state, value, verified, done)
  }

  #fromVerified (request: FastifyRequest, state: RequestSession, value: string, verified: VerifiedCookie, done: Done): void {
    const { store, budget } = this.#options
    const local = store.local(verified.key)
    state.sent = value
    state.cookie = verified
    state.oldSecret = verified.oldSecret
    if (local !== undefined && store.fresh(local, verified.version, performance.now())) {
      state.record = local
      state.outcome = 'hit'
      done()
      return
    }
    store.load(verified, local, budget.read(state)).then((loaded) => {
      switch (loaded.outcome) {
        case 'gone':
          state.ended = true
          state.outcome = 'none'
          break
        case 'unavailable':
          state.outcome = 'degraded'
          state.unavailable = true
          break
        default:
          state.record = loaded.record as SessionRecord
          state.outcome = loaded.outcome
      }
      done()
    }, (err: unknown) => {
      request.log.error({ err, code: codes.SESSION_LOAD_FAILED }, 'session load failed; serving without a session')
      state.unavailable = true
      // Counted like memcached not answering: the request still has an outcome.
      state.outcome = 'degraded'
      done()
    })
  }

  /**
   * Several session cookies (path or domain variants): one that verifies wins; for one key the
   * highest version, across keys the first whose session is live (held here, then loaded).
   */
  #fromSeveral (request: FastifyRequest, state: RequestSession, values: readonly string[], done: Done): void {
    const { codec, store } = this.#options
    const best = new Map<string, { value: string, verified: VerifiedCookie }>()
    let forgeries = 0
    for (const value of values.length > MAX_SESSION_COOKIES ? values.slice(0, MAX_SESSION_COOKIES) : values) {
      const verified = codec.accept(value)
      if (verified === undefined) {
        forgeries++
        continue
      }
      const seen = best.get(verified.key)
      if (seen === undefined || verified.version > seen.verified.version) best.set(verified.key, { value, verified })
    }
    // Counted once per request, like a single forged cookie.
    if (forgeries > 0) this.#options.forged.inc()
    // Sessions held here first: no memcached read to find out they are live.
    const candidates = [...best.values()].map((c) => ({ ...c, held: store.local(c.verified.key) !== undefined })).sort((a, b) => Number(b.held) - Number(a.held))
    if (candidates.length === 0) {
      state.outcome = 'none'
      request.log.debug('no session cookie verified; treated as absent')
      done()
      return
    }
    const attempt = (i: number): void => {
      const { value, verified } = candidates[i] as { value: string, verified: VerifiedCookie }
      this.#fromVerified(request, state, value, verified, (err) => {
        if (state.record !== undefined || i + 1 >= candidates.length) {
          done(err)
          return
        }
        state.forgetCookie()
        attempt(i + 1)
      })
    }
    attempt(0)
  }
}

function pathOf (url: string): string {
  const q = url.indexOf('?')
  return q < 0 ? url : url.slice(0, q)
}
