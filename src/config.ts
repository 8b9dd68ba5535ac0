import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { ConfigError } from './errors.js'
import { checkTrustRule, DEFAULT_TRUST_PROXIES } from './http/forwarding.js'
import { AddressAllowList, parseAddress } from './memcached/address.js'

/** Milliseconds. */
export type Milliseconds = number
/** Seconds. */
export type Seconds = number
/** Bytes. */
export type Bytes = number

export interface SidecarConfig {
  readonly listen: {
    /** Where clients (the load balancer) connect. Default 0.0.0.0:8080. */
    readonly host: string
    readonly port: number
    /**
     * Peers (IPs and CIDRs) whose X-Forwarded-For/-Proto/-Host (and Forwarded) are kept and
     * extended; anyone else's are replaced. Default loopback and the private ranges.
     */
    readonly trustProxies: readonly string[]
    /** Also send RFC 7239 `Forwarded` to the app. Default false. */
    readonly forwarded: boolean
    /** Longest a client may take to send request headers: then 408. Default 60000 (nginx's client_header_timeout). */
    readonly headersTimeoutMs: Milliseconds
    /** Longest a client may pause inside a request body: then 408. Default 60000 (nginx's client_body_timeout). */
    readonly bodyIdleTimeoutMs: Milliseconds
    /** How long an idle client connection stays open. Default 75000 (nginx's keepalive_timeout). */
    readonly keepAliveTimeoutMs: Milliseconds
  }
  readonly upstream: {
    /** The app instance this sidecar fronts. Default http://127.0.0.1:3000. */
    readonly url: string
    /** Longest wait for the app's response headers (and between body chunks): then 504. Default 30000. */
    readonly timeoutMs: Milliseconds
  }
  /** /healthz, /readyz, /metrics. Default 127.0.0.1:9090: keep it off public interfaces. */
  readonly admin: { readonly host: string, readonly port: number }
  readonly session: {
    /** HMAC keys; [0] signs, all verify (rotation). Required, each at least 16 characters. */
    readonly secrets: readonly string[]
    /** Seconds a session lives without a request; memcached item TTL. Default 1800. */
    readonly idleTimeout: Seconds
    /** Largest session, in bytes of compact JSON. Default 8192 (apps read X-Session as a header). */
    readonly maxBytes: Bytes
    /** Lower-case prefix of the protocol headers. Default x-session. */
    readonly headerPrefix: string
    /** Paths matching this regex skip all session work; null disables. */
    readonly ignore: RegExp | null
    readonly cookie: CookieConfig
  }
  readonly cache: {
    /** Local LRU bound, bytes of session data plus bookkeeping. Default 64 MiB. */
    readonly maxBytes: Bytes
    /** How long a local copy is trusted before a touch revalidates it. Default 30000, at most half the TTL. */
    readonly revalidateMs: Milliseconds
  }
  readonly memcached: {
    /** Where new sessions are placed, `host:port` / `[v6]:port`. May be empty (local-only). */
    readonly nodes: readonly string[]
    /** 2 = primary and backup copies. Default 2 with 2+ nodes, else 1. */
    readonly replicas: 1 | 2
    /** async: write without holding the response; sync: the response waits for the primary. */
    readonly write: 'async' | 'sync'
    /** Longest a request waits on memcached in all. Default 250. */
    readonly timeoutMs: Milliseconds
    /** Prepended to the session key in memcached. Default `sess:`. */
    readonly keyPrefix: string
    /** CIDRs and host globs a cookie's addresses must match; empty = any signed address. */
    readonly allow: readonly string[]
    /** Encrypt the stored copies (they are always authenticated). Default true. */
    readonly encrypt: boolean
    readonly discovery: {
      /** `name:port` re-resolved (A and AAAA) every intervalMs; its addresses join `nodes`. */
      readonly dns: string | undefined
      /** Default 10000. */
      readonly intervalMs: Milliseconds
    }
  }
  readonly cookies: {
    /** Domain set on the app's own Set-Cookie headers; undefined leaves them alone. */
    readonly domain: string | undefined
    /** Only these cookie names get the domain; empty = all. */
    readonly names: readonly string[]
  }
  /** Longest a SIGTERM drain waits for in-flight requests and pending writes. Default 10000. */
  readonly shutdown: { readonly timeoutMs: Milliseconds }
  readonly log: { readonly level: string }
}

