import t from 'tap'
import { startStack } from '../helpers/sidecar.js'
import { parseSetCookieLine, q, rawRequest } from '../helpers/client.js'
import type { Sidecar } from '../../src/sidecar.js'
import { RawConnection, statusOf } from '../helpers/raw-socket.js'

// SPEC "Transparency": the app sees the client's Host; X-Forwarded-For is appended and
// X-Forwarded-Proto/-Host set, a client's own forwarding headers trusted only from
// `listen.trustProxies` (default: loopback and private ranges); `listen.forwarded` adds RFC 7239
// Forwarded. SPEC "Upstream's own cookies": `cookies.domain` never goes on a `__Host-` cookie.

const { app, sidecar: start } = await startStack(t)

const HOST = 'shop.example'
/** What a load balancer in front would send: the client's address, scheme and host. */
const FROM_BALANCER: Array<[string, string]> = [
  ['X-Forwarded-For', '203.0.113.9'],
  ['X-Forwarded-Proto', 'https'],
  ['X-Forwarded-Host', 'www.shop.example']
]

/** What the app received as Host and forwarding headers for one request from 127.0.0.1 (Host `shop.example` unless given). */
async function atApp (sidecar: Sidecar, headers: Array<[string, string]>): Promise<Record<string, string | undefined>> {
  const withHost = headers.some(([name]) => name.toLowerCase() === 'host') ? headers : [['Host', HOST] as [string, string], ...headers]
  const res = await rawRequest(`${sidecar.url}/page`, withHost)
  if (res.status !== 200) throw new Error(`answered ${res.status}: ${res.body}`)
  const seen = app.last?.headers ?? {}
  const one = (name: string): string | undefined => seen[name] as string | undefined
  return {
    host: one('host'),
    'x-forwarded-for': one('x-forwarded-for'),
    'x-forwarded-proto': one('x-forwarded-proto'),
    'x-forwarded-host': one('x-forwarded-host'),
    forwarded: one('forwarded')
  }
}

