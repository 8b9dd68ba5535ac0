import t from 'tap'
import { Browser, versionOf } from '../helpers/client.js'
import { startTopology } from '../helpers/topology.js'

const storedSession = async (topo: Awaited<ReturnType<typeof startTopology>>, sid: string | undefined): Promise<{ version: number, session: Record<string, unknown> }> => {
  const [, key, primary] = (sid ?? '').split('~')
  const node = topo.memcached.find((m) => m.address === primary)
  const [version, data] = ((await node?.copy(key ?? '')) ?? '').split(' ')
  return { version: Number(version), session: JSON.parse(Buffer.from(data ?? '', 'base64url').toString()) }
}

const merge = (patch: object): string => `/?merge=${encodeURIComponent(JSON.stringify(patch))}`

for (const write of ['sync', 'async'] as const) {
  t.test(`write: ${write}: one session changed at once on two sidecars`, async (t) => {
    const topo = await startTopology({ memcached: 2, apps: 2, lb: 'haproxy', sidecar: { write } })
    t.teardown(() => topo.close())
    const [a, b] = topo.sidecars
    if (a === undefined || b === undefined) throw new Error('two sidecars expected')
    const pairs = 50

    // Issue 3, scenario 6: one session, concurrent requests on two nodes, each merging its own keys.
    t.test('with disjoint keys loses nothing in memcached', async (t) => {
      const browser = new Browser()
      await browser.get(a.url, '/?set={}')
      await browser.get(b.url, '/') // both nodes hold it locally now
      for (let i = 0; i < pairs; i++) {
        // Same cookie, both at once: each node bumps its own local version, so their writes clash.
        await Promise.all([
          browser.get(a.url, merge({ [`a${i}`]: i })),
          browser.get(b.url, merge({ [`b${i}`]: i }))
        ])
      }
      await a.flushed()
      await b.flushed()
      const { version, session } = await storedSession(topo, browser.sid)
      t.equal(Object.keys(session).length, 2 * pairs, `all ${2 * pairs} merged keys are in memcached`)
      // Writes queued behind one in flight are combined, so versions may advance by less than
      // one per change; what matters is that no cookie handed out is ahead of memcached.
      t.ok(version >= versionOf(browser.sid), `memcached's version ${version} >= the cookie's ${versionOf(browser.sid)}`)
      // What a reader sees right after: a node may still serve its own last copy until the cookie
      // moves past it or cache.revalidateMs passes; the next change there re-applies onto the full copy.
      const viaA = Object.keys((await browser.get(a.url, '/')).body.session as object).length
      const viaB = Object.keys((await browser.get(b.url, '/')).body.session as object).length
      t.comment(`keys visible right after the race: via A ${viaA}, via B ${viaB} (memcached ${2 * pairs})`)
      await browser.get(a.url, merge({ final: 1 }))
      await a.flushed()
      const final = (await browser.get(b.url, '/')).body.session as object
      t.equal(Object.keys(final).length, 2 * pairs + 1, 'after one more change every node serves all keys')
    })

    // README: two requests that set the same member at once send the value each computed, and
    // the later write's value stands; nothing else in the session is lost or undone.
    t.test('setting the same member leaves one of the last values sent, and the rest intact', async (t) => {
      const browser = new Browser()
      await browser.get(a.url, `/?set=${encodeURIComponent(JSON.stringify({ user: 'ann', cart: { items: 3 } }))}`)
      await browser.get(b.url, '/')
      for (let i = 0; i < pairs; i++) {
        await Promise.all([
          browser.get(a.url, merge({ counter: `a${i}`, [`a${i}`]: i })),
          browser.get(b.url, merge({ counter: `b${i}`, [`b${i}`]: i }))
        ])
      }
      await a.flushed()
      await b.flushed()
      const last = [`a${pairs - 1}`, `b${pairs - 1}`]
      const { session } = await storedSession(topo, browser.sid)
      t.ok(last.includes(session.counter as string), `memcached holds one of the last pair's values: ${String(session.counter)}`)
      t.equal(session.user, 'ann', 'a member neither request set is kept')
      t.same(session.cart, { items: 3 }, 'a nested member neither request set is kept')
      t.equal(Object.keys(session).length, 2 * pairs + 3, 'every disjoint key either request set is kept too')
      await browser.get(a.url, merge({ final: 1 }))
      await a.flushed()
      const viaA = (await browser.get(a.url, '/')).body.session as Record<string, unknown>
      const viaB = (await browser.get(b.url, '/')).body.session as Record<string, unknown>
      t.equal(viaA.counter, session.counter, 'after one more change A serves the value that stood')
      t.equal(viaB.counter, session.counter, 'and so does B')
      t.equal(Object.keys(viaB).length, 2 * pairs + 4, 'with every member')
    })
  })
}
