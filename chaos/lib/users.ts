import { Browser, parseSetCookieLine, q, versionOf } from '../../test/helpers/client.js'
import { itemsOf, parseCookie, type Exchange, type ExchangeKind, type SessionLife, type View } from './history.js'
import type { Rng } from './prng.js'

export interface UserOptions {
  /** The load balancer's URL. */
  readonly lb: string
  readonly revalidateMs: number
  /** Pause between two requests of one user, ms. */
  readonly thinkMs: readonly [number, number]
  /** Items appended to a session before the user ends it (logout, or log in again). */
  readonly itemsPerSession: readonly [number, number]
  /** At a session's end: logout (else a new login, which regenerates). */
  readonly logoutChance: number
  /** Per step, once the user has ended sessions: replay one of their old cookies. */
  readonly replayChance: number
  /** A request without an answer by then counts as unanswered (status 0). */
  readonly requestTimeoutMs: number
}

/** Everything the users did, on one clock. */
export class Recorder {
  readonly exchanges: Exchange[] = []
  readonly sessions: SessionLife[] = []
  readonly t0 = performance.now()
  /** Date.now() at t0: maps run times to the sidecars' log timestamps. */
  readonly wallT0 = Date.now()

  now (): number {
    return performance.now() - this.t0
  }
}

/** A request that reached the test app and came back as its JSON echo. */
export const answered = (e: Exchange): boolean => e.status >= 200 && e.status < 300 && e.view !== undefined

/**
 * A browser user: logs in (X-Session-Set + Regenerate), appends unique items (X-Session-Merge),
 * ends the session (logout, or a new login), replays the cookies of ended sessions, and
 * follows Set-Cookie like a browser. One request at a time.
 */
export class SimulatedUser {
  readonly name: string
  /** The cookie the browser holds. */
  #cookie: string | undefined
  #current: SessionLife | undefined
  #remaining = 0
  #endKind: 'logout' | 'login' | undefined
  #endAttempts = 0
  /** Sessions this user ended; replays pick among the latest. */
  readonly #ended: SessionLife[] = []
  /** Replays due at a given time: one inside revalidateMs after the end, one just past it. */
  readonly #due: Array<{ at: number, session: SessionLife }> = []
  #requests = 0
  #items = 0
  #zombies = 0
  #sessions = 0

  constructor (readonly id: number, readonly rng: Rng, readonly recorder: Recorder, readonly options: UserOptions) {
    this.name = `u${id}`
  }

  async run (stopping: () => boolean): Promise<void> {
    while (!stopping()) {
      await this.#step()
      await new Promise((resolve) => setTimeout(resolve, this.rng.int(this.options.thinkMs[0], this.options.thinkMs[1])))
    }
  }

  /**
   * After the run: the current session read through the load balancer (following its cookie)
   * and from each sidecar directly, and every ended session's cookie replayed.
   */
  async finalReads (sidecars: ReadonlyArray<{ slot: number, url: string }>): Promise<void> {
    const s = this.#current
    if (s !== undefined) {
      for (let attempt = 0; attempt < 3; attempt++) {
        const e = await this.#send('final', '/final', { session: s, cookie: this.#cookie })
        this.#follow(s, e)
        if (answered(e)) break
      }
      for (const sidecar of sidecars) await this.#send('final-direct', '/final', { session: s, cookie: this.#cookie, base: sidecar.url, via: sidecar.slot })
    }
    for (const [i, ended] of this.#ended.entries()) {
      await this.#send('replay', '/final-replay', { session: ended, cookie: ended.lastCookie })
      if (i < this.#ended.length - 3) continue
      for (const sidecar of sidecars) await this.#send('replay', '/final-replay', { session: ended, cookie: ended.lastCookie, base: sidecar.url, via: sidecar.slot })
    }
  }

  async #step (): Promise<void> {
    const due = this.#due[0]
    if (due !== undefined && due.at <= this.recorder.now()) {
      this.#due.shift()
      await this.#replay(due.session)
      return
    }
    if (this.#current === undefined) {
      await this.#login()
      return
    }
    if (this.#remaining <= 0) {
      this.#endKind ??= this.rng.chance(this.options.logoutChance) ? 'logout' : 'login'
      if (this.#endKind === 'logout') await this.#logout()
      else await this.#login()
      return
    }
    if (this.#ended.length > 0 && this.rng.chance(this.options.replayChance)) {
      await this.#replay(this.rng.pick(this.#ended.slice(-4)))
      return
    }
    await this.#append()
  }

  async #login (): Promise<void> {
    const previous = this.#current
    const id = `${this.name}.s${this.#sessions}`
    const e = await this.#send('login', `/login?set=${q({ user: this.name, session: id })}&regenerate=1`, { session: previous, cookie: this.#cookie, item: undefined })
    if (previous !== undefined) previous.endAttemptAt ??= e.sentAt
    const c = typeof e.setCookie === 'string' ? parseCookie(e.setCookie) : undefined
    if (!answered(e) || c === undefined || c.key === previous?.key) {
      if (e.setCookie === null) this.#cookie = undefined
      if (previous !== undefined && ++this.#endAttempts >= 5) this.#lose(previous, e)
      return
    }
    this.#sessions++
    const session: SessionLife = {
      id,
      user: this.id,
      key: c.key,
      createdBy: e.rid,
      createdAt: e.doneAt,
      endedAt: undefined,
      endedBy: undefined,
      endRid: undefined,
      endAttemptAt: undefined,
      abandonedAt: undefined,
      cookies: [{ at: e.doneAt, version: c.version, primary: c.primary, backup: c.backup }],
      lastCookie: e.setCookie as string
    }
    this.recorder.sessions.push(session)
    if (previous !== undefined && previous.abandonedAt === undefined) this.#end(previous, e, 'login')
    this.#current = session
    this.#cookie = session.lastCookie
    this.#remaining = this.rng.int(this.options.itemsPerSession[0], this.options.itemsPerSession[1])
    this.#endKind = undefined
    this.#endAttempts = 0
  }

  async #logout (): Promise<void> {
    const s = this.#current as SessionLife
    const e = await this.#send('logout', '/logout?destroy=1', { session: s, cookie: this.#cookie })
    s.endAttemptAt ??= e.sentAt
    if (answered(e) && e.setCookie === null) {
      this.#cookie = undefined
      this.#current = undefined
      this.#end(s, e, 'logout')
    } else if (++this.#endAttempts >= 5) {
      this.#lose(s, e)
    }
  }

