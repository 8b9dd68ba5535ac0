import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildConfig, loadConfig, DEFAULT_IGNORE, type SidecarConfig } from '../../src/config/index.js'
import { ConfigError } from '../../src/errors.js'

const SECRET = 's'.repeat(16)
const LISTEN_DEFAULTS = {
  host: '0.0.0.0',
  port: 8080,
  trustProxies: ['127.0.0.0/8', '::1/128', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
  forwarded: false,
  headersTimeoutMs: 60000,
  bodyIdleTimeoutMs: 60000,
  keepAliveTimeoutMs: 75000
}

/** What the helpers need of a test: tap's subtests and the root share it. */
type TestLike = Pick<typeof t, 'fail' | 'teardown'>

/** The smallest valid document: one secret and one node. */
function minimal (extra: Record<string, unknown> = {}): Record<string, unknown> {
  const session = { secrets: [SECRET], ...(extra.session as Record<string, unknown> | undefined) }
  const memcached = { nodes: ['127.0.0.1:11211'], ...(extra.memcached as Record<string, unknown> | undefined) }
  return { ...extra, session, memcached }
}

/** The problems a ConfigError lists; fails the test when nothing (or something else) is thrown. */
function problemsOf (t: TestLike, build: () => unknown): readonly string[] {
  try {
    build()
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    t.fail(`expected a ConfigError, got ${String(err)}`)
    return []
  }
  t.fail('expected a ConfigError, the config was accepted')
  return []
}

/** A temp dir with one YAML file in it, removed when the test ends. */
function yamlFile (t: TestLike, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'sidecar.yaml')
  writeFileSync(file, text)
  return file
}

t.test('defaults: every key not given takes the documented default', async (t) => {
  const config = buildConfig(minimal(), {})
  t.same(config.listen, LISTEN_DEFAULTS)
  t.same(config.upstream, { url: 'http://127.0.0.1:3000', timeoutMs: 30000 })
  t.same(config.admin, { host: '127.0.0.1', port: 9090 })
  t.same(config.session.secrets, [SECRET])
  t.equal(config.session.idleTimeout, 1800)
  t.equal(config.session.maxBytes, 8192)
  t.equal(config.session.headerPrefix, 'x-session')
  t.ok(config.session.ignore instanceof RegExp)
  t.equal(config.session.ignore?.source, DEFAULT_IGNORE)
  t.same(config.session.cookie, { name: 'sid', domain: undefined, path: '/', secure: true, httpOnly: true, sameSite: 'lax', maxAge: undefined })
  t.same(config.cache, { maxBytes: 67108864, revalidateMs: 30000 })
  t.same(config.memcached, { nodes: ['127.0.0.1:11211'], replicas: 1, write: 'async', timeoutMs: 250, keyPrefix: 'sess:', allow: [], encrypt: true, discovery: { dns: undefined, intervalMs: 10000 } })
  t.same(config.cookies, { domain: undefined, names: [] })
  t.same(config.shutdown, { delayMs: 5000, timeoutMs: 10000 })
  t.same(config.log, { level: 'info' })
})

t.test('the default ignore pattern skips static assets and nothing else', async (t) => {
  const ignore = buildConfig(minimal(), {}).session.ignore as RegExp
  for (const path of ['/favicon.ico', '/a.png', '/b.gif', '/c.jpg', '/d.jpeg', '/e.css', '/f.js', '/g.svg', '/h.woff', '/i.woff2']) t.ok(ignore.test(path), path)
  for (const path of ['/', '/login', '/api/data.json', '/a.png/edit']) t.notOk(ignore.test(path), path)
})

t.test('session.ignore: null or an empty string disables it', async (t) => {
  t.equal(buildConfig(minimal({ session: { ignore: null } }), {}).session.ignore, null)
  t.equal(buildConfig(minimal({ session: { ignore: '' } }), {}).session.ignore, null)
})

t.test('replicas default to 2 with two or more nodes and to 1 with one', async (t) => {
  t.equal(buildConfig(minimal({ memcached: { nodes: ['10.0.0.5:11211'] } }), {}).memcached.replicas, 1)
  t.equal(buildConfig(minimal({ memcached: { nodes: ['10.0.0.5:11211', '10.0.0.6:11211'] } }), {}).memcached.replicas, 2)
  t.equal(buildConfig(minimal({ memcached: { nodes: ['a:1', 'b:1', 'c:1'] } }), {}).memcached.replicas, 2)
  t.equal(buildConfig(minimal({ memcached: { nodes: ['a:1', 'b:1'], replicas: 1 } }), {}).memcached.replicas, 1)
})

