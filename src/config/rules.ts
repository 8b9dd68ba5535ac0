import { checkTrustRule } from '../http/forwarding.js'
import { HeaderProtocol } from '../http/protocol.js'
import { AddressAllowList, parseAddress } from '../memcached/address.js'
import type { Seconds } from './schema.js'

// Rules a value's type cannot express: entries checked one by one, and keys checked against
// each other. Each returns its problem lines (key path, then the rule); none throws.

/** `session.secrets`: at least one (verify-only secrets never sign), each at least 16 characters, each once. */
export function secretProblems (secrets: readonly string[] | undefined, verifyOnly: readonly string[] = []): string[] {
  if (secrets === undefined || secrets.length === 0) {
    const why = verifyOnly.length > 0 ? '; session.verifyOnly never signs' : ''
    return [`session.secrets: required, a list of at least one secret (refusing to start without one)${why}`]
  }
  const problems: string[] = []
  secrets.forEach((s, i) => {
    if (s.length < 16) problems.push(`session.secrets[${i}]: must be at least 16 characters`)
    else if (secrets.indexOf(s) < i) problems.push(`session.secrets[${i}]: is listed twice`)
  })
  return problems
}

/**
 * `session.verifyOnly` (its non-empty entries, by their index as written): each at least 16
 * characters and listed once, in either list (a secret signs or only verifies, not both).
 */
export function verifyOnlyProblems (entries: ReadonlyArray<{ readonly index: number, readonly value: string }>, secrets: readonly string[] | undefined): string[] {
  const problems: string[] = []
  const seen = new Set<string>()
  for (const { index, value } of entries) {
    const path = `session.verifyOnly[${index}]`
    if (value.length < 16) problems.push(`${path}: must be at least 16 characters`)
    else if (secrets?.includes(value) === true) problems.push(`${path}: is also in session.secrets (list each secret once: it signs or only verifies)`)
    else if (seen.has(value)) problems.push(`${path}: is listed twice`)
    seen.add(value)
  }
  return problems
}

/** A local copy must be checked at least twice per idle timeout. */
export function revalidateProblems (revalidateMs: number, idleTimeout: Seconds): string[] {
  const limit = idleTimeout * 500
  return revalidateMs > limit ? [`cache.revalidateMs: must be at most half of session.idleTimeout (${limit} ms)`] : []
}

/** Browsers drop a SameSite=None cookie without Secure. */
export function sameSiteProblems (sameSite: string, secure: boolean): string[] {
  return sameSite === 'none' && !secure ? ['session.cookie.sameSite: "none" requires session.cookie.secure: true'] : []
}

/**
 * Browsers silently drop a cookie whose name prefix its attributes contradict (RFC 6265bis
 * section 4.1.3; prefixes are matched without regard to case): refuse such settings at start.
 */
export function cookiePrefixProblems (name: string, secure: boolean, path: string, domain: string | undefined): string[] {
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

/** `listen.trustProxies`: each an IP or CIDR. */
export function trustProxyProblems (rules: readonly string[]): string[] {
  return rules.flatMap((rule, i) => {
    const problem = checkTrustRule(rule)
    return problem === undefined ? [] : [`listen.trustProxies[${i}]: ${problem}`]
  })
}

/**
 * `upstream.url`: the app's origin. The sidecar sends each request's own target there, so a
 * path, query or fragment would be ignored (or break every request), and a user:password would
 * be ignored and printed in the startup line.
 */
export function upstreamProblems (url: string): string[] {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return [] // reported by the reader
  }
  const extra = [
    parsed.username !== '' || parsed.password !== '' ? 'a user or password' : undefined,
    parsed.pathname !== '/' ? `a path (${parsed.pathname})` : undefined,
    parsed.search !== '' || url.includes('?') ? 'a query' : undefined,
    parsed.hash !== '' || url.includes('#') ? 'a fragment' : undefined
  ].filter((e) => e !== undefined)
  return extra.length === 0 ? [] : [`upstream.url: must be the app's origin only (scheme, host, port), without ${extra.join(', ')}: requests keep their own path and query`]
}