/** What the app gets when the peer's own forwarding headers are not trusted. */
const REPLACED = { host: HOST, 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': HOST, forwarded: undefined }

t.test('default trust (loopback is trusted): the client\'s forwarding headers are kept and X-Forwarded-For appended to', async (t) => {
  const sidecar = await start(t)
  t.same(await atApp(sidecar, FROM_BALANCER), {
    host: HOST,
    'x-forwarded-for': '203.0.113.9, 127.0.0.1',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'www.shop.example',
    forwarded: undefined
  }, 'X-Forwarded-For appended to, X-Forwarded-Proto and -Host kept, Host as sent')
})

t.test('a trusted peer that sends no forwarding headers: they are set from the connection', async (t) => {
  const sidecar = await start(t)
  t.same(await atApp(sidecar, []), REPLACED, 'the peer\'s address, http and the Host header')
})

t.test('listen.trustProxies: [] -> every forwarding header is replaced', async (t) => {
  const sidecar = await start(t, { listen: { trustProxies: [] } })
  t.same(await atApp(sidecar, FROM_BALANCER), REPLACED, 'the peer\'s address, http and the Host header, whatever the client claimed')
})

t.test('listen.trustProxies: [10.0.0.0/8] (loopback not trusted) -> replaced', async (t) => {
  const sidecar = await start(t, { listen: { trustProxies: ['10.0.0.0/8'] } })
  t.same(await atApp(sidecar, FROM_BALANCER), REPLACED, 'the peer\'s address, http and the Host header, whatever the client claimed')
})

/** Other headers apps read the client's address or scheme from. */
const CLAIMS: Array<[string, string]> = [
  ['X-Forwarded-Port', '443'], ['X-Forwarded-Prefix', '/admin'], ['X-Forwarded-Ssl', 'on'], ['X-Forwarded-Scheme', 'https'],
  ['X-Forwarded-Server', 'evil'], ['X-Real-IP', '6.6.6.6'], ['X-Client-IP', '6.6.6.6'], ['True-Client-IP', '6.6.6.6'],
  ['X-Cluster-Client-IP', '6.6.6.6'], ['CF-Connecting-IP', '6.6.6.6'], ['Fastly-Client-IP', '6.6.6.6'], ['X-Url-Scheme', 'https'], ['Front-End-Https', 'on']
]

/** The claims the app received, by lower-case name. */
async function claimsAtApp (sidecar: Sidecar, headers: Array<[string, string]>): Promise<Record<string, unknown>> {
  const res = await rawRequest(`${sidecar.url}/page`, [['Host', HOST], ...headers, ['X-Other', 'kept']])
  if (res.status !== 200) throw new Error(`answered ${res.status}: ${res.body}`)
  const seen = app.last?.headers ?? {}
  if (seen['x-other'] !== 'kept') throw new Error('the request\'s other headers did not reach the app')
  return Object.fromEntries(Object.entries(seen).filter(([name]) => CLAIMS.some(([claim]) => claim.toLowerCase() === name)))
}

t.test('an untrusted client\'s other address and scheme claims (X-Forwarded-Port, -Prefix, -Ssl, X-Real-IP, ...) never reach the app', async (t) => {
  const sidecar = await start(t, { listen: { trustProxies: [] } })
  t.same(await claimsAtApp(sidecar, CLAIMS), {}, 'none of them')
  const lookAlikes = CLAIMS.map(([name, value]): [string, string] => [name.replace(/-/g, '_'), value])
  t.same(await claimsAtApp(sidecar, lookAlikes), {}, 'nor their underscore spellings')
  const seen = Object.keys(app.last?.headers ?? {}).filter((n) => /real.ip|client.ip|forwarded.(port|prefix|ssl|scheme|server)|url.scheme|front.end/i.test(n))
  t.same(seen, [], 'under any name')
})

t.test('a trusted proxy\'s claims reach the app as it sent them; their look-alikes do not', async (t) => {
  const sidecar = await start(t)
  t.same(await claimsAtApp(sidecar, CLAIMS), Object.fromEntries(CLAIMS.map(([name, value]) => [name.toLowerCase(), value])), 'every one, unchanged')
  const seen = await claimsAtApp(sidecar, [['X_Real_IP', '6.6.6.6'], ['X-Real-IP', '203.0.113.9']])
  t.same(seen, { 'x-real-ip': '203.0.113.9' }, 'the exact name only')
  t.notOk(Object.keys(app.last?.headers ?? {}).some((n) => n.toLowerCase() === 'x_real_ip'), 'the look-alike is dropped')
})

t.test('listen.forwarded: true adds RFC 7239 Forwarded, appended to a trusted peer\'s own', async (t) => {
  const sidecar = await start(t, { listen: { forwarded: true } })
  t.equal((await atApp(sidecar, [])).forwarded, `for=127.0.0.1;proto=http;host=${HOST}`, 'added')
  t.equal((await atApp(sidecar, [['Forwarded', 'for=203.0.113.9;proto=https']])).forwarded, `for=203.0.113.9;proto=https, for=127.0.0.1;proto=http;host=${HOST}`, 'appended to the trusted peer\'s element')
  t.equal((await atApp(sidecar, [['Host', 'shop.example:8443']])).forwarded, 'for=127.0.0.1;proto=http;host="shop.example:8443"', 'a host with a port is quoted (RFC 7239 section 4)')

  const untrusting = await start(t, { listen: { forwarded: true, trustProxies: [] } })
  t.equal((await atApp(untrusting, [['Forwarded', 'for=203.0.113.9;proto=https']])).forwarded, `for=127.0.0.1;proto=http;host=${HOST}`, 'an untrusted peer\'s element is dropped')
})

t.test('listen.forwarded off: Forwarded is not added; a trusted peer\'s is kept, an untrusted peer\'s removed', async (t) => {
  const sidecar = await start(t)
  t.equal((await atApp(sidecar, [])).forwarded, undefined, 'not added')
  // README (listen.trustProxies): a trusted peer's Forwarded is "kept and appended to".
  t.equal((await atApp(sidecar, [['Forwarded', 'for=203.0.113.9;proto=https']])).forwarded, 'for=203.0.113.9;proto=https', 'a trusted peer\'s own Forwarded passes unchanged')
  const untrusting = await start(t, { listen: { trustProxies: [] } })
  t.equal((await atApp(untrusting, [['Forwarded', 'for=203.0.113.9;proto=https']])).forwarded, undefined, 'an untrusted peer\'s Forwarded never reaches the app')
})

t.test('a client naming forwarding headers in Connection cannot make the sidecar drop its own', async (t) => {
  const connection: Array<[string, string]> = [['Connection', 'keep-alive, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Forwarded'], ...FROM_BALANCER, ['Forwarded', 'for=203.0.113.9']]
  for (const trustProxies of [undefined, []]) {
    const sidecar = await start(t, { listen: { forwarded: true, ...(trustProxies === undefined ? {} : { trustProxies }) } })
    const what = trustProxies === undefined ? 'trusted peer' : 'untrusted peer'
    // The named headers are hop-by-hop for the client's hop: dropped, then the sidecar's own set.
    t.same(await atApp(sidecar, connection), { ...REPLACED, forwarded: `for=127.0.0.1;proto=http;host=${HOST}` }, `${what}: X-Forwarded-For is still set to the peer, and the others from the connection`)
  }
})

t.test('an app that keeps only its first header lines (Node: 2,000 entries) still gets the forwarding and session headers: they come right after Host', async (t) => {
  const sidecar = await start(t)
  const login = await rawRequest(`${sidecar.url}/login?set=${q({ user: 'ada' })}`)
  const cookie = (login.rawHeaders.find(([name]) => name.toLowerCase() === 'set-cookie')?.[1] ?? '').split(';')[0] as string
  const many = Array.from({ length: 1100 }, (_, i): [string, string] => [`X-H${i}`, 'v'])
  const res = await rawRequest(`${sidecar.url}/page`, [['Host', HOST], ...many, ['Cookie', cookie]])
  t.equal(res.status, 200)
  const seen = app.last?.headers ?? {}
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is among the lines the app kept')
  t.equal(seen['x-forwarded-host'], HOST)
  t.equal(app.last?.session?.user, 'ada', 'and so is the session')
  t.equal(seen['x-h1099'], undefined, 'while the client\'s last lines are past the app\'s limit')
})

t.test('cookies.domain goes on the app\'s cookies, never on a __Host- one', async (t) => {
  const sidecar = await start(t, { cookies: { domain: '.example.com' } })
  const appCookies = ['__Host-csrf=c1; Path=/; Secure; HttpOnly', 'theme=dark; Path=/', 'lang=en; Domain=app.internal; Path=/']
  const res = await rawRequest(`${sidecar.url}/page?${appCookies.map((c) => `cookie=${q(c)}`).join('&')}`)
  t.equal(res.status, 200, 'the app\'s answer')
  const lines = res.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v)
  const byName = new Map(lines.map((line) => [parseSetCookieLine(line).name, line]))
  t.equal(byName.get('__Host-csrf'), appCookies[0], 'the __Host- cookie is passed on byte for byte, with no Domain')
  t.same(parseSetCookieLine(byName.get('theme') ?? '').attributes, { domain: '.example.com', path: '/' }, 'another app cookie gets the Domain')
  t.same(parseSetCookieLine(byName.get('lang') ?? '').attributes, { domain: '.example.com', path: '/' }, 'and one with a Domain of its own has it replaced')
})

t.test('an HTTP/1.0 request with no Host reaches the app with the app\'s own host:port as Host', async (t) => {
  const sidecar = await start(t)
  const conn = await RawConnection.open(sidecar.url)
  t.teardown(() => conn.destroy())
  await conn.write('GET /old-client HTTP/1.0\r\n\r\n')
  await conn.untilClosed(5000)
  t.equal(statusOf(conn.received), 200)
  t.equal(app.last?.url, '/old-client')
  t.equal(app.last?.headers.host, new URL(app.url).host, 'undici sends the upstream\'s address')
})
