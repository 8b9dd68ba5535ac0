import t from 'tap'
import { Browser } from '../helpers/client.js'
import { startStack } from '../helpers/sidecar.js'

t.test('/metrics reports requests by outcome, the cache, memcached commands and the failure counters', async (t) => {
  const stack = await startStack(t)
  const a = await stack.sidecar(t)
  const b = await stack.sidecar(t)
  const browser = new Browser()
  await browser.get(a.url, '/') // none
  await browser.get(a.url, '/?set={"n":1}') // new
  await browser.get(a.url, '/') // hit
  await a.store.flush(2000)
  await browser.get(b.url, '/') // miss-loaded on B
  await browser.get(a.url, '/app.js') // ignored
  const forged = new Browser()
  forged.cookies.set('sid', '1~AAAAAAAAAAAAAAAAAAAAAA~127.0.0.1:1~1~AAAAAAAAAAAAAAAAAAAAAA')
  await forged.get(a.url, '/')
  await browser.get(a.url, '/?rawSet=!!!')

  const text = await (await fetch(`${a.adminUrl}/metrics`)).text()
  const value = (series: string): number => Number(new RegExp(`^${series.replace(/[{}"=,]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
  t.equal(value('sidecar_requests_total{outcome="none"}'), 2, 'none: no cookie, and the forged one')
  t.equal(value('sidecar_requests_total{outcome="new"}'), 1)
  t.ok(value('sidecar_requests_total{outcome="hit"}') >= 2)
  t.equal(value('sidecar_requests_total{outcome="ignored"}'), 1)
  t.equal(value('sidecar_forged_cookies_total'), 1)
  t.equal(value('sidecar_refused_updates_total{reason="invalid-base64"}'), 1)
  t.equal(value('sidecar_cached_sessions'), 1)
  t.ok(value('sidecar_cached_bytes') > 0)
  t.equal(value('sidecar_pending_writes'), 0)
  t.match(text, new RegExp(`sidecar_memcached_op_seconds_bucket\\{le="0.005",node="${stack.m.address}",command="add",result="ok"\\}`), 'memcached latency histogram by node, command and result')
  for (const name of ['sidecar_failovers_total', 'sidecar_relocations_total', 'sidecar_stale_reads_total', 'sidecar_write_failures_total']) t.match(text, new RegExp(`^${name} `, 'm'), name)

  const onB = await (await fetch(`${b.adminUrl}/metrics`)).text()
  t.match(onB, /^sidecar_requests_total\{outcome="miss-loaded"\} 1$/m, 'B loaded it from memcached')
})
