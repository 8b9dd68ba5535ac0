import type { FastifyReply, FastifyRequest } from 'fastify'
import type { SidecarConfig } from '../config/index.js'
import { codes } from '../errors.js'
import { AppRequestHeaders } from '../http/app-request.js'
import { SessionCookieHeaders } from '../http/cookies.js'
import { Forwarding } from '../http/forwarding.js'
import { HeaderProtocol } from '../http/protocol.js'
import type { HookReply, HookRequest } from '../http/upstream.js'
import type { NodePool } from '../memcached/pool.js'
import { REQUEST_OUTCOMES, type Metrics, type RequestOutcome } from '../metrics.js'
import { CookieCodec } from '../session/cookie.js'
import { keyring } from '../session/secrets.js'
import type { SessionStore } from '../session/store.js'
import { UpdateApplier } from './apply-updates.js'
import { SessionLoader } from './load-session.js'
import { SessionSetCookie } from './set-cookie.js'
import { IGNORED, MemcachedBudget, type RequestSession } from './state.js'

export interface SessionFlowDeps {
  readonly config: SidecarConfig
  readonly store: SessionStore
  readonly pool: NodePool
  readonly metrics: Metrics
}

/**
 * A request's session, one way, in the order the proxy calls these:
 * cookie -> store (`load`), store -> headers to the app (`appHeaders`), headers from the app ->
 * store (`fromApp`), store -> cookie (`respond`). Each arrow is one module's job.
 */
export class SessionFlow {
  /** The session header names (`session.headerPrefix`), for the wiring's own stripping (trailers). */
  readonly protocol: HeaderProtocol
  /** The fastify preHandler: cookie -> store. */
  readonly load: (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void
  readonly #headers: AppRequestHeaders
  readonly #updates: UpdateApplier
  readonly #setCookie: SessionSetCookie
  readonly #outcomes: Readonly<Record<RequestOutcome, { inc: () => void }>>

  constructor ({ config, store, pool, metrics }: SessionFlowDeps) {
    const { session, memcached, listen } = config
    // The allow list is the pool's: SIGHUP may replace it.
    const codec = new CookieCodec(keyring(session), (address) => pool.allows(address))
    const cookies = new SessionCookieHeaders(session.cookie)
    const budget = new MemcachedBudget(memcached.timeoutMs)
    this.protocol = new HeaderProtocol(session.headerPrefix)
    this.load = new SessionLoader({ codec, cookies, store, ignore: session.ignore, budget, ignored: metrics.requests.labels('ignored'), forged: metrics.forgedCookies }).preHandler
    this.#headers = new AppRequestHeaders(this.protocol, cookies, new Forwarding(listen.trustProxies, listen.forwarded))
    this.#updates = new UpdateApplier({ store, maxBytes: session.maxBytes, sync: memcached.write === 'sync', budget, metrics })
    this.#setCookie = new SessionSetCookie(codec, cookies, session.cookie.maxAge)
    this.#outcomes = Object.fromEntries(REQUEST_OUTCOMES.map((outcome) => [outcome, metrics.requests.labels(outcome)])) as Record<RequestOutcome, { inc: () => void }>
  }

  /** store -> headers to the app: the header lines the app receives (the session's, when there is one). */
  appHeaders (request: FastifyRequest): string[] {
    const state = request.session
    return state === null || state === IGNORED ? this.#headers.build(request.raw, undefined, false) : this.#headers.build(request.raw, state.record, state.unavailable)
  }

  /**
   * headers from the app -> store: removes every session header from the app's response and
   * applies the updates among them. (Applied here, not when the response is sent: reply-from
   * skips onResponse when the client has gone, and a logout or a regeneration must not be lost.)
   */
  fromApp (headers: NodeJS.Dict<string | string[]>, request: HookRequest | undefined): void {
    const updates = this.protocol.takeUpdates(headers)
    const state = request?.session
    if (updates === undefined || state == null || state === IGNORED || request === undefined) return
    try {
      state.pending = this.#updates.apply(request, state, updates)
    } catch (err) {
      // Nothing the app sends may take the process down; the previous session stays.
      request.log.error({ err: { type: (err as Error).name, message: (err as Error).message }, code: codes.SESSION_UPDATE_FAILED }, 'session update failed; previous session kept')
    }
  }

  /**
   * store -> cookie: counts how the session was found, waits for memcached when the change
   * must be stored first, and sends the response with the Set-Cookie decided (set-cookie.ts).
   */
  respond (request: HookRequest, reply: HookReply, body: NodeJS.ReadableStream): void {
    const state = request.session
    if (state === null || state === IGNORED) {
      reply.send(body)
      return
    }
    const pending = state.pending
    this.#count(state)
    if (pending === undefined) {
      this.#send(state, reply, body)
      return
    }
    pending.then(() => { this.#send(state, reply, body) }, (err: unknown) => {
      request.log.error({ err }, 'session update failed')
      reply.send(body)
    })
  }

  /** The app did not answer: the request is still counted by how its session was found. */
  failed (request: HookRequest): void {
    const state = request.session
    if (state !== null && state !== IGNORED) this.#count(state)
  }

  #send (state: RequestSession, reply: HookReply, body: NodeJS.ReadableStream): void {
    const setCookie = this.#setCookie.for(state)
    if (setCookie !== undefined) reply.header('set-cookie', setCookie)
    reply.send(body)
  }

  #count (state: RequestSession): void {
    if (state.outcome !== undefined) this.#outcomes[state.outcome].inc()
  }
}
