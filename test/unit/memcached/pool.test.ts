import t from 'tap'
import { pino } from 'pino'
import { MemcachedNode } from '../../../src/memcached/node.js'
import { NodePool, type PoolOptions } from '../../../src/memcached/pool.js'
import { Metrics } from '../../../src/metrics.js'

// No memcached runs here and no command is ever issued: placement and address checks only.
type TestLike = Pick<typeof t, 'teardown'>
const THREE = ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211']

function pool (t: TestLike, options: Partial<PoolOptions> = {}): NodePool {
  const p = new NodePool({
    nodes: THREE,
    replicas: 2,
    allow: [],
    timeoutMs: 100,
    ttl: 60,
    log: pino({ level: 'silent' }),
    ops: { observe () {}, forget () {} },
    ...options
  })
  t.teardown(() => p.close())
  return p
}

const keys = (n: number): string[] => Array.from({ length: n }, (_, i) => `key-${i}`)

t.test('ranked: every configured node, in an order that depends only on the key', async (t) => {
  const a = pool(t)
  const b = pool(t, { nodes: [...THREE].reverse() })
  for (const key of keys(50)) {
    const order = a.ranked(key)
    t.same([...order].sort(), THREE, 'a permutation of the nodes')
    t.same(a.ranked(key), order, 'the same order every time')
    t.same(b.ranked(key), order, 'whatever order the nodes were configured in')
  }
  t.equal(new Set(keys(50).map((k) => a.ranked(k)[0])).size, 3, 'different keys lead with different nodes')
})

t.test('ranked: 3000 keys spread roughly evenly over 3 nodes (each 25-42%)', async (t) => {
  const p = pool(t)
  const counts = new Map<string, number>(THREE.map((n) => [n, 0]))
  for (const key of keys(3000)) {
    const first = p.ranked(key)[0] as string
    counts.set(first, (counts.get(first) ?? 0) + 1)
  }
  for (const [node, count] of counts) t.ok(count >= 750 && count <= 1260, `${node}: ${count} of 3000`)
})

t.test('ranked: removing a node moves only the keys that were on it', async (t) => {
  const before = pool(t)
  const after = pool(t, { nodes: ['10.0.0.1:11211', '10.0.0.3:11211'] })
  let moved = 0
  for (const key of keys(3000)) {
    const order = before.ranked(key)
    const next = after.ranked(key)
    if (order[0] === '10.0.0.2:11211') {
      moved++
      t.equal(next[0], order[1], `${key} moves to its second choice`)
    } else if (next[0] !== order[0]) {
      t.fail(`${key} moved from ${String(order[0])} to ${String(next[0])}`)
    }
  }
  t.ok(moved > 0 && moved < 3000, `${moved} keys moved`)
})

t.test('ranked: adding a node takes keys only onto the new node', async (t) => {
  const before = pool(t)
  const after = pool(t, { nodes: [...THREE, '10.0.0.4:11211'] })
  for (const key of keys(2000)) {
    const was = before.ranked(key)[0]
    const now = after.ranked(key)[0]
    if (now !== was && now !== '10.0.0.4:11211') t.fail(`${key} moved from ${String(was)} to ${String(now)}`)
  }
  t.pass('no key moved between old nodes')
})

t.test('place: primary and backup are the first two in rendezvous order with replicas 2', async (t) => {
  const p = pool(t)
  for (const key of keys(100)) {
    const order = p.ranked(key)
    t.same(p.place(key), { primary: order[0], backup: order[1] }, key)
  }
})

t.test('place: no backup with replicas 1', async (t) => {
  const p = pool(t, { replicas: 1 })
  for (const key of keys(20)) t.same(p.place(key), { primary: p.ranked(key)[0], backup: undefined }, key)
})

t.test('place: with one node there is no backup even with replicas 2', async (t) => {
  const p = pool(t, { nodes: ['10.0.0.1:11211'] })
  t.same(p.place('k'), { primary: '10.0.0.1:11211', backup: undefined })
})

t.test('node: the same instance for the same address', async (t) => {
  const p = pool(t)
  const node = p.node('10.0.0.1:11211')
  t.ok(node)
  t.equal(node?.address, '10.0.0.1:11211')
  t.equal(p.node('10.0.0.1:11211'), node)
  t.not(p.node('10.0.0.2:11211'), node, 'another address, another node')
})

t.test('node: addresses a cookie names, beyond the configured ones, when allowed', async (t) => {
  const p = pool(t, { allow: ['10.0.0.0/8', '*.cache.internal'] })
  t.equal(p.node('10.9.9.9:11211')?.address, '10.9.9.9:11211')
  t.equal(p.node('mc-7.cache.internal:11211')?.address, 'mc-7.cache.internal:11211')
})