t.test('revalidateMs defaults to at most half the idle timeout', async (t) => {
  t.equal(buildConfig(minimal({ session: { idleTimeout: 40 } }), {}).cache.revalidateMs, 20000)
  t.equal(buildConfig(minimal({ session: { idleTimeout: 60, secrets: [SECRET] }, cache: { revalidateMs: 30000 } }), {}).cache.revalidateMs, 30000, 'exactly half is allowed')
})

t.test('node addresses are stored in canonical form', async (t) => {
  const config = buildConfig(minimal({ memcached: { nodes: ['Cache-1.Internal:11211', '127.0.0.1:11212'] } }), {})
  t.same(config.memcached.nodes, ['cache-1.internal:11211', '127.0.0.1:11212'])
})

t.test('explicit values are kept', async (t) => {
  const config = buildConfig({
    listen: { host: '127.0.0.1', port: 8081, trustProxies: ['10.1.0.0/16', '2001:db8::1'], forwarded: true, headersTimeoutMs: 5000, bodyIdleTimeoutMs: 6000, keepAliveTimeoutMs: 7000 },
    upstream: { url: 'https://app.internal:8443', timeoutMs: 5000 },
    admin: { host: '0.0.0.0', port: 9191 },
    session: {
      secrets: [SECRET, 'o'.repeat(20)],
      idleTimeout: 600,
      maxBytes: 4096,
      headerPrefix: 'X-App-Session',
      ignore: '^/static/',
      cookie: { name: 'app_sid', domain: '.example.com', path: '/app', secure: false, httpOnly: false, sameSite: 'strict', maxAge: 3600 }
    },
    cache: { maxBytes: 1048576, revalidateMs: 1000 },
    memcached: { nodes: ['10.0.0.5:11211', '10.0.0.6:11211'], replicas: 1, write: 'sync', timeoutMs: 100, keyPrefix: 'app:', allow: ['10.0.0.0/8'], encrypt: false },
    cookies: { domain: '.example.com', names: ['cart'] },
    shutdown: { delayMs: 0, timeoutMs: 2000 },
    log: { level: 'warn' }
  }, {})
  t.same(config.listen, { host: '127.0.0.1', port: 8081, trustProxies: ['10.1.0.0/16', '2001:db8::1'], forwarded: true, headersTimeoutMs: 5000, bodyIdleTimeoutMs: 6000, keepAliveTimeoutMs: 7000 })
  t.same(config.upstream, { url: 'https://app.internal:8443', timeoutMs: 5000 })
  t.same(config.admin, { host: '0.0.0.0', port: 9191 })
  t.equal(config.session.headerPrefix, 'x-app-session', 'the prefix is lower-cased')
  t.ok(config.session.ignore?.test('/static/app.bundle'))
  t.notOk(config.session.ignore?.test('/app/static/'))
  t.same(config.session.cookie, { name: 'app_sid', domain: '.example.com', path: '/app', secure: false, httpOnly: false, sameSite: 'strict', maxAge: 3600 })
  t.same(config.cache, { maxBytes: 1048576, revalidateMs: 1000 })
  t.same(config.memcached, { nodes: ['10.0.0.5:11211', '10.0.0.6:11211'], replicas: 1, write: 'sync', timeoutMs: 100, keyPrefix: 'app:', allow: ['10.0.0.0/8'], encrypt: false, discovery: { dns: undefined, intervalMs: 10000 } })
  t.same(config.cookies, { domain: '.example.com', names: ['cart'] })
  t.same(config.shutdown, { delayMs: 0, timeoutMs: 2000 })
  t.same(config.log, { level: 'warn' })
})

t.test('${VAR} is replaced from the environment inside string values', async (t) => {
  const config = buildConfig(minimal({
    upstream: { url: 'http://${APP_HOST}:${APP_PORT}/' },
    session: { secrets: ['${SESSION_SECRET}'] }
  }), { APP_HOST: 'app.internal', APP_PORT: '3001', SESSION_SECRET: 'from-the-environment' })
  t.equal(config.upstream.url, 'http://app.internal:3001/')
  t.same(config.session.secrets, ['from-the-environment'])
})

t.test('${VAR:-default} takes the default when the variable is unset, the variable when set', async (t) => {
  const doc = minimal({ listen: { host: '${LISTEN_HOST:-127.0.0.2}' }, memcached: { nodes: ['${MC:-10.0.0.9:11211}'] }, log: { level: 'x-${NOPE:-}' } })
  const problems = problemsOf(t, () => buildConfig(doc, {}))
  t.same(problems, ['log.level: must be one of fatal, error, warn, info, debug, trace, silent (got "x-")'], 'an empty default is an empty string')
  const unset = buildConfig(minimal({ listen: { host: '${LISTEN_HOST:-127.0.0.2}' }, memcached: { nodes: ['${MC:-10.0.0.9:11211}'] } }), {})
  t.equal(unset.listen.host, '127.0.0.2')
  t.same(unset.memcached.nodes, ['10.0.0.9:11211'], 'the default may itself contain a colon')
  const set = buildConfig(minimal({ listen: { host: '${LISTEN_HOST:-127.0.0.2}' } }), { LISTEN_HOST: '10.1.1.1' })
  t.equal(set.listen.host, '10.1.1.1')
})

