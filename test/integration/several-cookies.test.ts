import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { startStack } from '../helpers/sidecar.js'
import { metricValue } from '../helpers/metrics.js'
import { Browser, keyOf, parseSetCookieLine, q, rawRequest, versionOf, type RawResponse } from '../helpers/client.js'
import type { Sidecar } from '../../src/sidecar.js'

// SPEC "The session cookie": several session cookies in one request (a browser holding path or
// domain variants sends them all in one Cookie header): a value that verifies wins; for the
// same key the highest version, across keys one whose session is live. Forgeries among them
// are counted once per request.

const { app, sidecar: start } = await startStack(t)

const FORGED = 'sidecar_forged_cookies_total'

/** A value shaped like `real` (same addresses and version) with another key and a random MAC. */
const forge = (real: string): string => {
  const fields = real.split('~')
  fields[1] = randomBytes(16).toString('base64url')
  fields[fields.length - 1] = randomBytes(16).toString('base64url')
  return fields.join('~')
}

/** One request carrying every value as a `sid` pair of a single Cookie header, in this order. */
const withCookies = async (sidecar: Sidecar, path: string, values: string[]): Promise<RawResponse> =>
  await rawRequest(`${sidecar.url}${path}`, [['Cookie', ['theme=dark', ...values.map((v) => `sid=${v}`)].join('; ')]])

/** The `sid` Set-Cookie lines of a response, parsed. */
const sidSetCookies = (res: RawResponse): Array<ReturnType<typeof parseSetCookieLine>> =>
  res.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => parseSetCookieLine(v)).filter((c) => c.name === 'sid')

/** A browser logged in with `data`; its cookie value is `sid`. */
const loggedIn = async (sidecar: Sidecar, data: Record<string, unknown>): Promise<Browser> => {
  const browser = new Browser()
  await browser.get(sidecar.url, `/login?set=${q(data)}`)
  return browser
}

/** The app served the session of `value` with `data`, and got none of the sid values. */
const served = (t: Test, res: RawResponse, value: string, data: Record<string, unknown>, what: string): void => {
  t.equal(res.status, 200, `${what}: 200`)
  t.equal(app.last?.sessionId, keyOf(value), `${what}: the app gets that session's key`)
  t.same(app.last?.session, data, `${what}: and its data`)
  t.equal(app.last?.headers.cookie, 'theme=dark', `${what}: no sid value reaches the app`)
}

t.test('a forged value and a real one: the real session is served, the forgery counted once', async (t) => {
  const sidecar = await start(t)
  const real = (await loggedIn(sidecar, { user: 'ada' })).sid as string
  for (const order of ['forged first', 'forged second']) {
    const forged = forge(real)
    const before = await metricValue(sidecar.adminUrl, FORGED)
    const res = await withCookies(sidecar, '/profile', order === 'forged first' ? [forged, real] : [real, forged])
    served(t, res, real, { user: 'ada' }, order)
    t.same(sidSetCookies(res), [], `${order}: the client's real cookie stays as it is`)
    t.equal(await metricValue(sidecar.adminUrl, FORGED), before + 1, `${order}: ${FORGED} +1 for the request`)
  }
})

t.test('two real values of one key at different versions: the higher version is used, never a downgrade', async (t) => {
  const sidecar = await start(t)
  const browser = await loggedIn(sidecar, { step: 1 })
  const older = browser.sid as string
  await browser.get(sidecar.url, `/next?merge=${q({ step: 2 })}`)
  const newer = browser.sid as string
  t.equal(keyOf(newer), keyOf(older), 'same key')
  t.ok(versionOf(newer) > versionOf(older), `a higher version after the change (${versionOf(older)} -> ${versionOf(newer)})`)

  for (const [what, values] of [['older first', [older, newer]], ['newer first', [newer, older]]] as const) {
    const res = await withCookies(sidecar, '/profile', [...values])
    served(t, res, newer, { step: 2 }, what)
    // The newer value is the current one: nothing to reissue, and never an older one.
    t.same(sidSetCookies(res), [], `${what}: no Set-Cookie, so none that reverts or clears the client's cookie`)
  }

  // A change made with both cookies applies to the newest state, at a higher version still.
  const res = await withCookies(sidecar, `/next?merge=${q({ step: 3 })}`, [older, newer])
  t.same(app.last?.session, { step: 2 }, 'the change was made on the newer data')
  const issued = sidSetCookies(res)
  t.equal(issued.length, 1, 'the change issues one cookie')
  t.equal(keyOf(issued[0]?.value), keyOf(newer), 'of the same key')
  t.ok(versionOf(issued[0]?.value) > versionOf(newer), `at a version above the newer cookie's (${versionOf(issued[0]?.value)})`)
})

