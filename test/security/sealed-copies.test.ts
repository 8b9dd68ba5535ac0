import t from 'tap'
import { Browser, keyOf, q } from '../helpers/client.js'
import { metricValue } from '../helpers/metrics.js'
import { LogCapture, startStack } from '../helpers/sidecar.js'
import { b64 } from '../helpers/upstream.js'

// SPEC "Storage and consistency": whoever can reach a memcached port can read and write its
// items, so the copies there are sealed (authenticated, by default encrypted, bound to their
// key). A copy that does not open is counted, logged once, and treated as missing.

const DATA = { user: 'ada', email: 'ada@example.com' }

t.test('memcached holds no readable session: neither the data nor its base64', async (t) => {
  const stack = await startStack(t)
  const sidecar = await stack.sidecar(t)
  const browser = new Browser()
  await browser.get(sidecar.url, `/login?set=${q(DATA)}`)
  await sidecar.store.flush(2000)
  const raw = await stack.m.get(`sess:${keyOf(browser.sid)}`) ?? ''
  t.match(raw, /^s2\./, 'a sealed copy is stored')
  t.notOk(raw.includes(b64(DATA)) || raw.includes('ada'), 'nothing of the session in clear')
  t.equal(await stack.m.copy(keyOf(browser.sid)), `1 ${b64(DATA)}`, 'and it opens with the fleet\'s secret')
})

t.test('a copy rewritten in memcached (the old attack: {"user":"admin"}) is never served; counted and logged once', async (t) => {
  const stack = await startStack(t)
  const writer = await stack.sidecar(t)
  const browser = new Browser()
  await browser.get(writer.url, `/login?set=${q(DATA)}`)
  await writer.store.flush(2000)
  const key = keyOf(browser.sid)
  await stack.m.set(`sess:${key}`, `5 ${b64({ user: 'admin' })}`)

  const logs = new LogCapture()
  const reader = await stack.sidecar(t, { log: { level: 'warn' } }, { logs })
  for (let i = 0; i < 3; i++) {
    const client = new Browser()
    client.cookies.set('sid', browser.sid as string)
    const res = await client.get(reader.url, '/')
    t.equal(res.status, 200, `request ${i + 1} is answered`)
    t.not((res.body.session as { user?: string } | undefined)?.user, 'admin', 'the forged data is never served')
  }
  t.ok(await metricValue(reader.adminUrl, 'sidecar_rejected_copies_total') >= 3, 'every rejected copy is counted')
  const lines = logs.entries.filter((e) => e.code === 'SIDECAR_ERR_STORED_COPY_REJECTED')
  t.equal(lines.length, 1, 'and logged once')
  t.notOk(logs.text.includes(b64({ user: 'admin' })), 'without the value')
})

t.test('a copy moved under another session\'s key does not open there', async (t) => {
  const stack = await startStack(t)
  const writer = await stack.sidecar(t)
  const victim = new Browser()
  await victim.get(writer.url, `/login?set=${q({ user: 'victim' })}`)
  const admin = new Browser()
  await admin.get(writer.url, `/login?set=${q({ user: 'admin', role: 'admin' })}`)
  await writer.store.flush(2000)
  const adminCopy = await stack.m.get(`sess:${keyOf(admin.sid)}`) as string
  await stack.m.set(`sess:${keyOf(victim.sid)}`, adminCopy)

  const reader = await stack.sidecar(t)
  const client = new Browser()
  client.cookies.set('sid', victim.sid as string)
  const res = await client.get(reader.url, '/')
  t.not((res.body.session as { user?: string } | undefined)?.user, 'admin', 'the admin copy is not served under the victim\'s key')
  t.ok(await metricValue(reader.adminUrl, 'sidecar_rejected_copies_total') >= 1, 'counted')
})

t.test('a sidecar with a live copy writes over a copy that does not open at its next change', async (t) => {
  const stack = await startStack(t)
  const sidecar = await stack.sidecar(t)
  const browser = new Browser()
  await browser.get(sidecar.url, `/login?set=${q(DATA)}`)
  await sidecar.store.flush(2000)
  const key = keyOf(browser.sid)
  await stack.m.set(`sess:${key}`, 'garbage')
  await browser.get(sidecar.url, `/?merge=${q({ visits: 1 })}`)
  await sidecar.store.flush(2000)
  t.equal(await stack.m.copy(key), `2 ${b64({ ...DATA, visits: 1 })}`, 'the whole session is stored again, sealed')
})

t.test('memcached.encrypt: false stores authenticated copies that another fleet member opens', async (t) => {
  const stack = await startStack(t)
  const plain = await stack.sidecar(t, { memcached: { encrypt: false } })
  const browser = new Browser()
  await browser.get(plain.url, `/login?set=${q(DATA)}`)
  await plain.store.flush(2000)
  t.match(await stack.m.get(`sess:${keyOf(browser.sid)}`), new RegExp(`^a2\\.[A-Za-z0-9_-]{8}\\.1\\.L\\.${b64(DATA)}\\.`), 'readable, with a MAC')
  const encrypting = await stack.sidecar(t)
  const client = new Browser()
  client.cookies.set('sid', browser.sid as string)
  t.same((await client.get(encrypting.url, '/')).body.session, DATA, 'an encrypting sidecar loads it')
})