t.test('a value that is wholly a substitution reads as a number or boolean', async (t) => {
  const config = buildConfig(minimal({
    listen: { port: '${PORT}' },
    session: { idleTimeout: '${IDLE:-900}', cookie: { secure: '${COOKIE_SECURE}', httpOnly: '${HTTP_ONLY:-true}' } },
    memcached: { nodes: ['a:1', 'b:1'], replicas: '${REPLICAS}' }
  }), { PORT: '8081', COOKIE_SECURE: 'false', REPLICAS: '1' })
  t.equal(config.listen.port, 8081)
  t.equal(config.session.idleTimeout, 900)
  t.equal(config.session.cookie.secure, false)
  t.equal(config.session.cookie.httpOnly, true)
  t.equal(config.memcached.replicas, 1)
})

t.test('substitution is one pass: a value containing ${...} is not expanded again', async (t) => {
  const config = buildConfig(minimal({ session: { secrets: ['${A}'] } }), { A: '${B}-0123456789abcdef', B: 'never' })
  t.same(config.session.secrets, ['${B}-0123456789abcdef'])
})

t.test('an unset variable is a problem naming the key path', async (t) => {
  const problems = problemsOf(t, () => buildConfig(minimal({ listen: { port: '${PORT}' } }), {}))
  t.equal(problems[0], 'listen.port: environment variable PORT is not set')
  const inList = problemsOf(t, () => buildConfig(minimal({ memcached: { nodes: ['127.0.0.1:11211', '${MC2}'] } }), {}))
  t.equal(inList[0], 'memcached.nodes[1]: environment variable MC2 is not set')
})

t.test('an unset variable is reported once, without follow-on complaints about the emptied value', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ listen: { port: '${PORT}' } }), {})),
    ['listen.port: environment variable PORT is not set'])
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { secrets: ['${SESSION_SECRET}'] } }), {})),
    ['session.secrets[0]: environment variable SESSION_SECRET is not set'])
})

t.test('missing session.secrets refuses to start', async (t) => {
  const expected = 'session.secrets: required, a list of at least one secret (refusing to start without one)'
  t.same(problemsOf(t, () => buildConfig({ memcached: { nodes: ['127.0.0.1:11211'] } }, {})), [expected])
  t.same(problemsOf(t, () => buildConfig({ session: { secrets: [] }, memcached: { nodes: ['127.0.0.1:11211'] } }, {})), [expected], 'an empty list is no list')
  t.same(problemsOf(t, () => buildConfig({ session: { secrets: null }, memcached: { nodes: ['127.0.0.1:11211'] } }, {})), [expected])
})

t.test('a secret shorter than 16 characters is refused, by position', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { secrets: [SECRET, 'x'.repeat(15)] } }), {})),
    ['session.secrets[1]: must be at least 16 characters'])
  t.same(buildConfig(minimal({ session: { secrets: ['x'.repeat(16)] } }), {}).session.secrets, ['x'.repeat(16)], '16 is enough')
})

t.test('session.secrets must be a list of strings', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { secrets: SECRET } }), {})), [
    'session.secrets: must be a list of strings',
    'session.secrets: required, a list of at least one secret (refusing to start without one)'
  ])
})

t.test('a ConfigError carries a stable code and one message line per problem', async (t) => {
  let error: unknown
  try {
    buildConfig({ bogus: 1, memcached: { nodes: ['127.0.0.1:11211'] } }, {})
  } catch (err) {
    error = err
  }
  t.ok(error instanceof ConfigError)
  const e = error as ConfigError
  t.equal(e.code, 'SIDECAR_ERR_CONFIG')
  t.equal(e.name, 'ConfigError')
  t.equal(e.message, e.problems.join('\n'))
  t.equal(e.problems.length, 2)
})

