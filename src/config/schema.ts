/**
 * The shape of a validated config and the formats its values must have. What each key means
 * and its unit are documented here; its default is in DEFAULTS (./defaults.ts), once.
 */

/** Milliseconds. */
export type Milliseconds = number
/** Seconds. */
export type Seconds = number
/** Bytes. */
export type Bytes = number

export interface SidecarConfig {
  readonly listen: {
    /** Where clients (the load balancer) connect. */
    readonly host: string
    /** 0 picks a free port. */
    readonly port: number
    /**
     * Peers (IPs and CIDRs) whose X-Forwarded-For/-Proto/-Host (and Forwarded) are kept and
     * extended; anyone else's are replaced.
     */
    readonly trustProxies: readonly string[]
    /** Also send RFC 7239 `Forwarded` to the app. */
    readonly forwarded: boolean
    /** Longest a client may take to send request headers: then 408 (nginx's client_header_timeout). */
    readonly headersTimeoutMs: Milliseconds
    /** Longest a client may pause inside a request body: then 408 (nginx's client_body_timeout). */
    readonly bodyIdleTimeoutMs: Milliseconds
    /** How long an idle client connection stays open (nginx's keepalive_timeout). */
    readonly keepAliveTimeoutMs: Milliseconds
  }
  readonly upstream: {
    /** The app instance this sidecar fronts. */
    readonly url: string
    /** Longest wait for the app's response headers (and between body chunks): then 504. */
    readonly timeoutMs: Milliseconds
  }
  /** /healthz, /readyz, /metrics: keep it off public interfaces. */
  readonly admin: { readonly host: string, readonly port: number }
  readonly session: {
    /**
     * HMAC keys: [0] signs cookies and seals stored copies; any further entries only verify
     * (the one-list way of writing verifyOnly). Required, each at least 16 characters.
     */
    readonly secrets: readonly string[]
    /**
     * Secrets that verify cookies and open stored copies but never sign or seal: a new secret
     * before it signs (rotation, phase 1), the old one after (phase 2). Empty entries are
     * skipped, so `${VAR:-}` keeps a slot for an optional one; each at least 16 characters.
     */
    readonly verifyOnly: readonly string[]
    /** How long a session lives without a request; the memcached item TTL. */
    readonly idleTimeout: Seconds
    /** Largest session, in bytes of compact JSON (apps read X-Session as a header). */
    readonly maxBytes: Bytes
    /** Lower-case prefix of the protocol headers. */
    readonly headerPrefix: string
    /** Paths matching this regex skip all session work; null disables. */
    readonly ignore: RegExp | null
    readonly cookie: CookieConfig
  }
  readonly cache: {
    /** Local LRU bound, bytes of session data plus bookkeeping. */
    readonly maxBytes: Bytes
    /** How long a local copy is trusted before a touch revalidates it; at most half the idle timeout. */
    readonly revalidateMs: Milliseconds
  }
  readonly memcached: {
    /** Where new sessions are placed, `host:port` (canonical form). Empty only with discovery. */
    readonly nodes: readonly string[]
    /** 2 = primary and backup copies. */
    readonly replicas: 1 | 2
    /** async: write without holding the response; sync: the response waits for the primary. */
    readonly write: 'async' | 'sync'
    /** Longest a request waits on memcached in all. */
    readonly timeoutMs: Milliseconds
    /** Prepended to the session key in memcached. */
    readonly keyPrefix: string
    /** CIDRs and host globs a cookie's addresses must match; empty = any signed address. */
    readonly allow: readonly string[]
    /** Encrypt the stored copies (they are always authenticated). */
    readonly encrypt: boolean
    readonly discovery: {
      /** `name:port` re-resolved every intervalMs; its addresses join `nodes`. */
      readonly dns: string | undefined
      readonly intervalMs: Milliseconds
    }
  }
  readonly cookies: {
    /** Domain set on the app's own Set-Cookie headers; undefined leaves them alone. */
    readonly domain: string | undefined
    /** Only these cookie names get the domain; empty = all. */
    readonly names: readonly string[]
  }
  readonly shutdown: {
    /**
     * After SIGTERM (or close()), how long /readyz answers 503 while the listener still serves
     * every request as usual, so load balancers stop routing here before it stops accepting.
     */
    readonly delayMs: Milliseconds
    /** Longest the drain that follows waits for in-flight requests and pending writes. */
    readonly timeoutMs: Milliseconds
  }
  /** A pino level. */
  readonly log: { readonly level: string }
}

export interface CookieConfig {
  readonly name: string
  readonly domain: string | undefined
  readonly path: string
  /** false only for plain-http development: browsers drop Secure cookies over http. */
  readonly secure: boolean
  readonly httpOnly: boolean
  readonly sameSite: 'lax' | 'strict' | 'none'
  /** undefined = browser-session cookie. */
  readonly maxAge: Seconds | undefined
}

export const SAME_SITE = ['lax', 'strict', 'none'] as const
export const WRITE_MODES = ['async', 'sync'] as const
export const REPLICAS = [1, 2] as const
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
export const COOKIE_PATH = /^\/[\x21-\x3a\x3c-\x7e]*$/
export const COOKIE_DOMAIN = /^\.?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i
// memcached keys: printable ASCII without space, at most 250 bytes with the 22-char session key.
export const KEY_PREFIX = /^[\x21-\x7e]{0,200}$/
export const DNS_NAME_PORT = /^(?=.{1,253}:)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?:[0-9]{1,5}$/i

/** Freezes objects and arrays all the way down (a RegExp keeps its mutable lastIndex). */
export function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !(value instanceof RegExp)) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}
