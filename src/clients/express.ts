import type { IncomingMessage, ServerResponse } from 'node:http'

// A connect/express middleware for apps behind session-sidecar (`session-sidecar/express`):
// `req.session` is the session as a plain object, and what the app changed in it goes back to
// the sidecar as the smallest X-Session-Merge, added just before the response's headers are
// written. No express import at run time: it works with any (req, res, next) framework.

/** A session's data: what the sidecar stores, a JSON object. */
export type SessionData = Record<string, unknown>

/** `req.session`: the data, plus two methods that are not enumerable (never part of the data). */
export interface SidecarSession {
  [member: string]: unknown
  /** Ends the session everywhere (`X-Session-Destroy: 1`): the sidecar clears the cookie. */
  destroy: (callback?: (err?: Error) => void) => void
  /**
   * A new session key, same data (`X-Session-Regenerate: 1`): call it after a login, against
   * session fixation. Unlike express-session's, the data is kept; change it before or after.
   */
  regenerate: (callback?: (err?: Error) => void) => void
}

/** What the middleware adds to the request. */
export interface SidecarRequest extends IncomingMessage {
  /** The session; assign `null` to end it (like `destroy()`). */
  session: SidecarSession | null | undefined
  /** The session key (X-Session-Id), or undefined when there is no session yet. */
  sessionId: string | undefined
  /**
   * True when the client has a session that memcached could not produce in time
   * (X-Session-Unavailable: 1): `req.session` is then empty, and the sidecar refuses a change
   * to it unless it comes with `regenerate()` (a login). Do not treat the user as logged out.
   */
  sessionUnavailable: boolean
}

export interface SessionSidecarOptions {
  /** The sidecar's `session.headerPrefix`. Default `x-session`. */
  headerPrefix?: string
}

/** The response headers that carry a session change, as the app would write them by hand. */
export interface SessionHeaders {
  [name: string]: string
}

type Next = (err?: unknown) => void

/**
 * The middleware. Mount it before any route that reads or changes `req.session`:
 * `app.use(sessionSidecar())`.
 */
export function sessionSidecar (options: SessionSidecarOptions = {}): (req: IncomingMessage, res: ServerResponse, next: Next) => void {
  const prefix = (options.headerPrefix ?? 'x-session').toLowerCase()
  const names = {
    data: prefix,
    id: `${prefix}-id`,
    unavailable: `${prefix}-unavailable`,
    set: `${prefix}-set`,
    merge: `${prefix}-merge`,
    destroy: `${prefix}-destroy`,
    regenerate: `${prefix}-regenerate`
  }
  return function sessionSidecarMiddleware (incoming, res, next) {
    const req = incoming as SidecarRequest
    const raw = single(req.headers[names.data])
    let original: SessionData
    let session: SessionData
    try {
      original = decode(raw)
      session = decode(raw) // a second copy: the app changes this one, the first is compared
    } catch (err) {
      next(err)
      return
    }
    const state = { destroyed: false, regenerate: false }
    const after = (callback?: (err?: Error) => void): void => {
      if (callback !== undefined) process.nextTick(callback)
    }
    Object.defineProperties(session, {
      destroy: { value: (callback?: (err?: Error) => void) => { state.destroyed = true; after(callback) }, enumerable: false, writable: true, configurable: true },
      regenerate: { value: (callback?: (err?: Error) => void) => { state.regenerate = true; after(callback) }, enumerable: false, writable: true, configurable: true }
    })
    req.session = session as SidecarSession
    req.sessionId = single(req.headers[names.id])
    req.sessionUnavailable = single(req.headers[names.unavailable])?.trim() === '1'

    const writeHead = res.writeHead
    res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
      res.writeHead = writeHead // once: a second call is Node's own error to report
      const current = req.session ?? undefined
      const flags = { destroy: state.destroyed, regenerate: state.regenerate, unavailable: req.sessionUnavailable }
      const headers = sessionHeaders(original, current, flags, names)
      for (const name in headers) res.setHeader(name, headers[name] as string)
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args)
    } as typeof res.writeHead
    next()
  }
}

