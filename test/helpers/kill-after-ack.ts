import type { Test } from 'tap'
import { Browser } from './client.js'
import { startTopology, type Topology } from './topology.js'

/**
 * Two sidecars behind HAProxy; `trials` times, a session is set and changed on sidecar A, A is
 * killed (-9) the instant the change's response arrives, and sidecar B is asked for it.
 * Returns the topology (A restarted) and how many acknowledged changes B did not see.
 * (One write mode per test file: the 15 restarts of each take most of tap's per-file timeout.)
 */
export async function killAfterEachAck (t: Test, write: 'sync' | 'async', trials: number): Promise<{ topo: Topology, lost: number }> {
  const topo = await startTopology({ memcached: 2, apps: 2, lb: 'haproxy', sidecar: { write } })
  t.teardown(() => topo.close())
  const [a, b] = topo.sidecars
  if (a === undefined || b === undefined) throw new Error('two sidecars expected')
  let lost = 0
  for (let i = 0; i < trials; i++) {
    const browser = new Browser()
    await browser.get(a.url, '/?set={"n":0}')
    await browser.get(a.url, '/?merge={"n":1}')
    // The response is in: kill the node at once, before anything else can happen.
    await a.kill('SIGKILL')
    const seen = (await browser.get(b.url, '/')).body.session
    if (seen?.n !== 1) lost++
    await a.start()
  }
  return { topo, lost }
}
