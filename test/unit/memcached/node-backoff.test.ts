import t, { type Test } from 'tap'
import { createServer } from 'node:net'
import { pino } from 'pino'
import { parseAddress, type Address } from '../../../src/memcached/address.js'
import { MemcachedNode } from '../../../src/memcached/node.js'
import { LogCapture } from '../../helpers/sidecar.js'
import { EmbeddedMemcached } from '../../../demo/embedded-memcached.js'
import { until } from '../../../harness/index.js'

// Issue 9: one backoff per outage, not per command. A node whose port refuses connections
// (a memcached that is down): a burst of commands in flight fails together.

/** A loopback port with nothing listening on it. */
async function refusedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  return typeof address === 'object' && address !== null ? address.port : 0
}

/** An in-process memcached on a free port, closed at the test's end. */
async function embedded (t: Test): Promise<{ memcached: EmbeddedMemcached, port: number, address: Address }> {
  const memcached = new EmbeddedMemcached()
  const port = await memcached.listen()
  t.teardown(() => memcached.close())
  const address = parseAddress(`127.0.0.1:${port}`)
  if (address === undefined) throw new Error('address')
  return { memcached, port, address }
}

t.test('a burst of failing commands is one outage: one warn line, the shortest backoff, not the cap', async (t) => {
  const logs = new LogCapture()
  const address = parseAddress(`127.0.0.1:${await refusedPort()}`)
  if (address === undefined) throw new Error('address')
  const node = new MemcachedNode(address, { timeoutMs: 500, ttl: 60, log: pino({ level: 'debug' }, logs), ops: { observe () {}, forget () {} } })
  t.teardown(() => node.close())
  const results = await Promise.allSettled(Array.from({ length: 20 }, async (_, i) => await node.gets(`sess:k${i}`)))
  t.equal(results.filter((r) => r.status === 'rejected').length, 20, 'every command failed')
  t.ok(node.down, 'the node is marked down')
  const steps = logs.entries.filter((e) => typeof e.backoffMs === 'number')
  t.same(steps.map((e) => [e.level, e.backoffMs]), [[40, 500]], 'one step, logged once at warn, 500 ms')
})

t.test('on a fake clock: the window ends on time, each failed probe after it doubles the backoff up to 2 s', async (t) => {
  const logs = new LogCapture()
  const address = parseAddress(`127.0.0.1:${await refusedPort()}`)
  if (address === undefined) throw new Error('address')
  const clock = { now: 1000 }
  const node = new MemcachedNode(address, { timeoutMs: 500, ttl: 60, log: pino({ level: 'debug' }, logs), ops: { observe () {}, forget () {} }, now: () => clock.now })
  t.teardown(() => node.close())
  const backoffs: number[] = []
  for (let probe = 0; probe < 5; probe++) {
    await node.gets('sess:k').catch(() => undefined)
    const step = logs.entries.filter((e) => typeof e.backoffMs === 'number').at(-1)?.backoffMs as number
    backoffs.push(step)
    t.ok(node.down, `probe ${probe + 1}: down`)
    clock.now += step - 1
    t.ok(node.down, 'still down 1 ms before the window ends')
    clock.now += 1
    t.notOk(node.down, 'not down once it ends: the next command is the probe')
  }
  t.same(backoffs, [500, 1000, 2000, 2000, 2000], 'doubling, capped at 2 s')
})

t.test('a node whose connection ended keeps probing at the backoff\'s pace until memcached is back: its restart is noticed with no request sent to it', async (t) => {
  const { memcached, port, address } = await embedded(t)
  let recovered = 0
  const node = new MemcachedNode(address, { timeoutMs: 500, ttl: 60, log: pino({ level: 'silent' }), ops: { observe () {}, forget () {} }, onRecovered: () => { recovered++ } })
  t.teardown(() => node.close())
  t.ok(await node.probe(), 'connected')
  // memcached exits and stays away past the first probe (SIGTERM takes memcached ~2 s): that probe is refused.
  await memcached.close()
  await until(() => node.down, 5000, 'the first probe refused and the node marked down')
  await memcached.listen(port)
  await until(() => recovered > 0, 10_000, 'the node noticed as back without any command')
  t.equal(recovered, 1, 'recovered once')
  t.notOk(node.down, 'and no longer marked down')
})

t.test('a node that answers but refuses stores is avoided by writes for a backoff window that reads do not end, and trusted again once it stores', async (t) => {
  const { address } = await embedded(t)
  const logs = new LogCapture()
  const clock = { now: 1000 }
  const node = new MemcachedNode(address, { timeoutMs: 500, ttl: 60, log: pino({ level: 'debug' }, logs), ops: { observe () {}, forget () {} }, now: () => clock.now })
  t.teardown(() => node.close())
  const steps = (): unknown[] => logs.entries.filter((e) => typeof e.backoffMs === 'number').map((e) => [e.level, e.backoffMs])

  const err = node.refused('cas', 'gave up after repeated conflicts')
  t.match(err.message, /memcached 127\.0\.0\.1:\d+ cas: gave up after repeated conflicts/)
  t.ok(node.refusing, 'refusing')
  t.notOk(node.takesWrites, 'writes avoid it')
  t.notOk(node.down, 'it is not down: it answers')
  t.equal(await node.gets('sess:k'), undefined, 'a read is answered')
  t.ok(node.refusing, 'and does not end the window')
  node.refused('cas', 'gave up after repeated conflicts')
  t.same(steps(), [[40, 500]], 'refusals within the window are one step, logged once at warn')
  clock.now += 501
  t.ok(node.takesWrites, 'the window ends on time')
  node.refused('cas', 'gave up after repeated conflicts')
  t.same(steps(), [[40, 500], [20, 1000]], 'a refusal after it doubles the window, at debug')
  t.ok(await node.add('sess:k', 'v'), 'a store it takes...')
  t.ok(node.takesWrites, '...ends the window')
  t.ok(logs.entries.some((e) => e.msg === 'memcached node stores again'), 'and is logged')
  node.refused('cas', 'gave up after repeated conflicts')
  t.same(steps().at(-1), [40, 500], 'the next refusal starts over at 500 ms, at warn')
})