export interface CookieConfig {
  /** Default sid. */
  readonly name: string
  readonly domain: string | undefined
  /** Default /. */
  readonly path: string
  /** Default true; false for plain-http development. */
  readonly secure: boolean
  /** Default true. */
  readonly httpOnly: boolean
  /** Default lax. */
  readonly sameSite: 'lax' | 'strict' | 'none'
  /** Seconds; undefined = browser-session cookie. */
  readonly maxAge: Seconds | undefined
}

export const DEFAULT_IGNORE = '\\.(ico|png|gif|jpe?g|css|js|svg|woff2?)$'

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const COOKIE_DOMAIN = /^\.?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i
// memcached keys: printable ASCII without space, at most 250 bytes with the 22-char session key.
const KEY_PREFIX = /^[\x21-\x7e]{0,200}$/
const DNS_NAME_PORT = /^(?=.{1,253}:)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?:[0-9]{1,5}$/i
const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

type Raw = Record<string, unknown>
type Env = Record<string, string | undefined>

/** Reads, substitutes, validates and freezes a config file. Throws ConfigError listing every problem. */
export function loadConfig (file: string, env: Env = process.env): SidecarConfig {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError([`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`], { cause: err })
  }
  let raw: unknown
  try {
    raw = parseYaml(text)
  } catch (err) {
    throw new ConfigError([`${file}: invalid YAML (${(err as Error).message.split('\n')[0]})`], { cause: err })
  }
  return buildConfig(raw ?? {}, env)
}

