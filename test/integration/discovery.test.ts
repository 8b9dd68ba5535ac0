import t from 'tap'
import { pino } from 'pino'
import { MemcachedProcess } from '../helpers/memcached.js'
import { TestApp } from '../helpers/upstream.js'
import { testConfig } from '../helpers/sidecar.js'
import { Browser } from '../helpers/client.js'
import { freePort, until } from '../../harness/index.js'
import { startSidecar } from '../../src/sidecar.js'
import type { Resolver } from '../../src/memcached/discovery.js'

const primaryOf = (sid: string | undefined): string => (sid ?? '').split('~')[2] ?? ''

async function sessionsOn (sidecarUrl: string, count: number): Promise<Browser[]> {
  const browsers = Array.from({ length: count }, () => new Browser())
  for (const [i, b] of browsers.entries()) await b.get(sidecarUrl, `/?set={"i":${i}}`)
  return browsers
}

t.test('setNodes (SIGHUP): new sessions go to the new nodes at once, old ones stay readable', async (t) => {
  const m1 = await MemcachedProcess.start()
  const m2 = await MemcachedProcess.start()
  t.teardown(async () => { await m1.stop(); await m2.stop() })
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const sidecar = await startSidecar(testConfig(app.url, [m1.address]), pino({ level: 'silent' }), { defaultMetrics: false })
  t.teardown(() => sidecar.close())

  const before = await sessionsOn(sidecar.url, 5)
  t.same([...new Set(before.map((b) => primaryOf(b.sid)))], [m1.address])
  sidecar.setNodes([m2.address])
  const after = await sessionsOn(sidecar.url, 5)
  t.same([...new Set(after.map((b) => primaryOf(b.sid)))], [m2.address], 'new sessions are placed on the new node only')
  await sidecar.store.flush(2000)

  const other = await startSidecar(testConfig(app.url, [m2.address]), pino({ level: 'silent' }), { defaultMetrics: false })
  t.teardown(() => other.close())
  for (const [i, b] of before.entries()) {
    t.same((await b.get(other.url, '/')).body.session, { i }, `session ${i} on the removed node is still found through its cookie`)
  }
})

t.test('DNS discovery: A records re-resolved on the interval become placement nodes', async (t) => {
  // Two memcached on two loopback addresses and one port, as behind a headless Service.
  const port = await freePort()
  const a = await MemcachedProcess.start('127.0.0.2', port)
  const b = await MemcachedProcess.start('127.0.0.3', port)
  t.teardown(async () => { await a.stop(); await b.stop() })
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  let records = ['127.0.0.2']
  const lookups: string[] = []
  const resolver: Resolver = {
    resolve4: async (name) => { lookups.push(name); return records },
    resolve6: async () => { const err = new Error('none') as NodeJS.ErrnoException; err.code = 'ENODATA'; throw err }
  }
  const config = testConfig(app.url, [], { memcached: { nodes: [], discovery: { dns: `memcached.test.internal:${port}`, intervalMs: 100 } } })
  const sidecar = await startSidecar(config, pino({ level: 'silent' }), { defaultMetrics: false, resolver })
  t.teardown(() => sidecar.close())
  t.equal(lookups[0], 'memcached.test.internal', 'the name is resolved at start')

  const first = await sessionsOn(sidecar.url, 6)
  t.same([...new Set(first.map((x) => primaryOf(x.sid)))], [a.address], 'only the discovered node is used')
  records = ['127.0.0.2', '127.0.0.3']
  await until(async () => {
    const more = await sessionsOn(sidecar.url, 4)
    return more.some((x) => primaryOf(x.sid) === b.address)
  }, 5000, 'a session placed on the newly discovered node')
  t.pass('a node added to DNS receives new sessions without a restart')

  records = ['127.0.0.3']
  const lookupsBefore = lookups.length
  await until(() => lookups.length >= lookupsBefore + 2, 3000, 'two more lookups')
  for (const [i, x] of first.entries()) t.same((await x.get(sidecar.url, '/')).body.session, { i }, `session ${i} on the node gone from DNS stays readable`)
  const later = await sessionsOn(sidecar.url, 5)
  t.same([...new Set(later.map((x) => primaryOf(x.sid)))], [b.address], 'new sessions only go to the node still in DNS')
})

t.test('a failed or empty lookup keeps the last known nodes', async (t) => {
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  let fail = false
  let lookups = 0
  const resolver: Resolver = {
    resolve4: async () => {
      lookups++
      if (fail) { const err = new Error('timeout') as NodeJS.ErrnoException; err.code = 'ETIMEOUT'; throw err }
      return ['127.0.0.1']
    },
    resolve6: async () => []
  }
  const config = testConfig(app.url, [], { memcached: { nodes: [], discovery: { dns: `cache.test.internal:${m.port}`, intervalMs: 100 } } })
  const sidecar = await startSidecar(config, pino({ level: 'silent' }), { defaultMetrics: false, resolver })
  t.teardown(() => sidecar.close())
  fail = true
  const seen = lookups
  await until(() => lookups >= seen + 2, 3000, 'failing lookups')
  const browser = new Browser()
  await browser.get(sidecar.url, '/?set={"ok":1}')
  t.equal(primaryOf(browser.sid), m.address, 'sessions are still placed on the last known node')
})
