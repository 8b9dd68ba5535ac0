import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { ConfigError } from '../errors.js'
import { AddressAllowList } from '../memcached/address.js'
import { DEFAULTS } from './defaults.js'
import { substitute, withoutEchoes, type Env } from './env.js'
import { Reader } from './reader.js'
import { allowProblems, cookiePrefixProblems, headerPrefixProblems, portProblems, readNodes, revalidateProblems, sameSiteProblems, secretProblems, trustProxyProblems, upstreamProblems, verifyOnlyProblems } from './rules.js'
import { COOKIE_DOMAIN, COOKIE_PATH, deepFreeze, DNS_NAME_PORT, KEY_PREFIX, LOG_LEVELS, REPLICAS, SAME_SITE, TOKEN, WRITE_MODES, type SidecarConfig } from './schema.js'

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
    throw new ConfigError([`${file}: invalid YAML (${(err as Error).message.split('\n')[0]})${unquotedVariable(text, err)}`], { cause: err })
  }
  return buildConfig(raw ?? {}, env)
}

/**
 * Variables are substituted after parsing, so YAML sees `${VAR:-default}` itself: inside a
 * flow collection (`{ }`, `[ ]`) its braces are YAML's. When the error's line holds one
 * unquoted, say how to write it.
 */
function unquotedVariable (text: string, err: unknown): string {
  const line = (err as { linePos?: Array<{ line: number }> }).linePos?.[0]?.line
  const source = line === undefined ? undefined : text.split('\n')[line - 1]
  // eslint-disable-next-line no-template-curly-in-string -- the text shows the syntax itself
  return source !== undefined && /(^|[^"'])\$\{/.test(source) ? '; a ${VAR} inside { } or [ ] must be quoted: "${VAR:-default}"' : ''
}

const known = (section: object): string[] => Object.keys(section)

/**
 * Validates an already parsed document (YAML or object) against the schema; every absent key
 * takes its DEFAULTS entry. Problems are listed in the order keys are read.
 */
export function buildConfig (raw: unknown, env: Env = process.env): SidecarConfig {
  const problems: string[] = []
  const substituted = substitute(raw, '', env, problems)
  const reader = new Reader(problems)
  const root = reader.section(substituted, '', known(DEFAULTS))

  const listen = reader.section(root.listen, 'listen', known(DEFAULTS.listen))
  const upstream = reader.section(root.upstream, 'upstream', known(DEFAULTS.upstream))
  const admin = reader.section(root.admin, 'admin', known(DEFAULTS.admin))
  const session = reader.section(root.session, 'session', known(DEFAULTS.session))
  const cookie = reader.section(session.cookie, 'session.cookie', known(DEFAULTS.session.cookie))
  const cache = reader.section(root.cache, 'cache', known(DEFAULTS.cache))
  const memcached = reader.section(root.memcached, 'memcached', known(DEFAULTS.memcached))
  const discovery = reader.section(memcached.discovery, 'memcached.discovery', known(DEFAULTS.memcached.discovery))
  const discoveryDns = reader.optionalString(discovery.dns, 'memcached.discovery.dns', DNS_NAME_PORT, 'must be name:port (a DNS name and a port)')
  const cookies = reader.section(root.cookies, 'cookies', known(DEFAULTS.cookies))
  const shutdown = reader.section(root.shutdown, 'shutdown', known(DEFAULTS.shutdown))
  const log = reader.section(root.log, 'log', known(DEFAULTS.log))

  const secrets = reader.strings(session.secrets, 'session.secrets', undefined)
  const verifyOnlyEntries = reader.sparseStrings(session.verifyOnly, 'session.verifyOnly')
  const verifyOnly = verifyOnlyEntries.map((e) => e.value)
  problems.push(...secretProblems(secrets, verifyOnly), ...verifyOnlyProblems(verifyOnlyEntries, secrets))
  const idleTimeout = reader.integer(session.idleTimeout, 'session.idleTimeout', DEFAULTS.session.idleTimeout, 1, 30 * 24 * 3600)
  const revalidateMs = reader.integer(cache.revalidateMs, 'cache.revalidateMs', DEFAULTS.cache.revalidateMs.derive({ idleTimeout }), 0, Number.MAX_SAFE_INTEGER)
  problems.push(...revalidateProblems(revalidateMs, idleTimeout))
  const headerPrefix = reader.string(session.headerPrefix, 'session.headerPrefix', DEFAULTS.session.headerPrefix, TOKEN, 'must be an HTTP header name').toLowerCase()
  problems.push(...headerPrefixProblems(headerPrefix))
  const ignore = reader.regex(session.ignore, 'session.ignore', DEFAULTS.session.ignore)

  const sameSite = reader.oneOf(cookie.sameSite, 'session.cookie.sameSite', DEFAULTS.session.cookie.sameSite, SAME_SITE)
  const secure = reader.boolean(cookie.secure, 'session.cookie.secure', DEFAULTS.session.cookie.secure)
  problems.push(...sameSiteProblems(sameSite, secure))
  const cookiePath = reader.string(cookie.path, 'session.cookie.path', DEFAULTS.session.cookie.path, COOKIE_PATH, 'must start with / and hold no spaces or ;')
  const cookieName = reader.string(cookie.name, 'session.cookie.name', DEFAULTS.session.cookie.name, TOKEN, 'must be a cookie name token')
  const cookieDomain = reader.optionalString(cookie.domain, 'session.cookie.domain', COOKIE_DOMAIN, 'must be a domain name')
  problems.push(...cookiePrefixProblems(cookieName, secure, cookiePath, cookieDomain))

  const trustProxies = reader.strings(listen.trustProxies, 'listen.trustProxies', DEFAULTS.listen.trustProxies) ?? []
  problems.push(...trustProxyProblems(trustProxies))

  const allow = reader.strings(memcached.allow, 'memcached.allow', DEFAULTS.memcached.allow, true) ?? []
  const badAllowRules = allowProblems(allow)
  problems.push(...badAllowRules)
  const allowList = badAllowRules.length === 0 ? new AddressAllowList(allow) : undefined

  const nodeTexts = reader.strings(memcached.nodes, 'memcached.nodes', [], true) ?? []
  const { nodes, problems: nodeProblems } = readNodes(nodeTexts, allowList, discoveryDns)
  problems.push(...nodeProblems)
  const replicas = reader.oneOf(memcached.replicas, 'memcached.replicas', DEFAULTS.memcached.replicas.derive({ nodes, discoveryDns }), REPLICAS)

  const cookiesDomain = reader.optionalString(cookies.domain, 'cookies.domain', COOKIE_DOMAIN, 'must be a domain name')

  const config: SidecarConfig = {
    listen: {
      host: reader.string(listen.host, 'listen.host', DEFAULTS.listen.host),
      port: reader.integer(listen.port, 'listen.port', DEFAULTS.listen.port, 0, 65535),
      trustProxies,
      forwarded: reader.boolean(listen.forwarded, 'listen.forwarded', DEFAULTS.listen.forwarded),
      headersTimeoutMs: reader.integer(listen.headersTimeoutMs, 'listen.headersTimeoutMs', DEFAULTS.listen.headersTimeoutMs, 1, 3_600_000),
      bodyIdleTimeoutMs: reader.integer(listen.bodyIdleTimeoutMs, 'listen.bodyIdleTimeoutMs', DEFAULTS.listen.bodyIdleTimeoutMs, 1, 3_600_000),
      keepAliveTimeoutMs: reader.integer(listen.keepAliveTimeoutMs, 'listen.keepAliveTimeoutMs', DEFAULTS.listen.keepAliveTimeoutMs, 1, 3_600_000)
    },
    upstream: {
      url: reader.url(upstream.url, 'upstream.url', DEFAULTS.upstream.url),
      timeoutMs: reader.integer(upstream.timeoutMs, 'upstream.timeoutMs', DEFAULTS.upstream.timeoutMs, 1, 3_600_000)
    },
    admin: {
      host: reader.string(admin.host, 'admin.host', DEFAULTS.admin.host),
      port: reader.integer(admin.port, 'admin.port', DEFAULTS.admin.port, 0, 65535)
    },
    session: {
      secrets: secrets ?? [],
      verifyOnly,
      idleTimeout,
      maxBytes: reader.integer(session.maxBytes, 'session.maxBytes', DEFAULTS.session.maxBytes, 2, 1_000_000),
      headerPrefix,
      ignore,
      cookie: {
        name: cookieName,
        domain: cookieDomain,
        path: cookiePath,
        secure,
        httpOnly: reader.boolean(cookie.httpOnly, 'session.cookie.httpOnly', DEFAULTS.session.cookie.httpOnly),
        sameSite,
        maxAge: cookie.maxAge === undefined || cookie.maxAge === null
          ? DEFAULTS.session.cookie.maxAge
          : reader.integer(cookie.maxAge, 'session.cookie.maxAge', 0, 1, 400 * 24 * 3600)
      }
    },
    cache: {
      maxBytes: reader.integer(cache.maxBytes, 'cache.maxBytes', DEFAULTS.cache.maxBytes, 1024, Number.MAX_SAFE_INTEGER),
      revalidateMs
    },
    memcached: {
      nodes,
      replicas,
      write: reader.oneOf(memcached.write, 'memcached.write', DEFAULTS.memcached.write, WRITE_MODES),
      timeoutMs: reader.integer(memcached.timeoutMs, 'memcached.timeoutMs', DEFAULTS.memcached.timeoutMs, 1, 60_000),
      keyPrefix: reader.string(memcached.keyPrefix, 'memcached.keyPrefix', DEFAULTS.memcached.keyPrefix, KEY_PREFIX, 'must be at most 200 printable ASCII characters without spaces'),
      allow,
      encrypt: reader.boolean(memcached.encrypt, 'memcached.encrypt', DEFAULTS.memcached.encrypt),
      discovery: {
        dns: discoveryDns,
        intervalMs: reader.integer(discovery.intervalMs, 'memcached.discovery.intervalMs', DEFAULTS.memcached.discovery.intervalMs, 100, 3_600_000)
      }
    },
    cookies: {
      domain: cookiesDomain,
      names: reader.strings(cookies.names, 'cookies.names', DEFAULTS.cookies.names) ?? []
    },
    shutdown: {
      delayMs: reader.integer(shutdown.delayMs, 'shutdown.delayMs', DEFAULTS.shutdown.delayMs, 0, 600_000),
      timeoutMs: reader.integer(shutdown.timeoutMs, 'shutdown.timeoutMs', DEFAULTS.shutdown.timeoutMs, 0, 600_000)
    },
    log: { level: reader.oneOf(log.level, 'log.level', DEFAULTS.log.level, LOG_LEVELS) }
  }
  problems.push(...upstreamProblems(config.upstream.url), ...portProblems(config.listen, config.admin))
  if (problems.length > 0) throw new ConfigError(withoutEchoes(problems))
  return deepFreeze(config)
}