/** Validates an already parsed document (YAML or object) against the schema. */
export function buildConfig (raw: unknown, env: Env = process.env): SidecarConfig {
  const problems: string[] = []
  const substituted = substitute(raw, '', env, problems)
  const reader = new Reader(problems)
  const root = reader.section(substituted, '', ['listen', 'upstream', 'admin', 'session', 'cache', 'memcached', 'cookies', 'shutdown', 'log'])

  const listen = reader.section(root.listen, 'listen', ['host', 'port', 'trustProxies', 'forwarded', 'headersTimeoutMs', 'bodyIdleTimeoutMs', 'keepAliveTimeoutMs'])
  const upstream = reader.section(root.upstream, 'upstream', ['url', 'timeoutMs'])
  const admin = reader.section(root.admin, 'admin', ['host', 'port'])
  const session = reader.section(root.session, 'session', ['secrets', 'idleTimeout', 'maxBytes', 'headerPrefix', 'ignore', 'cookie'])
  const cookie = reader.section(session.cookie, 'session.cookie', ['name', 'domain', 'path', 'secure', 'httpOnly', 'sameSite', 'maxAge'])
  const cache = reader.section(root.cache, 'cache', ['maxBytes', 'revalidateMs'])
  const memcached = reader.section(root.memcached, 'memcached', ['nodes', 'replicas', 'write', 'timeoutMs', 'keyPrefix', 'allow', 'encrypt', 'discovery'])
  const discovery = reader.section(memcached.discovery, 'memcached.discovery', ['dns', 'intervalMs'])
  const discoveryDns = reader.optionalString(discovery.dns, 'memcached.discovery.dns', DNS_NAME_PORT, 'must be name:port (a DNS name and a port)')
  const cookies = reader.section(root.cookies, 'cookies', ['domain', 'names'])
  const shutdown = reader.section(root.shutdown, 'shutdown', ['timeoutMs'])
  const log = reader.section(root.log, 'log', ['level'])

  const secrets = reader.strings(session.secrets, 'session.secrets', undefined)
  if (secrets === undefined || secrets.length === 0) {
    problems.push('session.secrets: required, a list of at least one secret (refusing to start without one)')
  } else {
    secrets.forEach((s, i) => {
      if (s.length < 16) problems.push(`session.secrets[${i}]: must be at least 16 characters`)
      else if (secrets.indexOf(s) < i) problems.push(`session.secrets[${i}]: is listed twice`)
    })
  }
  const idleTimeout = reader.integer(session.idleTimeout, 'session.idleTimeout', 1800, 1, 30 * 24 * 3600)
  const revalidateMs = reader.integer(cache.revalidateMs, 'cache.revalidateMs', Math.min(30000, idleTimeout * 500), 0, Number.MAX_SAFE_INTEGER)
  if (revalidateMs > idleTimeout * 500) {
    problems.push(`cache.revalidateMs: must be at most half of session.idleTimeout (${idleTimeout * 500} ms)`)
  }
  const headerPrefix = reader.string(session.headerPrefix, 'session.headerPrefix', 'x-session', TOKEN, 'must be an HTTP header name').toLowerCase()
  const ignore = reader.regex(session.ignore, 'session.ignore', DEFAULT_IGNORE)

  const sameSite = reader.oneOf(cookie.sameSite, 'session.cookie.sameSite', 'lax', ['lax', 'strict', 'none'] as const)
  const secure = reader.boolean(cookie.secure, 'session.cookie.secure', true)
  if (sameSite === 'none' && !secure) problems.push('session.cookie.sameSite: "none" requires session.cookie.secure: true')
  const cookiePath = reader.string(cookie.path, 'session.cookie.path', '/', /^\/[\x21-\x3a\x3c-\x7e]*$/, 'must start with / and hold no spaces or ;')
  const cookieName = reader.string(cookie.name, 'session.cookie.name', 'sid', TOKEN, 'must be a cookie name token')
  const cookieDomain = reader.optionalString(cookie.domain, 'session.cookie.domain', COOKIE_DOMAIN, 'must be a domain name')
  problems.push(...cookiePrefixProblems(cookieName, secure, cookiePath, cookieDomain))

  const trustProxies = reader.strings(listen.trustProxies, 'listen.trustProxies', DEFAULT_TRUST_PROXIES) ?? []
  trustProxies.forEach((rule, i) => {
    const problem = checkTrustRule(rule)
    if (problem !== undefined) problems.push(`listen.trustProxies[${i}]: ${problem}`)
  })

  const allow = reader.strings(memcached.allow, 'memcached.allow', []) ?? []
  let allowList: AddressAllowList | undefined
  const allowProblems = allow.map((rule, i) => {
    const p = AddressAllowList.check(rule)
    return p === undefined ? undefined : `memcached.allow[${i}]: ${p}`
  }).filter((p): p is string => p !== undefined)
  problems.push(...allowProblems)
  if (allowProblems.length === 0) allowList = new AddressAllowList(allow)

  const nodeTexts = reader.strings(memcached.nodes, 'memcached.nodes', []) ?? []
  const nodes: string[] = []
  nodeTexts.forEach((text, i) => {
    const address = parseAddress(text)
    if (address === undefined) {
      problems.push(`memcached.nodes[${i}]: "${text}" is not host:port or [ipv6]:port`)
    } else if (address.family === 6) {
      // memcache-client 1.0.5 splits the server string on ':' and cannot reach IPv6 literals.
      problems.push(`memcached.nodes[${i}]: "${text}": IPv6 literals are not supported by the memcached client; use a hostname`)
    } else if (allowList !== undefined && !allowList.allows(address)) {
      problems.push(`memcached.nodes[${i}]: "${text}" is not permitted by memcached.allow`)
    } else if (nodes.includes(address.text)) {
      problems.push(`memcached.nodes[${i}]: "${text}" is listed twice`)
    } else {
      nodes.push(address.text)
    }
  })
  if (nodeTexts.length === 0 && discoveryDns === undefined) problems.push('memcached.nodes: required, at least one host:port (sessions are placed there), unless memcached.discovery.dns is set')
  // With discovery the node count is not known at start: default to a backup copy.
  const replicas = reader.oneOf(memcached.replicas, 'memcached.replicas', nodes.length >= 2 || discoveryDns !== undefined ? 2 : 1, [1, 2] as const)

  const cookiesDomain = reader.optionalString(cookies.domain, 'cookies.domain', COOKIE_DOMAIN, 'must be a domain name')

  const config: SidecarConfig = {
    listen: {
      host: reader.string(listen.host, 'listen.host', '0.0.0.0'),
      port: reader.integer(listen.port, 'listen.port', 8080, 0, 65535),
      trustProxies,
      forwarded: reader.boolean(listen.forwarded, 'listen.forwarded', false),
      headersTimeoutMs: reader.integer(listen.headersTimeoutMs, 'listen.headersTimeoutMs', 60_000, 1, 3_600_000),
      bodyIdleTimeoutMs: reader.integer(listen.bodyIdleTimeoutMs, 'listen.bodyIdleTimeoutMs', 60_000, 1, 3_600_000),
      keepAliveTimeoutMs: reader.integer(listen.keepAliveTimeoutMs, 'listen.keepAliveTimeoutMs', 75_000, 1, 3_600_000)
    },
    upstream: {
      url: reader.url(upstream.url, 'upstream.url', 'http://127.0.0.1:3000'),
      timeoutMs: reader.integer(upstream.timeoutMs, 'upstream.timeoutMs', 30000, 1, 3_600_000)
    },
    admin: {
      host: reader.string(admin.host, 'admin.host', '127.0.0.1'),
      port: reader.integer(admin.port, 'admin.port', 9090, 0, 65535)
    },
    session: {
      secrets: secrets ?? [],
      idleTimeout,
      maxBytes: reader.integer(session.maxBytes, 'session.maxBytes', 8192, 2, 1_000_000),
      headerPrefix,
      ignore,
      cookie: {
        name: cookieName,
        domain: cookieDomain,
        path: cookiePath,
        secure,
        httpOnly: reader.boolean(cookie.httpOnly, 'session.cookie.httpOnly', true),
        sameSite,
        maxAge: cookie.maxAge === undefined || cookie.maxAge === null
          ? undefined
          : reader.integer(cookie.maxAge, 'session.cookie.maxAge', 0, 1, 400 * 24 * 3600)
      }
    },
    cache: {
      maxBytes: reader.integer(cache.maxBytes, 'cache.maxBytes', 64 * 1024 * 1024, 1024, Number.MAX_SAFE_INTEGER),
      revalidateMs
    },
    memcached: {
      nodes,
      replicas,
      write: reader.oneOf(memcached.write, 'memcached.write', 'async', ['async', 'sync'] as const),
      timeoutMs: reader.integer(memcached.timeoutMs, 'memcached.timeoutMs', 250, 1, 60_000),
      keyPrefix: reader.string(memcached.keyPrefix, 'memcached.keyPrefix', 'sess:', KEY_PREFIX, 'must be at most 200 printable ASCII characters without spaces'),
      allow,
      encrypt: reader.boolean(memcached.encrypt, 'memcached.encrypt', true),
      discovery: {
        dns: discoveryDns,
        intervalMs: reader.integer(discovery.intervalMs, 'memcached.discovery.intervalMs', 10000, 100, 3_600_000)
      }
    },
    cookies: {
      domain: cookiesDomain,
      names: reader.strings(cookies.names, 'cookies.names', []) ?? []
    },
    shutdown: { timeoutMs: reader.integer(shutdown.timeoutMs, 'shutdown.timeoutMs', 10000, 0, 600_000) },
    log: { level: reader.oneOf(log.level, 'log.level', 'info', LOG_LEVELS) }
  }
  if (problems.length > 0) throw new ConfigError(withoutEchoes(problems))
  return deepFreeze(config)
}

