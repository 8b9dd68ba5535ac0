import t from 'tap'
import { Agent } from 'node:http'
import { randomBytes } from 'node:crypto'
import { MemcachedProcess } from '../helpers/memcached.js'
import { TestApp } from '../helpers/upstream.js'
import { SECRET, startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { Browser, keyOf, PREFIXED, rawRequest, type RawResponse } from '../helpers/client.js'
import { metricValue } from '../helpers/metrics.js'
import { until } from '../../harness/index.js'
import { SilentServer } from '../helpers/tcp.js'
import { ConnectionTrap, inBatches } from '../helpers/security.js'
import { CookieCodec } from '../../src/session/cookie.js'

// SPEC "The session cookie": a cookie that fails to parse or verify is treated as absent, no
// memcached address from it is ever contacted, and a counter goes up. A signed cookie naming
// an address outside memcached.allow is treated the same way.

const TOTAL = 10_000
const CONCURRENCY = 50
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
// Every character Node's HTTP client lets through in a header value, minus CR/LF/NUL: printable
// ASCII (';' ',' '"' '\' and space included), tab and the latin-1 upper half.
const PRINTABLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('') + '\t'
const HIGH = Array.from({ length: 128 }, (_, i) => String.fromCharCode(128 + i)).join('')
/** Characters a flipped position is replaced with: the cookie's own alphabet plus delimiters. */
const FLIPS = B64URL + '~:.[]%+/= ;,"\\\t\u00e9\u00ff'

const utf8AsLatin1 = (s: string): string => Buffer.from(s, 'utf8').toString('latin1')

/** Deterministic PRNG (mulberry32): a failing case can be replayed from the seed in the log. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

interface Forgery {
  readonly what: string
  /** Request headers carrying the forgery (Cookie lines, possibly several). */
  readonly headers: Array<[string, string]>
  /** A single `sid` value the sidecar must parse and reject, so the counter must count it. */
  readonly counted: boolean
  /** Large enough that Node may answer 431 before the sidecar sees it. */
  readonly nearLimit: boolean
}

/**
 * TOTAL forgeries derived from one real, valid cookie `real` (fields 1~key~primary~backup~v~mac)
 * and a trap address that must never be contacted.
 */