  async #append (): Promise<void> {
    const s = this.#current as SessionLife
    const item = `i${this.#items++}`
    const e = await this.#send('append', `/a?merge=${q({ [item]: true })}`, { session: s, cookie: this.#cookie, item })
    this.#remaining--
    this.#follow(s, e)
  }

  /** An ended session's last cookie, from a separate cookie jar: it must not be served after revalidateMs. */
  async #replay (s: SessionLife): Promise<void> {
    const item = `z${this.#zombies++}`
    await this.#send('replay', `/z?merge=${q({ [item]: true })}`, { session: s, cookie: s.lastCookie, item })
  }

  #end (s: SessionLife, e: Exchange, by: 'logout' | 'login'): void {
    s.endedAt = e.doneAt
    s.endedBy = by
    s.endRid = e.rid
    this.#ended.push(s)
    const r = this.options.revalidateMs
    this.#due.push({ at: e.doneAt + this.rng.between(0, r), session: s }, { at: e.doneAt + r + this.rng.between(0, r / 2), session: s })
    this.#due.sort((a, b) => a.at - b.at)
  }

  /** Logged out (cookie cleared, or a new key served): the session is given up; the next step logs in. */
  #lose (s: SessionLife, e: Exchange): void {
    s.abandonedAt = e.doneAt
    this.#current = undefined
  }

  /** The browser keeps what Set-Cookie says; the session's placements are recorded. */
  #follow (s: SessionLife, e: Exchange): void {
    if (e.setCookie === undefined) return
    if (e.setCookie === null) {
      this.#cookie = undefined
      this.#lose(s, e)
      return
    }
    this.#cookie = e.setCookie
    const c = parseCookie(e.setCookie)
    if (c === undefined || c.key !== s.key) {
      this.#lose(s, e)
      return
    }
    s.cookies.push({ at: e.doneAt, version: c.version, primary: c.primary, backup: c.backup })
    s.lastCookie = e.setCookie
  }

  async #send (kind: ExchangeKind, path: string, o: { session: SessionLife | undefined, cookie: string | undefined, item?: string | undefined, base?: string, via?: number }): Promise<Exchange> {
    const rid = `${this.name}.${this.#requests++}`
    const e: Exchange = {
      rid,
      user: this.id,
      kind,
      session: o.session?.id,
      sentVersion: o.cookie === undefined ? undefined : versionOf(o.cookie),
      item: o.item,
      sentAt: this.recorder.now(),
      doneAt: 0,
      status: 0,
      view: undefined,
      setCookie: undefined,
      servedBy: undefined,
      via: o.via
    }
    this.recorder.exchanges.push(e)
    // A jar per request: an answer that comes after the timeout must not change the user's cookie.
    const jar = new Browser()
    if (o.cookie !== undefined) jar.cookies.set(jar.cookieName, o.cookie)
    let timer: NodeJS.Timeout | undefined
    try {
      const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('timeout')), this.options.requestTimeoutMs) })
      const res = await Promise.race([jar.get(o.base ?? this.options.lb, `${path}${path.includes('?') ? '&' : '?'}rid=${rid}`), timeout])
      e.status = res.status
      e.view = viewOf(res.body)
      e.setCookie = sessionCookieIn(jar.lastSetCookie, jar.cookieName)
    } catch {
      e.status = 0
    } finally {
      clearTimeout(timer)
    }
    e.doneAt = this.recorder.now()
    return e
  }
}

/** The test app's echo: the key and data it received, and whether it was told the session was unavailable. */
function viewOf (body: unknown): View | undefined {
  if (typeof body !== 'object' || body === null || !('headers' in body)) return undefined
  const echo = body as { sessionId?: string, session?: Record<string, unknown>, headers: Record<string, string | undefined> }
  return { key: echo.sessionId, user: echo.session?.user, session: echo.session?.session, items: itemsOf(echo.session), unavailable: echo.headers['x-session-unavailable'] === '1' }
}

function sessionCookieIn (lines: readonly string[], name: string): string | null | undefined {
  let found: string | null | undefined
  for (const line of lines) {
    const c = parseSetCookieLine(line)
    if (c.name !== name) continue
    found = c.value === '' || c.attributes['max-age'] === '0' ? null : c.value
  }
  return found
}