/**
 * Browsers silently drop a cookie whose name prefix its attributes contradict (RFC 6265bis
 * section 4.1.3; prefixes are matched without regard to case): refuse such settings at start.
 */
function cookiePrefixProblems (name: string, secure: boolean, path: string, domain: string | undefined): string[] {
  const problems: string[] = []
  const lower = name.toLowerCase()
  if (lower.startsWith('__host-')) {
    if (!secure) problems.push(`session.cookie.secure: a cookie named "${name}" (__Host- prefix) needs secure: true, or browsers drop it`)
    if (path !== '/') problems.push(`session.cookie.path: a cookie named "${name}" (__Host- prefix) needs path "/", or browsers drop it`)
    if (domain !== undefined) problems.push(`session.cookie.domain: a cookie named "${name}" (__Host- prefix) must have no domain, or browsers drop it`)
  } else if (lower.startsWith('__secure-') && !secure) {
    problems.push(`session.cookie.secure: a cookie named "${name}" (__Secure- prefix) needs secure: true, or browsers drop it`)
  }
  return problems
}

const UNSET_VARIABLE = ': environment variable '

/**
 * A value whose variable is unset then also fails its own checks (empty, too short, list
 * now empty): report only the cause, once, under the key it happened at.
 */
function withoutEchoes (problems: readonly string[]): string[] {
  const unset = problems.filter((p) => p.includes(UNSET_VARIABLE)).map((p) => p.slice(0, p.indexOf(': ')))
  return problems.filter((p) => {
    if (p.includes(UNSET_VARIABLE)) return true
    const path = p.slice(0, p.indexOf(': '))
    return !unset.some((u) => u === path || u.startsWith(`${path}[`) || u.startsWith(`${path}.`))
  })
}