function forgeries (real: string, trap: string, seed: number): Forgery[] {
  const rnd = prng(seed)
  const int = (n: number): number => Math.floor(rnd() * n)
  const pick = (alphabet: string, n: number): string => Array.from({ length: n }, () => alphabet[int(alphabet.length)]).join('')
  const out: Forgery[] = []
  const seen = new Set<string>()
  const add = (what: string, value: string, extra: Partial<Forgery> = {}): void => {
    if (value === real || seen.has(value)) return
    seen.add(value)
    // The sidecar reads `sid` trimmed of spaces/tabs and up to the first ';'.
    const clean = value !== '' && !/[;\t ]/.test(value)
    out.push({ what, headers: [['Cookie', `sid=${value}`]], counted: clean, nearLimit: false, ...extra })
  }
  const parts = real.split('~')
  const [, key = '', primary = '', backup = '', version = '', mac = ''] = parts
  const body = parts.slice(0, -1).join('~')
  const randomMac = (): string => randomBytes(16).toString('base64url')

  // Truncations at every length, from either end.
  for (let n = 0; n < real.length; n++) add(`prefix of ${n} chars`, real.slice(0, n))
  for (let n = 1; n < real.length; n++) add(`suffix from ${n}`, real.slice(n))

  // Wrong field counts: too few, too many, duplicated, the version field missing or doubled.
  for (let n = 1; n <= 9; n++) {
    add(`${n} fields from the real ones`, parts.slice(0, n).join('~'))
    add(`${n} fields with the real MAC last`, [...parts.slice(0, Math.max(0, n - 1)), mac].join('~'))
    add(`real cookie plus ${n} extra fields`, [...parts.slice(0, -1), ...Array<string>(n).fill(version), mac].join('~'))
  }
  add('primary listed twice', ['1', key, primary, primary, version, mac].join('~'))
  add('no backup, real MAC', ['1', key, primary, version, mac].join('~'))
  add('backup and primary swapped', ['1', key, backup, primary, version, mac].join('~'))
  add('empty fields', ['1', '', '', '', '', ''].join('~'))
  add('format 2', `2${real.slice(1)}`)
  add('format 01', `0${real}`)
  add('format 1 twice', `1~${real}`)

  // Versions that are not a plain decimal counter.
  for (const v of ['0', '-1', '01', '1e3', '0x1', 'Infinity', 'NaN', '1.0', '9999999999999999', '999999999999999', ' 1', '2', String(Number(version) + 1)]) {
    add(`version ${JSON.stringify(v)} with the real MAC`, ['1', key, primary, backup, v, mac].join('~'))
  }

  // Bad base64 in key and MAC: characters outside base64url in every position, wrong lengths, padding.
  for (let i = 0; i < 22; i++) {
    for (const c of '+/=!*.$') {
      add(`key char ${i} = ${c}`, ['1', key.slice(0, i) + c + key.slice(i + 1), primary, backup, version, mac].join('~'))
      add(`MAC char ${i} = ${c}`, `${body}~${mac.slice(0, i)}${c}${mac.slice(i + 1)}`)
    }
  }
  add('key of 21 chars', ['1', key.slice(1), primary, backup, version, mac].join('~'))
  add('key of 23 chars', ['1', key + 'A', primary, backup, version, mac].join('~'))
  add('MAC padded with ==', `${real}==`)
  add('MAC in standard base64', `${body}~${Buffer.from(mac, 'base64url').toString('base64')}`)
  add('MAC of 21 chars', real.slice(0, -1))
  add('MAC of 23 chars', `${real}A`)
  add('MAC hex-encoded', `${body}~${Buffer.from(mac, 'base64url').toString('hex')}`)
  add('full 32-byte MAC', `${body}~${randomBytes(32).toString('base64url')}`)
  // The last of 22 base64url characters carries 2 bits; the 4 others are padding. Spellings that
  // decode to the very same 16 bytes are not the canonical MAC and must not verify.
  const last = B64URL.indexOf(mac.at(-1) as string)
  for (let low = 0; low < 16; low++) {
    const c = B64URL[(last & 0b110000) | low] as string
    add(`non-canonical MAC spelling ${c}`, `${real.slice(0, -1)}${c}`)
  }

  // Valid-looking MACs: right length and alphabet, on the real body and on made-up bodies.
  for (let i = 0; i < 800; i++) add('random MAC on the real body', `${body}~${randomMac()}`)
  for (let i = 0; i < 200; i++) add('random key and MAC', ['1', randomBytes(16).toString('base64url'), primary, backup, String(1 + int(1000)), randomMac()].join('~'))
  for (let i = 0; i < 100; i++) add('the real MAC on another version', ['1', key, primary, backup, String(2 + int(100_000)), mac].join('~'))

  // Addresses swapped for a loopback listener that must never be contacted.
  const trapPort = trap.slice(trap.lastIndexOf(':') + 1)
  const trapSpellings = [trap, `localhost:${trapPort}`, `[::1]:${trapPort}`, `[::ffff:127.0.0.1]:${trapPort}`, `0.0.0.0:${trapPort}`, `127.1:${trapPort}`, `127.0.0.1:0${trapPort}`, `LOCALHOST:${trapPort}`, `127.0.0.1:${trapPort}/`]
  for (const t of trapSpellings) {
    for (const [what, p, b] of [['primary', t, backup], ['backup', primary, t], ['both', t, undefined], ['primary, real backup', t, primary]] as const) {
      const fields = b === undefined ? ['1', key, p] : ['1', key, p, b]
      add(`${t} as ${what}, real MAC`, [...fields, version, mac].join('~'))
      add(`${t} as ${what}, 0 MAC`, [...fields, version, 'A'.repeat(22)].join('~'))
      for (let i = 0; i < 6; i++) add(`${t} as ${what}, random MAC`, [...fields, version, randomMac()].join('~'))
      for (let i = 0; i < 4; i++) add(`${t} as ${what}, random key`, ['1', randomBytes(16).toString('base64url'), ...fields.slice(2), '1', randomMac()].join('~'))
    }
  }

  // Flipped characters: every position of the real cookie, every replacement character.
  for (let i = 0; i < real.length; i++) {
    for (const c of FLIPS) {
      if (c === real[i]) continue
      add(`char ${i} flipped to ${JSON.stringify(c)}`, real.slice(0, i) + c + real.slice(i + 1))
    }
    const ch = real[i] as string
    const other = ch === ch.toUpperCase() ? ch.toLowerCase() : ch.toUpperCase()
    add(`char ${i} case-flipped`, real.slice(0, i) + other + real.slice(i + 1))
  }

  // Huge values: 4 KB, 8 KB, and close to (and past) Node's 16 KiB header limit.
  for (const n of [600, 601, 4096, 8192]) {
    add(`${n}-char value`, `${body}~${'A'.repeat(n)}`)
    add(`${n}-char address`, ['1', key, `${'a'.repeat(n)}.example:11211`, version, mac].join('~'))
  }
  for (const n of [15_000, 16_000, 16_300, 16_500, 20_000]) add(`${n}-char value`, `1~${'A'.repeat(n)}`, { nearLimit: true })
  add('4 KB of ~', '~'.repeat(4096))
  add('253-char hostname in range', ['1', key, `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}:11211`, version, randomMac()].join('~'))

  // Unicode: sent as UTF-8 bytes (what a browser sends), and as latin-1.
  for (const u of ['ключ', '🍪', '\u202e', 'é', '\ufeff', '１', 'ǅ', '\u200b']) {
    add(`unicode ${JSON.stringify(u)} appended`, utf8AsLatin1(real + u))
    add(`unicode ${JSON.stringify(u)} in the key`, utf8AsLatin1(['1', u + key.slice(1), primary, backup, version, mac].join('~')))
    add(`unicode ${JSON.stringify(u)} in the MAC`, utf8AsLatin1(`${body}~${u}${mac.slice(1)}`))
  }
  add('latin-1 é in the key', ['1', 'é' + key.slice(1), primary, backup, version, mac].join('~'))
  for (let i = 0; i < 20; i++) add('random UTF-8 bytes', utf8AsLatin1(Array.from({ length: 1 + int(40) }, () => String.fromCodePoint(0x80 + int(0x10000))).join('').replace(/[\ud800-\udfff]/g, '')))

  // Separators only, empty, and other shapes.
  for (const v of ['~', '~~', '~~~', '~~~~', '~~~~~', '~~~~~~', '1~~~~', '1~~~~~', '', ' ', '=', '==', '1', '1~', 'null', 'undefined', '[object Object]', '"' + real + '"x', '%31' + real.slice(1), encodeURIComponent(real).replace(/~/g, '%7E'), Buffer.from(real).toString('base64url')]) add(`shape ${JSON.stringify(v.slice(0, 30))}`, v)

  // Duplicate `sid` cookies (none of them valid), in one Cookie header and in several.
  const dup = (what: string, headers: Array<[string, string]>): void => {
    out.push({ what, headers, counted: true, nearLimit: false })
  }
  for (let i = 0; i < 40; i++) {
    const a = `${body}~${randomMac()}`
    const b = `${body}~${randomMac()}`
    dup('two forged sid in one header', [['Cookie', `sid=${a}; sid=${b}`]])
    dup('two forged sid in two Cookie headers', [['Cookie', `sid=${a}`], ['Cookie', `sid=${b}`]])
    dup('a forged sid among other cookies', [['Cookie', `theme=dark; sid=${a}; lang=en`]])
  }
  out.push({ what: 'real value under another name', headers: [['Cookie', `SID=${real}; xsid=${real}; sid_=${real}`]], counted: false, nearLimit: false })

  // Random strings fill the rest: printable ASCII, base64url+~, latin-1, and cookie-shaped.
  const alphabets = [PRINTABLE, B64URL + '~', HIGH + B64URL, B64URL + '~:.[]']
  for (let guard = 0; out.length < TOTAL && guard < TOTAL * 4; guard++) {
    const r = int(5)
    if (r < 4) {
      const s = pick(alphabets[r] as string, int(300))
      add(`random string (alphabet ${r})`, s.trim())
    } else {
      add('random cookie-shaped', ['1', pick(B64URL, 22), `${pick('abc.', 1 + int(20))}x:${1 + int(65535)}`, String(1 + int(1e6)), pick(B64URL, 22)].join('~'))
    }
  }
  return out.slice(0, TOTAL)
}