t.test('every problem is reported at once, one line each with its key path', async (t) => {
  const problems = problemsOf(t, () => buildConfig({
    bogus: 1,
    listen: { port: 70000, extra: 2 },
    session: { secrets: [SECRET], idleTimeout: 60, ignore: '(', cookie: { sameSite: 'none', secure: false } },
    cache: { revalidateMs: 30001 },
    memcached: {
      write: 'maybe',
      allow: ['192.168.0.0/16'],
      nodes: ['nope', '[::1]:11211', '10.0.0.1:11211', '192.168.1.1:11211', '192.168.1.1:11211', '192.168.1.2:0']
    }
  }, {}))
  t.same([...problems].sort(), [
    'bogus: unknown key (expected one of listen, upstream, admin, session, cache, memcached, cookies, shutdown, log)',
    'cache.revalidateMs: must be at most half of session.idleTimeout (30000 ms)',
    'listen.extra: unknown key (expected one of host, port, trustProxies, forwarded, headersTimeoutMs, bodyIdleTimeoutMs, keepAliveTimeoutMs)',
    'listen.port: must be between 0 and 65535 (got 70000)',
    'memcached.nodes[0]: "nope" is not host:port or [ipv6]:port',
    'memcached.nodes[1]: "[::1]:11211" is not permitted by memcached.allow',
    'memcached.nodes[2]: "10.0.0.1:11211" is not permitted by memcached.allow',
    'memcached.nodes[4]: "192.168.1.1:11211" is listed twice',
    'memcached.nodes[5]: "192.168.1.2:0" is not host:port or [ipv6]:port',
    'memcached.write: must be one of async, sync (got "maybe")',
    'session.cookie.sameSite: "none" requires session.cookie.secure: true',
    'session.ignore: invalid regular expression (Invalid regular expression: /(/: Unterminated group)'
  ])
})

t.test('unknown keys are refused at every level', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { cookie: { sameSite: 'lax', samesite: 'lax' } } }), {})),
    ['session.cookie.samesite: unknown key (expected one of name, domain, path, secure, httpOnly, sameSite, maxAge)'])
  t.same(problemsOf(t, () => buildConfig(minimal({ memcached: { node: ['a:1'] } }), {})), [
    'memcached.node: unknown key (expected one of nodes, replicas, write, timeoutMs, keyPrefix, allow, encrypt, discovery)'
  ])
})

t.test('a section that is not a mapping is refused', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ listen: 8080 }), {})), ['listen: must be a mapping'])
  t.same(problemsOf(t, () => buildConfig(['x'], {})), [
    '(root): must be a mapping',
    'session.secrets: required, a list of at least one secret (refusing to start without one)',
    'memcached.nodes: required, at least one host:port (sessions are placed there), unless memcached.discovery.dns is set'
  ])
})

t.test('ports: integers from 0 to 65535', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ listen: { port: -1 } }), {})), ['listen.port: must be between 0 and 65535 (got -1)'])
  t.same(problemsOf(t, () => buildConfig(minimal({ admin: { port: 65536 } }), {})), ['admin.port: must be between 0 and 65535 (got 65536)'])
  t.same(problemsOf(t, () => buildConfig(minimal({ listen: { port: 80.5 } }), {})), ['listen.port: must be an integer'])
  t.same(problemsOf(t, () => buildConfig(minimal({ listen: { port: '${PORT}' } }), { PORT: 'http' })), ['listen.port: must be an integer'])
  t.equal(buildConfig(minimal({ listen: { port: 0 } }), {}).listen.port, 0, '0 picks a free port')
})

t.test('memcached.write: async or sync only', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ memcached: { write: 'ASYNC' } }), {})), ['memcached.write: must be one of async, sync (got "ASYNC")'])
  t.equal(buildConfig(minimal({ memcached: { write: 'sync' } }), {}).memcached.write, 'sync')
})

t.test('memcached.replicas: 1 or 2 only', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ memcached: { replicas: 3 } }), {})), ['memcached.replicas: must be one of 1, 2 (got 3)'])
})

t.test('session.ignore must be a valid regular expression', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { ignore: '[a-' } }), {})),
    ['session.ignore: invalid regular expression (Invalid regular expression: /[a-/: Unterminated character class)'])
})

t.test('cache.revalidateMs must be at most half of the idle timeout', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { idleTimeout: 600 }, cache: { revalidateMs: 300001 } }), {})),
    ['cache.revalidateMs: must be at most half of session.idleTimeout (300000 ms)'])
})

t.test('memcached.nodes: each must be host:port or [ipv6]:port', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ memcached: { nodes: ['cache.internal', 'cache.internal:', 'cache internal:11211', 'a~b:11211'] } }), {})), [
    'memcached.nodes[0]: "cache.internal" is not host:port or [ipv6]:port',
    'memcached.nodes[1]: "cache.internal:" is not host:port or [ipv6]:port',
    'memcached.nodes[2]: "cache internal:11211" is not host:port or [ipv6]:port',
    'memcached.nodes[3]: "a~b:11211" is not host:port or [ipv6]:port'
  ])
})

t.test('memcached.nodes: IPv6 literals are accepted, in their canonical spelling', async (t) => {
  const config = buildConfig(minimal({ memcached: { nodes: ['[FD00:0::5]:11211'] } }), {})
  t.same(config.memcached.nodes, ['[fd00::5]:11211'])
})

