import t from 'tap'
import { Browser, versionOf } from '../helpers/client.js'
import { startTopology } from '../helpers/topology.js'

// Issue 3, scenario 6: one session, concurrent requests on two nodes, each merging its own keys.
t.test('concurrent X-Session-Merge on two nodes with disjoint keys loses nothing in memcached', async (t) => {
  for (const write of ['sync', 'async'] as const) {
    const topo = await startTopology({ memcached: 2, apps: 2, lb: 'haproxy', sidecar: { write } })
    t.teardown(() => topo.close())
    const [a, b] = topo.sidecars
    if (a === undefined || b === undefined) throw new Error('two sidecars expected')
    const browser = new Browser()
    await browser.get(a.url, '/?set={}')
    await browser.get(b.url, '/') // both nodes hold it locally now
    const pairs = 50
    for (let i = 0; i < pairs; i++) {
      // Same cookie, both at once: each node bumps its own local version, so their writes clash.
      await Promise.all([
        browser.get(a.url, `/?merge=${encodeURIComponent(JSON.stringify({ [`a${i}`]: i }))}`),
        browser.get(b.url, `/?merge=${encodeURIComponent(JSON.stringify({ [`b${i}`]: i }))}`)
      ])
    }
    await a.flushed()
    await b.flushed()
    const [, key, primary] = (browser.sid ?? '').split('~')
    const node = topo.memcached.find((m) => m.address === primary)
    const stored = (await node?.copy(key ?? '')) ?? ''
    const [version, data] = stored.split(' ')
    const session = JSON.parse(Buffer.from(data ?? '', 'base64url').toString()) as Record<string, number>
    t.equal(Object.keys(session).length, 2 * pairs, `${write}: all ${2 * pairs} merged keys are in memcached`)
    // Writes queued behind one in flight are combined, so versions may advance by less than
    // one per change; what matters is that no cookie handed out is ahead of memcached.
    t.ok(Number(version) >= versionOf(browser.sid), `${write}: memcached's version ${String(version)} >= the cookie's ${versionOf(browser.sid)}`)
    // What a reader sees right after: a node may still serve its own last copy until the cookie
    // moves past it or cache.revalidateMs passes; the next change there re-applies onto the full copy.
    const viaA = Object.keys((await browser.get(a.url, '/')).body.session as object).length
    const viaB = Object.keys((await browser.get(b.url, '/')).body.session as object).length
    t.comment(`${write}: keys visible right after the race: via A ${viaA}, via B ${viaB} (memcached ${2 * pairs})`)
    await browser.get(a.url, '/?merge={"final":1}')
    await a.flushed()
    const final = (await browser.get(b.url, '/')).body.session as object
    t.equal(Object.keys(final).length, 2 * pairs + 1, `${write}: after one more change every node serves all keys`)
  }
})