t.test('node: refuses a malformed address', async (t) => {
  const p = pool(t)
  for (const text of ['10.0.0.1', '10.0.0.1:0', 'a~b:1', '', 'a b:1']) t.equal(p.node(text), undefined, JSON.stringify(text))
})

t.test('node: refuses a non-canonical spelling', async (t) => {
  const p = pool(t)
  t.equal(p.node('MC.Cache.Internal:11211'), undefined, 'upper case')
  t.equal(p.node('10.0.0.1:011211'), undefined, 'leading zero in the port')
  t.equal(p.node('10.0.0.1:01121'), undefined, 'leading zero in the port')
  t.ok(p.node('mc.cache.internal:11211'), 'control: the canonical spelling')
})

t.test('node: refuses addresses outside memcached.allow', async (t) => {
  const p = pool(t, { allow: ['10.0.0.0/8', '*.cache.internal'] })
  t.equal(p.node('192.168.1.1:11211'), undefined)
  t.equal(p.node('evil.example.com:11211'), undefined)
  t.equal(p.node('cache.internal:11211'), undefined)
})

t.test('node: IPv6 literals in their canonical spelling, like any address', async (t) => {
  const p = pool(t)
  t.equal(p.node('[::1]:11211')?.address, '[::1]:11211')
  t.equal(p.node('[fd00::5]:11211')?.address, '[fd00::5]:11211')
  t.equal(p.node('[FD00:0::5]:11211'), undefined, 'another spelling of a known node is not a second node')
})

t.test('allows: true exactly for addresses node() accepts', async (t) => {
  const p = pool(t, { allow: ['10.0.0.0/8'] })
  t.ok(p.allows('10.0.0.1:11211'))
  t.ok(p.allows('10.200.0.1:11211'))
  t.notOk(p.allows('192.168.0.1:11211'))
  t.notOk(p.allows('[::1]:11211'))
  t.notOk(p.allows('10.0.0.1:011211'))
  t.notOk(p.allows('not an address'))
})

t.test('isLive: true for a fresh allowed node, false for what may not be contacted', async (t) => {
  const p = pool(t, { allow: ['10.0.0.0/8'] })
  t.ok(p.isLive('10.0.0.1:11211'))
  t.notOk(p.isLive('192.168.0.1:11211'))
  t.notOk(p.isLive('[::1]:11211'))
  t.notOk(p.isLive('garbage'))
})

t.test('close: forgets every node', async (t) => {
  const p = pool(t)
  const node = p.node('10.0.0.1:11211')
  p.close()
  t.not(p.node('10.0.0.1:11211'), node, 'a new node after close')
})

t.test('nodes only cookies named are closed and forgotten once idle, metric series included; placed nodes stay', async (t) => {
  let now = 1_000_000
  const metrics = new Metrics(false)
  const p = pool(t, { ops: metrics, idleCloseMs: 60_000, now: () => now })
  const learnt = p.node('10.9.9.9:11211')
  t.ok(learnt, 'a signed cookie named it: a client exists')
  metrics.observe('10.9.9.9:11211', 'gets', 'error', 3)
  metrics.observe('10.0.0.1:11211', 'gets', 'ok', 1)
  p.node('10.0.0.1:11211')
  t.match(await metrics.registry.metrics(), /node="10\.9\.9\.9:11211"/)
  now += 30_000
  t.same(p.sweep(), [], 'nothing idle long enough yet')
  now += 10 * 60_000
  t.same(p.sweep(), ['10.9.9.9:11211'], 'the learnt node is forgotten, the placed one is not')
  const text = await metrics.registry.metrics()
  t.notMatch(text, /node="10\.9\.9\.9:11211"/, 'its metric series are gone')
  t.match(text, /node="10\.0\.0\.1:11211"/, 'the placed node\'s stay')
  t.not(p.node('10.9.9.9:11211'), learnt, 'named again, it gets a new client')
})

t.test('createNode: the pool makes its clients through the injected factory, once per allowed address', async (t) => {
  const made: string[] = []
  const p = pool(t, {
    allow: ['10.0.0.0/8'],
    createNode: (address, options) => { made.push(address.text); return new MemcachedNode(address, options) }
  })
  p.node('10.0.0.1:11211')
  p.node('10.0.0.1:11211')
  p.node('192.168.1.1:11211')
  t.same(made, ['10.0.0.1:11211'], 'one client per address; a disallowed address gets none')
})