t.test('memcached.nodes: each must pass memcached.allow', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ memcached: { nodes: ['10.0.0.5:11211', 'mc.other.net:11211', 'a.cache.internal:11211'], allow: ['10.0.0.0/8', '*.cache.internal'] } }), {})),
    ['memcached.nodes[1]: "mc.other.net:11211" is not permitted by memcached.allow'])
})

t.test('memcached.nodes: the same node twice is refused, compared in canonical form', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ memcached: { nodes: ['MC.internal:11211', 'mc.internal:11211'] } }), {})),
    ['memcached.nodes[1]: "mc.internal:11211" is listed twice'])
})

t.test('memcached.nodes: at least one is required', async (t) => {
  const expected = ['memcached.nodes: required, at least one host:port (sessions are placed there), unless memcached.discovery.dns is set']
  t.same(problemsOf(t, () => buildConfig({ session: { secrets: [SECRET] } }, {})), expected)
  t.same(problemsOf(t, () => buildConfig({ session: { secrets: [SECRET] }, memcached: { nodes: [] } }, {})), expected)
})

t.test('memcached.allow: each rule must be a CIDR, an IP or a host glob', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ memcached: { allow: ['10.0.0.0/33', 'bad_rule', '10.0.0/8'] } }), {})), [
    'memcached.allow[0]: "10.0.0.0/33" is not a CIDR (bad prefix length)',
    'memcached.allow[1]: "bad_rule" is neither a CIDR nor a host glob (labels, or * for one or more labels)',
    'memcached.allow[2]: "10.0.0/8" is not a CIDR (bad network address)'
  ])
})

t.test('sameSite none requires secure', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { cookie: { sameSite: 'none', secure: false } } }), {})),
    ['session.cookie.sameSite: "none" requires session.cookie.secure: true'])
  t.equal(buildConfig(minimal({ session: { cookie: { sameSite: 'none' } } }), {}).session.cookie.sameSite, 'none', 'fine with the default secure: true')
})

t.test('cookie attributes are checked', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { cookie: { sameSite: 'Lax' } } }), {})),
    ['session.cookie.sameSite: must be one of lax, strict, none (got "Lax")'])
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { cookie: { secure: 'yes' } } }), {})),
    ['session.cookie.secure: must be true or false'])
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { cookie: { name: 'my sid' } } }), {})),
    ['session.cookie.name: must be a cookie name token'])
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { cookie: { path: 'app' } } }), {})),
    ['session.cookie.path: must start with / and hold no spaces or ;'])
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { cookie: { domain: 'exa mple.com' } } }), {})),
    ['session.cookie.domain: must be a domain name'])
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { cookie: { maxAge: 0 } } }), {})),
    ['session.cookie.maxAge: must be between 1 and 34560000 (got 0)'])
})

t.test('session.headerPrefix must begin no standard header: those it begins are removed from every request and response', async (t) => {
  for (const [prefix, named] of <Array<[string, string]>>[['content', 'content-disposition, content-encoding, content-length, ...'], ['cookie', 'cookie'], ['x', 'x-content-type-options, x-csrf-token, x-forwarded-for, ...'], ['X_Forwarded', 'x-forwarded-for, x-forwarded-proto'], ['sec', 'sec-fetch-mode, sec-websocket-key']]) {
    t.same(problemsOf(t, () => buildConfig(minimal({ session: { headerPrefix: prefix } }), {})),
      [`session.headerPrefix: "${prefix.toLowerCase()}" begins standard headers (${named}), which would be removed from every request and response; use a name of your own, such as x-session or x-myapp-session`], prefix)
  }
  for (const prefix of ['x-session', 'X-App-Session', 'x-myapp-sess', 'session']) {
    t.equal(buildConfig(minimal({ session: { headerPrefix: prefix } }), {}).session.headerPrefix, prefix.toLowerCase(), `${prefix} is fine`)
  }
})

t.test('upstream.url is the app\'s origin only: a path, query, fragment or user:password is refused, not ignored or logged', async (t) => {
  const problem = (url: string): readonly string[] => problemsOf(t, () => buildConfig(minimal({ upstream: { url } }), {}))
  t.same(problem('http://user:pw@127.0.0.1:3000'), ['upstream.url: must be the app\'s origin only (scheme, host, port), without a user or password: requests keep their own path and query'])
  t.same(problem('http://127.0.0.1:3000/app'), ['upstream.url: must be the app\'s origin only (scheme, host, port), without a path (/app): requests keep their own path and query'])
  t.same(problem('http://127.0.0.1:3000/?x=1'), ['upstream.url: must be the app\'s origin only (scheme, host, port), without a query: requests keep their own path and query'])
  t.same(problem('http://127.0.0.1:3000/#top'), ['upstream.url: must be the app\'s origin only (scheme, host, port), without a fragment: requests keep their own path and query'])
  for (const url of ['http://127.0.0.1:3000', 'http://127.0.0.1:3000/', 'https://app.internal', 'http://[::1]:8080']) {
    t.equal(buildConfig(minimal({ upstream: { url } }), {}).upstream.url, url, `${url} is fine`)
  }
})

