import t from 'tap'
import { Browser, q } from '../helpers/client.js'
import { metricValue } from '../helpers/metrics.js'
import { until } from '../../harness/index.js'
import { startStack } from '../helpers/sidecar.js'

// README "Operations": sidecar_memcached_node_up{node} is 1 while the node answers the sidecar's
// commands and 0 from the first command it fails until one succeeds again (the alert
// SessionSidecarMemcachedNodeDown reads it).

const METRIC = 'sidecar_memcached_node_up'

t.test(`${METRIC} goes 0 when a node stops answering and back to 1 when it answers again`, async (t) => {
  const { m, sidecar: start } = await startStack(t)
  const sidecar = await start(t)
  const up = async (): Promise<string | undefined> => {
    const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text()
    return new RegExp(`^${METRIC}\\{node="${m.address.replaceAll('.', '\\.')}"\\} (\\S+)$`, 'm').exec(text)?.[1]
  }
  t.equal(await up(), '1', '1 from the start (a sidecar connects to its nodes before it listens)')
  await new Browser().get(sidecar.url, `/login?set=${q({ user: 'ada' })}`)
  await sidecar.store.flush(2000)
  t.equal(await up(), '1', '1 while it answers')

  await m.stop()
  await new Browser().get(sidecar.url, `/login?set=${q({ user: 'bob' })}`)
  await until(async () => await up() === '0', 5000, `${METRIC} 0`)
  t.pass('0 once a command to it failed')
  t.ok(await metricValue(sidecar.adminUrl, 'sidecar_memcached_op_seconds_count', { node: m.address, result: 'error' }) > 0, 'as its commands\' error count shows')

  await m.start()
  // The kept write is retried (and the node probed) without any request.
  await until(async () => await up() === '1', 10_000, `${METRIC} 1 again`)
  t.pass('1 again once it answers')
  t.equal(await sidecar.store.flush(5000), 0, 'and the kept write went through')
})
