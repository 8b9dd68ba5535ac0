/** The session headers an app response carried, still encoded. */
export interface AppUpdates {
  set: string | undefined
  merge: string | undefined
  destroy: boolean
  regenerate: boolean
  /** A Set or Merge the app sent more than once (any spelling): which one, to refuse it by name. */
  duplicated?: string
}

/**
 * The header protocol between sidecar and app: names built once from `session.headerPrefix`,
 * and the stripping that keeps clients from forging them and apps from leaking them.
 */
export class HeaderProtocol {
  /** `x-session-id`: the session key, to the app. */
  readonly idHeader: string
  /** `x-session`: base64url JSON, to the app. */
  readonly dataHeader: string
  /** `x-session-unavailable: 1`, to the app: the client has a session memcached could not produce in time. */
  readonly unavailableHeader: string
  readonly #prefix: string
  readonly #set: string
  readonly #merge: string
  readonly #destroy: string
  readonly #regenerate: string

  constructor (prefix: string) {
    this.#prefix = prefix.toLowerCase().replaceAll('_', '-')
    this.dataHeader = this.#prefix
    this.idHeader = `${this.#prefix}-id`
    this.unavailableHeader = `${this.#prefix}-unavailable`
    this.#set = `${this.#prefix}-set`
    this.#merge = `${this.#prefix}-merge`
    this.#destroy = `${this.#prefix}-destroy`
    this.#regenerate = `${this.#prefix}-regenerate`
  }

  /**
   * True for a lower-case header name that starts with the prefix, any punctuation read as
   * `-`: CGI-style servers (PHP, WSGI, Rack) turn `-`, `_` and `.` alike into `_`, so
   * `X.Session` or `X_Session` would reach such an app as its session header.
   */
  isPrefixed (name: string): boolean {
    const prefix = this.#prefix
    if (name.length < prefix.length) return false
    for (let i = 0; i < prefix.length; i++) {
      const c = name.charCodeAt(i)
      const p = prefix.charCodeAt(i)
      if (c !== p && !(p === 45 /* - */ && !isAlphanumeric(c))) return false
    }
    return true
  }

  /**
   * Removes every prefixed header from an app response and returns the session updates among
   * them, or undefined when there were none. Names are compared without regard to case.
   */
  takeUpdates (headers: Record<string, string | string[] | undefined>): AppUpdates | undefined {
    let updates: AppUpdates | undefined
    for (const name in headers) {
      const lower = name.toLowerCase()
      if (!this.isPrefixed(lower)) continue
      const value = headers[name]
      delete headers[name]
      if (value === undefined) continue
      const text = Array.isArray(value) ? value.join(',') : value
      const normal = foldHeaderName(lower)
      updates ??= { set: undefined, merge: undefined, destroy: false, regenerate: false }
      // Two Sets or two Merges (two lines, or two spellings): which one the app meant is not
      // for the sidecar to guess; joined, they would read as invalid base64.
      const twice = Array.isArray(value) && value.length > 1
      if (normal === this.#set) {
        if (twice || updates.set !== undefined) updates.duplicated = 'X-Session-Set'
        updates.set = text.trim()
      } else if (normal === this.#merge) {
        if (twice || updates.merge !== undefined) updates.duplicated = 'X-Session-Merge'
        updates.merge = text.trim()
      } else if (normal === this.#destroy) {
        updates.destroy ||= isOn(value)
      } else if (normal === this.#regenerate) {
        updates.regenerate ||= isOn(value)
      }
    }
    return updates
  }
}

function isAlphanumeric (c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || (c >= 65 && c <= 90)
}

/**
 * A lower-case header name with every punctuation character read as `-`, the way CGI-style
 * servers see it (`x_forwarded_for` and `x.forwarded-for` both become HTTP_X_FORWARDED_FOR).
 */
export function foldHeaderName (lower: string): string {
  for (let i = 0; i < lower.length; i++) {
    const c = lower.charCodeAt(i)
    if (c !== 45 && !isAlphanumeric(c)) return lower.replace(/[^a-z0-9-]/g, '-')
  }
  return lower
}

/**
 * A flag's value, on or off. Sent on two lines (the app's framework and the app, say), it is on
 * when either is: a logout must not be lost to "1,1" not reading as on.
 */
function isOn (value: string | string[]): boolean {
  if (Array.isArray(value)) return value.some(isOn)
  const v = value.trim().toLowerCase()
  return v === '1' || v === 'true' || v === 'yes'
}