t.test('admin.port must differ from listen.port on the same address', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ listen: { port: 8080 }, admin: { port: 8080 } }), {})), ['admin.port: must differ from listen.port (both 8080)'])
  t.same(problemsOf(t, () => buildConfig(minimal({ listen: { host: '0.0.0.0', port: 8080 }, admin: { host: '127.0.0.1', port: 8080 } }), {})), ['admin.port: must differ from listen.port (both 8080)'], 'a wildcard address overlaps any other')
  t.equal(buildConfig(minimal({ listen: { host: '10.0.0.5', port: 8080 }, admin: { host: '127.0.0.1', port: 8080 } }), {}).admin.port, 8080, 'two specific addresses may share a port')
  t.equal(buildConfig(minimal({ listen: { port: 0 }, admin: { port: 0 } }), {}).admin.port, 0, 'port 0 (any free port) twice is fine')
})

t.test('the result is deeply frozen', async (t) => {
  const config: SidecarConfig = buildConfig(minimal({ memcached: { nodes: ['a:1', 'b:1'], allow: ['*'] }, cookies: { domain: '.example.com', names: ['cart'] } }), {})
  const objects: Array<[string, unknown]> = [
    ['config', config], ['listen', config.listen], ['upstream', config.upstream], ['admin', config.admin],
    ['session', config.session], ['session.secrets', config.session.secrets], ['session.cookie', config.session.cookie],
    ['cache', config.cache], ['memcached', config.memcached], ['memcached.nodes', config.memcached.nodes],
    ['memcached.allow', config.memcached.allow], ['cookies', config.cookies], ['cookies.names', config.cookies.names],
    ['shutdown', config.shutdown], ['log', config.log]
  ]
  for (const [name, value] of objects) t.ok(Object.isFrozen(value), `${name} is frozen`)
  t.equal(Reflect.set(config.listen, 'port', 1), false)
  t.equal(config.listen.port, 8080)
  t.throws(() => { (config.memcached.nodes as string[]).push('c:1') }, TypeError)
  t.same(config.memcached.nodes, ['a:1', 'b:1'])
})

t.test('loadConfig reads YAML and substitutes from the given environment', async (t) => {
  const file = yamlFile(t, [
    'listen:',
    '  port: ${PORT}',
    'session:',
    '  secrets: ["${SESSION_SECRET}"]',
    '  cookie:',
    '    secure: ${COOKIE_SECURE:-true}',
    'memcached:',
    '  nodes: ["10.0.0.5:11211", "${MC2:-10.0.0.6:11211}"]',
    ''
  ].join('\n'))
  const config = loadConfig(file, { PORT: '8082', SESSION_SECRET: 'y'.repeat(32), COOKIE_SECURE: 'false' })
  t.equal(config.listen.port, 8082)
  t.same(config.session.secrets, ['y'.repeat(32)])
  t.equal(config.session.cookie.secure, false)
  t.same(config.memcached.nodes, ['10.0.0.5:11211', '10.0.0.6:11211'])
  t.equal(config.memcached.replicas, 2)
  t.ok(Object.isFrozen(config))
})

t.test('loadConfig: the shipped config/default.yaml needs only SESSION_SECRET', async (t) => {
  const file = fileURLToPath(new URL('../../config/default.yaml', import.meta.url))
  const config = loadConfig(file, { SESSION_SECRET: 'z'.repeat(32) })
  t.same(config.listen, LISTEN_DEFAULTS)
  t.same(config.memcached.nodes, ['127.0.0.1:11211'])
  t.equal(config.session.cookie.secure, true)
  t.equal(config.log.level, 'info')
  t.match(problemsOf(t, () => loadConfig(file, {})), ['session.secrets[0]: environment variable SESSION_SECRET is not set'])
})