t.test(`${TOTAL} forged cookies: none is served, none makes the sidecar contact an address, none breaks it`, async (t) => {
  const m1 = await MemcachedProcess.start()
  t.teardown(() => m1.stop())
  const m2 = await MemcachedProcess.start()
  t.teardown(() => m2.stop())
  const trap = await new SilentServer().start()
  t.teardown(() => trap.close())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  // memcached.allow is empty: any *signed* address would be contacted, so only the MAC stands
  // between a forged cookie and the trap.
  const sidecar = await startTestSidecar(testConfig(app.url, [m1.address, m2.address], { shutdown: { timeoutMs: 1000 } }))
  t.teardown(() => sidecar.close())
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  t.teardown(() => agent.destroy())

  const browser = new Browser()
  await browser.get(sidecar.url, '/login?set={"user":"ada","admin":false}')
  const real = browser.sid as string
  t.equal(real.split('~').length, 6, 'the real cookie names a primary and a backup')
  await sidecar.store.flush(2000)

  const seed = Number(process.env.FORGE_SEED ?? Date.now() % 2 ** 31)
  t.comment(`FORGE_SEED=${seed}`)
  const cases = forgeries(real, trap.address, seed)
  t.equal(cases.length, TOTAL, `${TOTAL} distinct forgeries`)
  const forgedBefore = await metricValue(sidecar.adminUrl, 'sidecar_forged_cookies_total')
  const seenBefore = app.seen.length
  const started = Date.now()

  // Node answers an oversized request with 431 and closes the socket while the client may still
  // be writing: over a shared keep-alive agent that races the next request onto a dead socket.
  // Oversized forgeries get their own connection; everything else shares the agent.
  const results = await inBatches(cases, CONCURRENCY, async (c) => await rawRequest(`${sidecar.url}/forged`, c.headers, 'GET', c.nearLimit ? false : agent))
  t.comment(`${TOTAL} requests in ${Date.now() - started} ms`)

  const failures: string[] = []
  const statuses = new Map<number, number>()
  results.forEach((r, i) => {
    const c = cases[i] as Forgery
    if (r.status === 'rejected') {
      failures.push(`${c.what}: request failed: ${String(r.reason)}`)
      return
    }
    const res: RawResponse = r.value
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    if (res.status >= 500) failures.push(`${c.what}: ${res.status}`)
    else if (!c.nearLimit && res.status !== 200) failures.push(`${c.what}: ${res.status}, not 200`)
    else if (c.nearLimit && res.status !== 200 && res.status !== 431) failures.push(`${c.what}: ${res.status}, not 200 or 431`)
    if (res.rawHeaders.some(([n]) => PREFIXED.test(n))) failures.push(`${c.what}: an X-Session header reached the client`)
    if (res.rawHeaders.some(([n, v]) => n.toLowerCase() === 'set-cookie' && /^sid=[^;]/.test(v))) failures.push(`${c.what}: was given a session cookie`)
    if (res.status === 200) {
      const body = JSON.parse(res.body) as { sessionId?: string, session?: unknown }
      if (body.sessionId !== undefined || body.session !== undefined) failures.push(`${c.what}: the app was handed a session`)
    }
  })
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`)
  t.same(failures.slice(0, 20), [], 'every forgery answered without a 5xx, no session, no X-Session header, no session cookie')
  t.equal(failures.length, 0, 'no failures in all')

  const reached = app.seen.slice(seenBefore)
  t.equal(reached.length, statuses.get(200) ?? 0, 'every 200 was answered by the app')
  const withHeader = reached.filter((s) => Object.keys(s.headers).some((n) => PREFIXED.test(n)))
  t.equal(withHeader.length, 0, 'the app never received an X-Session* header for a forged cookie')
  t.notOk(reached.some((s) => (s.headers.cookie ?? '').split(';').some((pair) => pair.trim().startsWith('sid='))), 'nor any sid cookie')

  t.equal(trap.connections, 0, 'the address swapped into forged cookies was never contacted')
  const counted = cases.filter((c) => c.counted).length
  const forged = await metricValue(sidecar.adminUrl, 'sidecar_forged_cookies_total') - forgedBefore
  t.ok(forged >= counted, `sidecar_forged_cookies_total grew by ${forged}, at least the ${counted} single forged sid values`)
  t.ok(forged <= TOTAL, 'and at most once per request')

  // Still alive and still serving the real session, on the same and on new connections.
  t.equal((await fetch(`${sidecar.adminUrl}/healthz`)).status, 200, 'healthz')
  const after = await browser.get(sidecar.url, '/')
  t.equal(after.status, 200)
  t.same(after.body.session, { user: 'ada', admin: false }, 'the real session is served afterwards')
  t.equal(after.body.sessionId, keyOf(real))
  const again = await rawRequest(`${sidecar.url}/`, [['Cookie', `sid=${real}`]], 'GET', agent)
  t.same(JSON.parse(again.body).session, { user: 'ada', admin: false }, 'also over a connection used by the forgeries')
  const fresh = new Browser()
  await fresh.get(sidecar.url, '/?set={"n":1}')
  t.same((await fresh.get(sidecar.url, '/')).body.session, { n: 1 }, 'new sessions are still created')
  t.equal(trap.connections, 0, 'still no connection to the trap')

  // Positive control: the same trap in a cookie that *is* signed (allow list empty) is contacted,
  // so the zero above is not an artefact of an unreachable listener.
  const signed = new CookieCodec([SECRET]).encode({ key: 'B'.repeat(22), primary: trap.address, backup: undefined, version: 1 })
  const control = await rawRequest(`${sidecar.url}/`, [['Cookie', `sid=${signed}`]])
  t.equal(control.status, 200, 'a hung node named by a signed cookie costs at most memcached.timeoutMs')
  await until(() => trap.connections > 0, 3000, 'the signed trap address to be contacted')
  t.pass('positive control: a signed cookie naming the trap reaches it')
})

t.test('a validly signed cookie naming an address outside memcached.allow is treated as absent and never contacted', async (t) => {
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  // 127.0.0.2 is loopback but outside the allow list's 127.0.0.1/32.
  const trap = await new ConnectionTrap('127.0.0.2').start()
  t.teardown(() => trap.close())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const strict = await startTestSidecar(testConfig(app.url, [m.address], { memcached: { allow: ['127.0.0.1/32', '*.cache.internal'] } }))
  t.teardown(() => strict.close())

  const browser = new Browser()
  await browser.get(strict.url, '/login?set={"user":"ada"}')
  const key = keyOf(browser.sid)
  await strict.store.flush(2000)
  const codec = new CookieCodec([SECRET])
  const sign = (primary: string, backup: string | undefined, k = key, version = 1): string => codec.encode({ key: k, primary, backup, version })
  const other = 'C'.repeat(22)
  const cases: Array<[string, string]> = [
    ['the live key on the disallowed address', sign(trap.address, undefined)],
    ['an unknown key on the disallowed address', sign(trap.address, undefined, other)],
    ['the live key, allowed primary, disallowed backup', sign(m.address, trap.address)],
    ['an unknown key, allowed primary, disallowed backup', sign(m.address, trap.address, other)],
    ['disallowed primary, allowed backup', sign(trap.address, m.address, other)],
    ['the live key at a higher version on the disallowed address', sign(trap.address, undefined, key, 5)],
    ['IPv6 loopback', sign(`[::1]:${m.port}`, undefined)],
    ['a hostname the glob does not match', sign('cache.internal:11211', undefined, other)],
    ['a hostname that only ends like the glob', sign('evilcache.internal:11211', undefined, other)],
    ['a hostname with the glob as a prefix', sign('a.cache.internal.evil.test:11211', undefined, other)]
  ]
  const before = await metricValue(strict.adminUrl, 'sidecar_forged_cookies_total')
  for (const [what, value] of cases) {
    const res = await rawRequest(`${strict.url}/`, [['Cookie', `sid=${value}`]])
    t.equal(res.status, 200, `${what}: 200`)
    const body = JSON.parse(res.body) as { sessionId?: string, session?: unknown }
    t.equal(body.session, undefined, `${what}: no session`)
    t.equal(body.sessionId, undefined, `${what}: no session id`)
    t.notOk(res.rawHeaders.some(([n, v]) => n.toLowerCase() === 'set-cookie' && /^sid=[^;]/.test(v)), `${what}: no session cookie issued`)
  }
  t.equal(trap.connections, 0, 'the disallowed address was never contacted')
  t.equal(await metricValue(strict.adminUrl, 'sidecar_forged_cookies_total') - before, cases.length, 'each is counted like a forgery')
  t.same((await browser.get(strict.url, '/')).body.session, { user: 'ada' }, 'the real cookie still works')

  // Positive control: with an empty allow list the same signed cookie is acted on.
  const open = await startTestSidecar(testConfig(app.url, [m.address], { shutdown: { timeoutMs: 1000 } }))
  t.teardown(() => open.close())
  await rawRequest(`${open.url}/`, [['Cookie', `sid=${sign(trap.address, undefined, other)}`]])
  await until(() => trap.connections > 0, 3000, 'the trap to be contacted without an allow list')
  t.pass('positive control: the trap on 127.0.0.2 is reachable')
})
