import { parseCookie, parseSetCookie, stringifySetCookie, type SetCookie } from 'cookie'
import type { CookieConfig } from '../config/index.js'

// Values pass through untouched: the sidecar's own never need escaping, the app's are its own.
const verbatim = { decode: (s: string): string => s, encode: (s: string): string => s }

/**
 * The sidecar's cookie on the wire: read from the Cookie header, removed from what the app
 * receives, and written with attributes built once at start.
 */
export class SessionCookieHeaders {
  readonly name: string
  readonly #needle: string
  readonly #attributes: string
  readonly #clear: string

  constructor (config: CookieConfig) {
    this.name = config.name
    this.#needle = `${config.name}=`
    const attributes: Omit<SetCookie, 'name' | 'value'> = {
      domain: config.domain,
      path: config.path,
      secure: config.secure,
      httpOnly: config.httpOnly,
      sameSite: config.sameSite,
      maxAge: config.maxAge
    }
    // Built once by the cookie library; each response only prepends `name=value`.
    const sample = stringifySetCookie({ name: config.name, value: 'v', ...attributes }, verbatim)
    this.#attributes = sample.slice(this.#needle.length + 1)
    this.#clear = stringifySetCookie({ name: config.name, value: '', ...attributes, maxAge: 0, expires: new Date(0) }, verbatim)
  }

  /** Cheap pre-check before any parsing: most requests without our cookie stop here. */
  mayHold (cookieHeader: string | undefined): cookieHeader is string {
    return cookieHeader !== undefined && cookieHeader.includes(this.#needle)
  }

  read (cookieHeader: string): string | undefined {
    return parseCookie(cookieHeader, verbatim)[this.name]
  }

  /**
   * Every value sent under the sidecar's name, in order: a browser sends one per path or
   * domain variant it holds, and the cookie library keeps only the first.
   */
  readAll (cookieHeader: string): string[] {
    const values: string[] = []
    for (const pair of cookieHeader.split(';')) {
      const eq = pair.indexOf('=')
      if (eq < 0 || pair.slice(0, eq).trim() !== this.name) continue
      let value = pair.slice(eq + 1).trim()
      if (value.length >= 2 && value.charCodeAt(0) === 34 /* " */ && value.charCodeAt(value.length - 1) === 34) value = value.slice(1, -1)
      values.push(value)
    }
    return values
  }

  /**
   * The Cookie header without the sidecar's cookie, the rest byte for byte as sent, separators
   * and spacing included (the cookie library can only re-serialise, which would drop duplicate
   * names and re-encode). Undefined when nothing is left.
   */
  remove (cookieHeader: string): string | undefined {
    const pairs = cookieHeader.split(';')
    const kept = pairs.filter((pair) => {
      const eq = pair.indexOf('=')
      return (eq < 0 ? pair : pair.slice(0, eq)).trim() !== this.name
    })
    if (kept.length === pairs.length) return cookieHeader
    // Only the space that followed a removed first pair's separator goes.
    const joined = kept.join(';').replace(/^\s+/, '')
    return joined.trim() === '' ? undefined : joined
  }

  set (value: string): string {
    return `${this.#needle}${value}${this.#attributes}`
  }

  /** Expires the cookie at once (same name, domain and path, or browsers keep it). */
  get clear (): string {
    return this.#clear
  }
}

/**
 * The session cookie is the sidecar's: a Set-Cookie of that name from the app (its framework's
 * own session, `session` or `connect.sid`, under the same name) would replace it in the browser
 * and log the user out. Such lines are removed; `strip` says how many.
 */
export class OwnCookieGuard {
  constructor (readonly name: string) {}

  /** Removes the app's Set-Cookie lines for the session cookie from `lines`; returns how many. */
  strip (lines: NodeJS.Dict<string | string[]>): number {
    const header = lines['set-cookie']
    if (header === undefined) return 0
    const all = Array.isArray(header) ? header : [header]
    const kept = all.filter((line) => !this.#own(line))
    if (kept.length === all.length) return 0
    if (kept.length === 0) delete lines['set-cookie']
    else lines['set-cookie'] = kept
    return all.length - kept.length
  }

  #own (line: string): boolean {
    // Cheap first: most lines name another cookie.
    return line.includes(this.name) && setCookieName(line) === this.name
  }
}

/**
 * `cookies.domain`: gives the app's own cookies the fleet's Domain (never to `__Host-` ones). Only the Domain attribute
 * changes; the rest of each Set-Cookie stays byte for byte. (Re-serialising with the cookie
 * library would drop attributes it does not know and throws on values outside RFC 6265, which
 * apps do send.)
 */
export class AppCookieDomain {
  readonly #attribute: string
  readonly #names: ReadonlySet<string> | undefined

  constructor (domain: string, names: readonly string[]) {
    this.#attribute = `; Domain=${domain}`
    this.#names = names.length === 0 ? undefined : new Set(names)
  }

  rewrite (header: string | string[]): string | string[] {
    return Array.isArray(header) ? header.map((h) => this.#one(h)) : this.#one(header)
  }

  #one (header: string): string {
    const name = setCookieName(header)
    if (name === undefined || name === '' || (this.#names !== undefined && !this.#names.has(name))) return header
    // A __Host- cookie with a Domain is dropped by browsers (RFC 6265bis section 4.1.3.2).
    if (name.toLowerCase().startsWith('__host-')) return header
    const parts = header.split(';')
    // Domain goes right after name=value; any Domain the app set is dropped.
    let out = (parts[0] as string) + this.#attribute
    for (let i = 1; i < parts.length; i++) {
      const part = parts[i] as string
      if (!/^\s*domain\s*=/i.test(part) && part.trim() !== '') out += ';' + part
    }
    return out
  }
}

/** The cookie name of an app's Set-Cookie line, or undefined when the line does not parse. */
function setCookieName (line: string): string | undefined {
  try {
    return parseSetCookie(line, verbatim).name
  } catch {
    return undefined
  }
}