t.test('memcached.nodes and memcached.allow: one comma-separated string is a list, so one environment variable can hold it', async (t) => {
  const file = yamlFile(t, [
    'session:',
    '  secrets: ["${SESSION_SECRET}"]',
    'memcached:',
    '  nodes: ${MEMCACHED_NODES}',
    '  allow: ${MEMCACHED_ALLOW:-}',
    ''
  ].join('\n'))
  const three = loadConfig(file, { SESSION_SECRET: 'y'.repeat(32), MEMCACHED_NODES: 'a.cache.internal:11211, b.cache.internal:11211,c.cache.internal:11211', MEMCACHED_ALLOW: '*.cache.internal' })
  t.same(three.memcached.nodes, ['a.cache.internal:11211', 'b.cache.internal:11211', 'c.cache.internal:11211'])
  t.same(three.memcached.allow, ['*.cache.internal'])
  t.equal(three.memcached.replicas, 2, 'replicas derived from the list')
  const one = loadConfig(file, { SESSION_SECRET: 'y'.repeat(32), MEMCACHED_NODES: '10.0.0.5:11211' })
  t.same(one.memcached.nodes, ['10.0.0.5:11211'])
  t.same(one.memcached.allow, [], 'an empty string is an empty list')
  t.equal(one.memcached.replicas, 1)
  t.same(problemsOf(t, () => loadConfig(file, { SESSION_SECRET: 'y'.repeat(32), MEMCACHED_NODES: 'a:11211,bad', MEMCACHED_ALLOW: 'a' })),
    ['memcached.nodes[1]: "bad" is not host:port or [ipv6]:port'], 'each entry is checked, by position')
  t.ok(problemsOf(t, () => buildConfig(minimal({ session: { secrets: 'y'.repeat(32) } }), {})).includes('session.secrets: must be a list of strings'), 'not for secrets (a secret may hold a comma)')
})

t.test('loadConfig: an empty file is an empty document', async (t) => {
  t.same(problemsOf(t, () => loadConfig(yamlFile(t, ''), {})), [
    'session.secrets: required, a list of at least one secret (refusing to start without one)',
    'memcached.nodes: required, at least one host:port (sessions are placed there), unless memcached.discovery.dns is set'
  ])
})

