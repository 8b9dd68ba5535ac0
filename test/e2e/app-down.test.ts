import t from 'tap'
import { freePort, until } from '../../harness/index.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { HAProxyProcess, SidecarProcess, scratch } from '../helpers/processes.js'
import { TestApp } from '../helpers/upstream.js'

// README, Operations: /readyz answers 503 while the sidecar's app refuses connections (crashed,
// redeploying), so HAProxy (deploy/haproxy/haproxy.cfg checks /readyz) stops sending that
// instance its share of the traffic, which its sidecar could only answer 502. An adversarial
// helper saw every other request answered 502 with one app down.

t.test('one app down behind HAProxy: its sidecar turns unready at its first refused request, the traffic goes to the other instance, and it comes back with its app', async (t) => {
  const { dir, cleanup } = scratch()
  t.teardown(cleanup)
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const up = await new TestApp().start()
  t.teardown(() => up.close())
  const downPort = await freePort()
  const sidecars = [
    new SidecarProcess(dir, 'with-app', { upstream: up.url, nodes: [m.address] }),
    new SidecarProcess(dir, 'app-down', { upstream: `http://127.0.0.1:${downPort}`, nodes: [m.address] })
  ]
  t.teardown(async () => { for (const s of sidecars) await s.kill('SIGKILL') })
  for (const s of sidecars) await s.start()
  const down = sidecars[1] as SidecarProcess
  const lb = await new HAProxyProcess(dir, sidecars).start()
  t.teardown(() => lb.kill('SIGKILL'))
  const readyz = async (): Promise<[number, string]> => {
    const res = await fetch(`${down.adminUrl}/readyz`)
    return [res.status, await res.text()]
  }

  t.same(await readyz(), [200, 'ready\n'], 'ready at start: nothing has shown the app down yet')
  t.equal((await fetch(`${down.url}/`)).status, 502, 'a request to the sidecar whose app is down: 502')
  t.same(await readyz(), [503, 'app unreachable\n'], 'and at once its /readyz answers 503')

  // HAProxy checks every 100 ms here: once it has seen the 503, every request goes to the other instance.
  await until(async () => {
    const statuses = await Promise.all(Array.from({ length: 10 }, async () => (await fetch(`${lb.url}/`)).status))
    return statuses.every((s) => s === 200)
  }, 10_000, '10 requests in a row through HAProxy answered 200')
  const after = []
  for (let i = 0; i < 20; i++) after.push((await fetch(`${lb.url}/`)).status)
  t.same(after, Array(20).fill(200), 'then 20 more: none answered 502')

  const back = await new TestApp().start(downPort)
  t.teardown(() => back.close())
  await until(async () => (await readyz())[0] === 200, 5000, 'the sidecar ready again once its app accepts connections')
  t.equal((await fetch(`${down.url}/`)).status, 200, 'and it serves again')
})
