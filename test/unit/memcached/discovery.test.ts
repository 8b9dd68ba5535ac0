import t from 'tap'
import { pino } from 'pino'
import { DnsDiscovery, type Resolver } from '../../../src/memcached/discovery.js'
import { LogCapture } from '../../helpers/sidecar.js'
import { within } from '../../../harness/index.js'

function fail (code: string): never {
  const err = new Error(code) as NodeJS.ErrnoException
  err.code = code
  throw err
}

function discovery (resolver: Resolver, log = new LogCapture()): { d: DnsDiscovery, changes: string[][], log: LogCapture } {
  const changes: string[][] = []
  const d = new DnsDiscovery({ target: 'cache.test.internal:11211', intervalMs: 60_000, log: pino({ level: 'info' }, log), onChange: (a) => changes.push(a), resolver })
  return { d, changes, log }
}

t.test('A records become sorted ip:port nodes; an unchanged answer is not a change', async (t) => {
  const { d, changes } = discovery({ resolve4: async () => ['10.0.0.7', '10.0.0.5', '10.0.0.7'], resolve6: async () => fail('ENODATA') })
  await d.refresh()
  await d.refresh()
  t.same(changes, [['10.0.0.5:11211', '10.0.0.7:11211']])
})

t.test('AAAA records become [ipv6]:port nodes in their canonical spelling, beside the A records', async (t) => {
  const { d, changes } = discovery({ resolve4: async () => ['10.0.0.5'], resolve6: async () => ['FD00:0:0::5'] })
  await d.refresh()
  t.same(changes, [['10.0.0.5:11211', '[fd00::5]:11211']])
})

t.test('no records, or a failing resolver, keep the last known nodes', async (t) => {
  let mode: 'ok' | 'none' | 'fail' = 'ok'
  const { d, changes, log } = discovery({
    resolve4: async () => mode === 'ok' ? ['10.0.0.5'] : mode === 'none' ? fail('ENOTFOUND') : fail('ETIMEOUT'),
    resolve6: async () => mode === 'fail' ? fail('ESERVFAIL') : fail('ENODATA')
  })
  await d.refresh()
  mode = 'none'
  await d.refresh()
  mode = 'fail'
  await d.refresh()
  t.same(changes, [['10.0.0.5:11211']], 'never an empty placement')
  t.ok(log.entries.some((e) => e.msg === 'memcached discovery found no address; keeping the last known nodes'))
  t.ok(log.entries.some((e) => e.code === 'ETIMEOUT' && e.type === 'A'))
})

t.test('start resolves at once and then on the interval until stop', async (t) => {
  let lookups = 0
  const changes: string[][] = []
  // The third lookup is an event the test waits for (with a deadline), not a state it polls.
  let third: () => void = () => {}
  const thirdLookup = new Promise<void>((resolve) => { third = resolve })
  const d = new DnsDiscovery({
    target: 'cache.test.internal:11211',
    intervalMs: 20,
    log: pino({ level: 'silent' }),
    onChange: (a) => changes.push(a),
    resolver: { resolve4: async () => { if (++lookups === 3) third(); return [`10.0.0.${lookups}`] }, resolve6: async () => [] }
  })
  await d.start()
  t.equal(lookups, 1, 'the first lookup happens before start resolves')
  await within(thirdLookup, 5000, 'the third lookup')
  d.stop()
  const stoppedAt = lookups
  await new Promise((resolve) => setTimeout(resolve, 80))
  t.ok(lookups <= stoppedAt + 1, 'no lookups after stop (one may have been in flight)')
  t.ok(changes.length >= 3)
})