t.test('loadConfig: invalid YAML is one problem naming the file', async (t) => {
  const file = yamlFile(t, 'listen: [unclosed\n')
  const problems = problemsOf(t, () => loadConfig(file, {}))
  t.equal(problems.length, 1)
  t.match(problems[0], new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: invalid YAML \\(.+\\)$`))
  t.notMatch(problems[0], /\n/, 'one line')
})

t.test('loadConfig: an unquoted ${VAR} in a flow map is invalid YAML that says to quote it; quoted, it is substituted', async (t) => {
  const bad = yamlFile(t, 'cache: { revalidateMs: ${REVAL:-30000} }\n')
  const [problem] = problemsOf(t, () => loadConfig(bad, {}))
  t.match(problem, /invalid YAML \(.+\); a \$\{VAR\} inside \{ \} or \[ \] must be quoted: "\$\{VAR:-default\}"$/)
  const quoted = yamlFile(t, 'session: { secrets: ["0123456789abcdef0123"] }\nmemcached: { nodes: ["127.0.0.1:11211"] }\ncache: { revalidateMs: "${REVAL:-30000}" }\n')
  t.equal(loadConfig(quoted, { REVAL: '4000' }).cache.revalidateMs, 4000, 'a quoted variable is a number once substituted')
  t.notMatch(problemsOf(t, () => loadConfig(yamlFile(t, 'listen: [unclosed\n'), {}))[0], /must be quoted/, 'no hint where no variable is')
})

t.test('loadConfig: duplicate keys are invalid YAML', async (t) => {
  const file = yamlFile(t, 'listen:\n  port: 1\n  port: 2\n')
  t.same(problemsOf(t, () => loadConfig(file, {})), [`${file}: invalid YAML (Map keys must be unique at line 3, column 3:)`])
})

t.test('loadConfig: an unreadable file is one problem naming the file and the reason', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const missing = join(dir, 'missing.yaml')
  t.same(problemsOf(t, () => loadConfig(missing, {})), [`${missing}: cannot read (ENOENT)`])
  t.same(problemsOf(t, () => loadConfig(dir, {})), [`${dir}: cannot read (EISDIR)`])
})

t.test('memcached.discovery: a name:port, its interval, and nodes optional with it', async (t) => {
  const config = buildConfig({ session: { secrets: ['x'.repeat(16)] }, memcached: { discovery: { dns: 'memcached.cache.svc.cluster.local:11211', intervalMs: 5000 } } }, {})
  t.same(config.memcached.nodes, [])
  t.same(config.memcached.discovery, { dns: 'memcached.cache.svc.cluster.local:11211', intervalMs: 5000 })
  t.equal(config.memcached.replicas, 2, 'a backup copy by default: the node count is not known at start')
  try {
    buildConfig({ session: { secrets: ['x'.repeat(16)] }, memcached: { discovery: { dns: 'no-port', intervalMs: 5 } } }, {})
    t.fail('accepted')
  } catch (err) {
    t.same([...(err as ConfigError).problems].sort(), [
      'memcached.discovery.dns: must be name:port (a DNS name and a port)',
      'memcached.discovery.intervalMs: must be between 100 and 3600000 (got 5)',
      'memcached.nodes: required, at least one host:port (sessions are placed there), unless memcached.discovery.dns is set'
    ])
  }
})

t.test('listen.trustProxies takes IPs and CIDRs; [] trusts nobody; anything else is refused by index', async (t) => {
  t.same(buildConfig(minimal({ listen: { trustProxies: [] } }), {}).listen.trustProxies, [])
  t.same(problemsOf(t, () => buildConfig(minimal({ listen: { trustProxies: ['10.0.0.0/8', 'lb.internal', '10.0.0.0/33', '::/200', 7] } }), {})), [
    'listen.trustProxies[1]: "lb.internal" is not an IP address or CIDR',
    'listen.trustProxies[2]: "10.0.0.0/33" is not a CIDR (bad prefix length)',
    'listen.trustProxies[3]: "::/200" is not a CIDR (bad prefix length)',
    'listen.trustProxies[4]: "7" is not an IP address or CIDR'
  ])
  t.same(problemsOf(t, () => buildConfig(minimal({ listen: { trustProxies: '10.0.0.0/8' } }), {})), ['listen.trustProxies: must be a list of strings'])
})

t.test('listen timeouts are positive integers of milliseconds', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ listen: { headersTimeoutMs: 0, bodyIdleTimeoutMs: 'soon', keepAliveTimeoutMs: -1, forwarded: 'maybe' } }), {})), [
    'listen.forwarded: must be true or false',
    'listen.headersTimeoutMs: must be between 1 and 3600000 (got 0)',
    'listen.bodyIdleTimeoutMs: must be an integer',
    'listen.keepAliveTimeoutMs: must be between 1 and 3600000 (got -1)'
  ])
})

t.test('shutdown.delayMs and shutdown.timeoutMs are integers of milliseconds, 0 allowed', async (t) => {
  t.same(buildConfig(minimal({ shutdown: { delayMs: 0, timeoutMs: 0 } }), {}).shutdown, { delayMs: 0, timeoutMs: 0 })
  t.same(problemsOf(t, () => buildConfig(minimal({ shutdown: { delayMs: -1, timeoutMs: 'soon' } }), {})), [
    'shutdown.delayMs: must be between 0 and 600000 (got -1)',
    'shutdown.timeoutMs: must be an integer'
  ])
})

t.test('session cookie settings that browsers reject are refused, each with its rule', async (t) => {
  const cookie = (c: Record<string, unknown>): readonly string[] => problemsOf(t, () => buildConfig(minimal({ session: { cookie: c } }), {}))
  t.same(cookie({ name: '__Host-sid', secure: false, path: '/app', domain: '.example.com' }), [
    'session.cookie.secure: a cookie named "__Host-sid" (__Host- prefix) needs secure: true, or browsers drop it',
    'session.cookie.path: a cookie named "__Host-sid" (__Host- prefix) needs path "/", or browsers drop it',
    'session.cookie.domain: a cookie named "__Host-sid" (__Host- prefix) must have no domain, or browsers drop it'
  ])
  t.same(cookie({ name: '__host-sid', secure: true, domain: 'example.com' }), [
    'session.cookie.domain: a cookie named "__host-sid" (__Host- prefix) must have no domain, or browsers drop it'
  ], 'prefixes match without regard to case, as browsers do')
  t.same(cookie({ name: '__Secure-sid', secure: false }), [
    'session.cookie.secure: a cookie named "__Secure-sid" (__Secure- prefix) needs secure: true, or browsers drop it'
  ])
  t.same(cookie({ sameSite: 'none', secure: false }), ['session.cookie.sameSite: "none" requires session.cookie.secure: true'])
  t.equal(buildConfig(minimal({ session: { cookie: { name: '__Host-sid' } } }), {}).session.cookie.name, '__Host-sid', 'the defaults (secure, path /, no domain) suit __Host-')
  t.equal(buildConfig(minimal({ session: { cookie: { name: '__Secure-sid', domain: '.example.com' } } }), {}).session.cookie.domain, '.example.com', '__Secure- may have a domain')
})

t.test('memcached.encrypt is a boolean', async (t) => {
  t.equal(buildConfig(minimal({ memcached: { encrypt: 'false' } }), {}).memcached.encrypt, false, 'an env-substituted "false" counts')
  t.same(problemsOf(t, () => buildConfig(minimal({ memcached: { encrypt: 'sometimes' } }), {})), ['memcached.encrypt: must be true or false'])
})

t.test('a secret listed twice is refused', async (t) => {
  t.same(problemsOf(t, () => buildConfig(minimal({ session: { secrets: [SECRET, 'o'.repeat(20), SECRET] } }), {})), ['session.secrets[2]: is listed twice'])
})