/** `admin.port` and `listen.port`: two listeners cannot share a port on the same address. */
export function portProblems (listen: { readonly host: string, readonly port: number }, admin: { readonly host: string, readonly port: number }): string[] {
  if (listen.port === 0 || listen.port !== admin.port) return []
  const wildcard = (host: string): boolean => host === '' || host === '0.0.0.0' || host === '::'
  if (listen.host !== admin.host && !wildcard(listen.host) && !wildcard(admin.host)) return []
  return [`admin.port: must differ from listen.port (both ${listen.port})`]
}

/** `memcached.allow`: each a CIDR, an IP or a host glob. */
export function allowProblems (rules: readonly string[]): string[] {
  return rules.flatMap((rule, i) => {
    const problem = AddressAllowList.check(rule)
    return problem === undefined ? [] : [`memcached.allow[${i}]: ${problem}`]
  })
}

/**
 * `memcached.nodes` in canonical form, each an IPv4, IPv6 or hostname address that `allowList`
 * (undefined when the allow rules themselves are wrong) permits, listed once; at least one
 * unless `memcached.discovery.dns` is set.
 */
export function readNodes (texts: readonly string[], allowList: AddressAllowList | undefined, discoveryDns: string | undefined): { nodes: string[], problems: string[] } {
  const nodes: string[] = []
  const problems: string[] = []
  texts.forEach((text, i) => {
    const address = parseAddress(text)
    if (address === undefined) {
      problems.push(`memcached.nodes[${i}]: "${text}" is not host:port or [ipv6]:port`)
    } else if (allowList !== undefined && !allowList.allows(address)) {
      problems.push(`memcached.nodes[${i}]: "${text}" is not permitted by memcached.allow`)
    } else if (nodes.includes(address.text)) {
      problems.push(`memcached.nodes[${i}]: "${text}" is listed twice`)
    } else {
      nodes.push(address.text)
    }
  })
  if (texts.length === 0 && discoveryDns === undefined) problems.push('memcached.nodes: required, at least one host:port (sessions are placed there), unless memcached.discovery.dns is set')
  return { nodes, problems }
}

// Headers clients, apps and proxies exchange (requests and responses), for the check below.
const STANDARD_HEADERS = [
  'accept', 'accept-encoding', 'accept-language', 'access-control-allow-origin', 'access-control-request-method',
  'age', 'authorization', 'baggage', 'cache-control', 'connection', 'content-disposition', 'content-encoding',
  'content-length', 'content-security-policy', 'content-type', 'cookie', 'date', 'etag', 'expect', 'expires',
  'forwarded', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match', 'keep-alive', 'last-modified',
  'link', 'location', 'origin', 'pragma', 'priority', 'proxy-authorization', 'range', 'referer', 'retry-after',
  'sec-fetch-mode', 'sec-websocket-key', 'server', 'set-cookie', 'strict-transport-security', 'te', 'traceparent',
  'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via', 'www-authenticate', 'x-content-type-options',
  'x-csrf-token', 'x-forwarded-for', 'x-forwarded-proto', 'x-frame-options', 'x-real-ip', 'x-request-id', 'x-requested-with'
]

/**
 * `session.headerPrefix`: every header it begins is removed from requests and responses, so it
 * must begin no header clients, apps or proxies use (`content` would take Content-Type away).
 */
export function headerPrefixProblems (prefix: string): string[] {
  const protocol = new HeaderProtocol(prefix)
  const taken = STANDARD_HEADERS.filter((name) => protocol.isPrefixed(name))
  if (taken.length === 0) return []
  const named = taken.slice(0, 3).join(', ') + (taken.length > 3 ? ', ...' : '')
  return [`session.headerPrefix: "${prefix}" begins standard headers (${named}), which would be removed from every request and response; use a name of your own, such as x-session or x-myapp-session`]
}