/** Replaces `${VAR}` and `${VAR:-default}` inside string values, never in keys or structure. */
function substitute (value: unknown, path: string, env: Env, problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REF, (_match, name: string, fallback: string | undefined) => {
      const found = env[name]
      if (found !== undefined && found !== '') return found
      if (fallback !== undefined) return fallback
      problems.push(`${path || '(root)'}${UNSET_VARIABLE}${name} is not set`)
      return ''
    })
  }
  if (Array.isArray(value)) return value.map((v, i) => substitute(v, `${path}[${i}]`, env, problems))
  if (value !== null && typeof value === 'object') {
    const out: Raw = {}
    for (const [k, v] of Object.entries(value)) out[k] = substitute(v, path === '' ? k : `${path}.${k}`, env, problems)
    return out
  }
  return value
}

/** Reads typed values, recording one problem line per bad value and returning a default instead. */
class Reader {
  constructor (private readonly problems: string[]) {}

  section (value: unknown, path: string, keys: readonly string[]): Raw {
    if (value === undefined || value === null) return {}
    if (typeof value !== 'object' || Array.isArray(value)) {
      this.problems.push(`${path || '(root)'}: must be a mapping`)
      return {}
    }
    for (const key of Object.keys(value)) {
      if (!keys.includes(key)) this.problems.push(`${path === '' ? key : `${path}.${key}`}: unknown key (expected one of ${keys.join(', ')})`)
    }
    return value as Raw
  }

  string (value: unknown, path: string, fallback: string, pattern?: RegExp, rule?: string): string {
    if (value === undefined || value === null) return fallback
    if (typeof value !== 'string' || value === '') {
      this.problems.push(`${path}: must be a non-empty string`)
      return fallback
    }
    if (pattern !== undefined && !pattern.test(value)) {
      this.problems.push(`${path}: ${rule ?? `must match ${String(pattern)}`}`)
      return fallback
    }
    return value
  }

  optionalString (value: unknown, path: string, pattern: RegExp, rule: string): string | undefined {
    if (value === undefined || value === null || value === '') return undefined
    const s = this.string(value, path, '', pattern, rule)
    return s === '' ? undefined : s
  }

  strings (value: unknown, path: string, fallback: readonly string[] | undefined): string[] | undefined {
    if (value === undefined || value === null) return fallback === undefined ? undefined : [...fallback]
    if (!Array.isArray(value)) {
      this.problems.push(`${path}: must be a list of strings`)
      return fallback === undefined ? undefined : [...fallback]
    }
    const out: string[] = []
    value.forEach((v, i) => {
      if (typeof v === 'string' && v !== '') out.push(v)
      else if (typeof v === 'number') out.push(String(v))
      else this.problems.push(`${path}[${i}]: must be a non-empty string`)
    })
    return out
  }

  integer (value: unknown, path: string, fallback: number, min: number, max: number): number {
    if (value === undefined || value === null) return fallback
    // Whole-value env substitutions arrive as strings: accept their numeric form.
    const n = typeof value === 'string' && /^-?[0-9]+$/.test(value.trim()) ? Number(value) : value
    if (typeof n !== 'number' || !Number.isInteger(n)) {
      this.problems.push(`${path}: must be an integer`)
      return fallback
    }
    if (n < min || n > max) {
      this.problems.push(`${path}: must be between ${min} and ${max} (got ${n})`)
      return fallback
    }
    return n
  }

  boolean (value: unknown, path: string, fallback: boolean): boolean {
    if (value === undefined || value === null) return fallback
    if (value === true || value === 'true') return true
    if (value === false || value === 'false') return false
    this.problems.push(`${path}: must be true or false`)
    return fallback
  }

  oneOf<T extends string | number> (value: unknown, path: string, fallback: T, allowed: readonly T[]): T {
    if (value === undefined || value === null) return fallback
    const v = typeof value === 'string' && typeof allowed[0] === 'number' ? Number(value) : value
    if (!allowed.includes(v as T)) {
      this.problems.push(`${path}: must be one of ${allowed.join(', ')} (got ${JSON.stringify(value)})`)
      return fallback
    }
    return v as T
  }

  regex (value: unknown, path: string, fallback: string): RegExp | null {
    if (value === null || value === '') return null
    const source = this.string(value, path, fallback)
    try {
      return new RegExp(source)
    } catch (err) {
      this.problems.push(`${path}: invalid regular expression (${(err as Error).message})`)
      return null
    }
  }

  url (value: unknown, path: string, fallback: string): string {
    const s = this.string(value, path, fallback)
    let url: URL
    try {
      url = new URL(s)
    } catch {
      this.problems.push(`${path}: must be an absolute http:// or https:// URL`)
      return fallback
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      this.problems.push(`${path}: must be an absolute http:// or https:// URL`)
      return fallback
    }
    return s
  }
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !(value instanceof RegExp)) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}