function single (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

/** X-Session's value as an object; `{}` when there is none. */
function decode (raw: string | undefined): SessionData {
  if (raw === undefined || raw === '') return {}
  const value: unknown = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'))
  if (!isObject(value)) throw new TypeError('X-Session is not a JSON object')
  return value
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/**
 * The headers that tell the sidecar what became of a session, `original` being the data the
 * request brought and `current` what the app left (undefined: ended):
 * - ended: Destroy (it wins over everything else);
 * - a login while the session could not be loaded: Set of the whole data with Regenerate (the
 *   only change the sidecar accepts then, and the app's view is all there is);
 * - otherwise the minimal Merge, or Set of the whole data when a merge patch cannot say it (a
 *   member set to null, which a patch reads as "delete"); Regenerate when asked. A Merge with
 *   Regenerate lets the sidecar carry a change stored meanwhile on the old key into the new one.
 */
export function sessionHeaders (original: SessionData, current: SessionData | undefined, flags: { destroy: boolean, regenerate: boolean, unavailable: boolean }, names = DEFAULT_NAMES): SessionHeaders {
  if (flags.destroy || current === undefined) return { [names.destroy]: '1' }
  const headers: SessionHeaders = {}
  // What JSON keeps: toJSON applied, undefined members and functions dropped.
  const data: unknown = JSON.parse(JSON.stringify(current) ?? 'null')
  if (!isObject(data)) {
    headers[names.set] = b64(data) // the sidecar refuses a non-object and logs it: an app bug made visible
  } else if (flags.regenerate && flags.unavailable) {
    headers[names.set] = b64(data)
  } else {
    const patch = mergeDiff(original, data)
    if (patch === undefined) headers[names.set] = b64(data)
    else if (Object.keys(patch).length > 0) headers[names.merge] = b64(patch)
  }
  if (flags.regenerate) headers[names.regenerate] = '1'
  return headers
}

const DEFAULT_NAMES = { set: 'x-session-set', merge: 'x-session-merge', destroy: 'x-session-destroy', regenerate: 'x-session-regenerate' }

/**
 * The smallest RFC 7396 merge patch that turns `from` into `to` (both JSON objects): changed
 * and added members, null for removed ones, nested objects diffed member by member, anything
 * else (arrays included) replaced whole. `{}` when they are equal; undefined when no patch can
 * say it: a null that is data, not a deletion (a member set to null, or null inside an added
 * object), since a merge patch removes every member it sets to null.
 */
export function mergeDiff (from: SessionData, to: SessionData): SessionData | undefined {
  const patch: SessionData = {}
  for (const name of Object.keys(from)) {
    if (!Object.hasOwn(to, name)) setMember(patch, name, null)
  }
  for (const [name, value] of Object.entries(to)) {
    const before = Object.hasOwn(from, name) ? from[name] : undefined
    if (before !== undefined && equal(before, value)) continue
    if (isObject(before) && isObject(value)) {
      const inner = mergeDiff(before, value)
      if (inner === undefined) return undefined
      setMember(patch, name, inner)
    } else {
      if (holdsNull(value)) return undefined
      setMember(patch, name, value)
    }
  }
  return patch
}

/** An own data member, even one named `__proto__` (which plain assignment would not create). */
function setMember (target: SessionData, name: string, value: unknown): void {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true })
}

function isObject (value: unknown): value is SessionData {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** True when a patch member of this value would lose a null: it is null, or an object holds one. */
function holdsNull (value: unknown): boolean {
  if (value === null) return true
  return isObject(value) && Object.values(value).some(holdsNull)
}

/** JSON equality: objects by members in any order, arrays by position. */
function equal (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((v, i) => equal(v, b[i]))
  if (!isObject(a) || !isObject(b)) return false
  const keys = Object.keys(a)
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && equal(a[k], b[k]))
}