t.test('two keys, one destroyed: the live one is served whichever order they come in', async (t) => {
  const sidecar = await start(t)
  const live = (await loggedIn(sidecar, { user: 'ada' })).sid as string
  const leaving = await loggedIn(sidecar, { user: 'bob' })
  const destroyed = leaving.sid as string
  await leaving.get(sidecar.url, '/logout?destroy=1')
  t.equal(leaving.sid, undefined, 'the second session was destroyed (X-Session-Destroy)')
  await sidecar.store.flush(2000)
  // A node that never held either session finds them in memcached: a tombstone and a live copy.
  const cold = await start(t)

  for (const [node, target] of [['the node that destroyed it', sidecar], ['a node holding neither', cold]] as const) {
    for (const [order, values] of [['destroyed first', [destroyed, live]], ['live first', [live, destroyed]]] as const) {
      const what = `${node}, ${order}`
      const res = await withCookies(target, '/profile', [...values])
      served(t, res, live, { user: 'ada' }, what)
      t.same(sidSetCookies(res).filter((c) => c.value === '' || keyOf(c.value) !== keyOf(live)), [], `${what}: no Set-Cookie clears the live cookie or names the destroyed key`)
    }
  }
})

t.test('two live keys: one of them is served and the request succeeds', async (t) => {
  const sidecar = await start(t)
  const sessions = new Map<string, Record<string, unknown>>()
  const a = (await loggedIn(sidecar, { user: 'ada' })).sid as string
  const b = (await loggedIn(sidecar, { user: 'bob' })).sid as string
  sessions.set(keyOf(a), { user: 'ada' }).set(keyOf(b), { user: 'bob' })

  for (const values of [[a, b], [b, a]]) {
    const res = await withCookies(sidecar, '/profile', values)
    t.equal(res.status, 200, 'the request succeeds')
    const key = app.last?.sessionId ?? ''
    t.ok(sessions.has(key), 'the app gets one of the two sessions')
    t.same(app.last?.session, sessions.get(key), 'with that session\'s own data')
    t.same(sidSetCookies(res).filter((c) => keyOf(c.value) !== key), [], 'no Set-Cookie for another key')
  }
})

t.test('only forged values: no session, and the request counted once', async (t) => {
  const sidecar = await start(t)
  const real = (await loggedIn(sidecar, { user: 'ada' })).sid as string
  const before = await metricValue(sidecar.adminUrl, FORGED)
  const res = await withCookies(sidecar, '/profile', [forge(real), forge(real), `${real}x`])
  t.equal(res.status, 200, 'the request proceeds')
  t.equal(app.last?.sessionId, undefined, 'with no session at the app')
  t.equal(app.last?.session, undefined, 'and no session data')
  t.equal(app.last?.headers.cookie, 'theme=dark', 'no sid value reaches the app')
  t.equal(await metricValue(sidecar.adminUrl, FORGED), before + 1, `${FORGED} +1 for the request, not one per value`)
})

t.test('at most 8 session cookies are looked at: a ninth, even a real one, is not (a browser holds a few variants)', async (t) => {
  const sidecar = await start(t)
  const real = (await loggedIn(sidecar, { user: 'ada' })).sid as string
  const eightForged = Array.from({ length: 8 }, () => forge(real))
  await withCookies(sidecar, '/profile', [...eightForged, real])
  t.equal(app.last?.sessionId, undefined, 'the ninth is not verified')
  await withCookies(sidecar, '/profile', [...eightForged.slice(1), real])
  t.equal(app.last?.sessionId, keyOf(real), 'the eighth is')
})
