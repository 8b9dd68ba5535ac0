import t from 'tap'
import { Browser } from '../helpers/client.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { TestApp } from '../helpers/upstream.js'
import { LogCapture, startTestSidecar, testConfig } from '../helpers/sidecar.js'
import { SilentServer } from '../helpers/tcp.js'

// Issue 3, scenario 7: memcached nodes that accept connections and never answer, or answer
// garbage. No request may wait longer than memcached.timeoutMs on them.
for (const kind of ['silent', 'garbage'] as const) {
  t.test(`a ${kind} memcached node: bounded waits, marked down with backoff, a clear log line`, async (t) => {
    const bad = await new SilentServer(kind === 'garbage' ? 'VALUE sess:x 0 99999999999\r\nEND\r\n' : undefined).start()
    t.teardown(() => bad.close())
    const good = await MemcachedProcess.start()
    t.teardown(() => good.stop())
    const app = await new TestApp().start()
    t.teardown(() => app.close())
    const timeoutMs = 150
    const log = new LogCapture()
    // The bad node is the only configured one, and the backup of every session is the good one.
    const sidecar = await startTestSidecar(testConfig(app.url, [bad.address, good.address], {
      memcached: { timeoutMs, write: 'sync' },
      shutdown: { timeoutMs: 300 },
      log: { level: 'warn' }
    }), { destination: log })
    t.teardown(() => sidecar.close())

    // Whether a request waited on the bad node is an ordering, not a stopwatch reading: the bad
    // node never finishes an answer (silent: none; garbage: a 99 GB value that never comes), so
    // every request answered while it is still asked proves no request waited for it; what ended
    // each wait is the sidecar's timer of memcached.timeoutMs (its log line below says so). The
    // latencies are reported, not asserted: a loaded machine stretches them.
    const latencies: number[] = []
    let failed = 0
    for (let i = 0; i < 40; i++) {
      const browser = new Browser()
      const started = performance.now()
      const res = await browser.get(sidecar.url, `/?set={"i":${i}}`)
      const next = await browser.get(sidecar.url, '/')
      latencies.push(performance.now() - started)
      if (res.status !== 200 || next.body.session?.i !== i) failed++
    }
    latencies.sort((x, y) => x - y)
    t.equal(failed, 0, 'every request succeeded and kept its session')
    t.ok(bad.received > 0, 'the bad node was asked, and every create+read pair was answered without its answer: no request waited for it')
    t.comment(`create+read pairs against a ${kind} node with memcached.timeoutMs ${timeoutMs}: p50 ${latencies[20]?.toFixed(1)} ms, max ${latencies[latencies.length - 1]?.toFixed(1)} ms over 40`)
    const downs = log.entries.filter((e) => e.code === 'SIDECAR_ERR_MEMCACHED_UNAVAILABLE' && e.node === bad.address && typeof e.backoffMs === 'number')
    t.ok(downs.length >= 1, 'a log line names the node, the error code and the backoff')
    t.ok(downs.length <= 10, `backoff keeps the node from being retried on every request (${downs.length} failures logged for 80 requests)`)
    t.match(String(downs[0]?.msg), kind === 'silent' ? /timed out after 150 ms/ : /unparseable reply|timed out/)
    const timeouts = downs.filter((e) => /timed out/.test(String(e.msg)))
    t.ok(timeouts.every((e) => /timed out after 150 ms/.test(String(e.msg))), `every wait on the node that timed out was cut at memcached.timeoutMs (${timeouts.length} of ${downs.length})`)
  })
}
