import type { Scenario } from '../lib/scenario.js'
import { CookiePool, login } from '../lib/sessions.js'
import { SidecarChild } from '../lib/sidecar.js'
import { startBalancer } from '../lib/servers.js'

/**
 * (f) Two sidecars (one app, shared) behind a round-robin balancer, 1 KB session hits: each
 * sidecar loads each session from memcached once, then serves it locally.
 */
export default {
  id: 'round-robin-hit',
  ref: '(f)',
  title: '2 sidecars behind round-robin balancer, 1 KB session hit',
  start: async (ctx) => {
    const sidecars: SidecarChild[] = []
    const stop = async (): Promise<void> => { await Promise.all(sidecars.map(async (s) => await s.stop())) }
    try {
      for (const name of ['rr-1', 'rr-2']) {
        sidecars.push(await new SidecarChild(ctx.dir, { name, upstream: ctx.upstream, nodes: ctx.nodes, nodeFlags: ctx.nodeFlags }).start(ctx.children))
      }
      const balancer = await startBalancer(ctx.children, ctx.dir, sidecars.map((s) => s.url))
      process.stderr.write(` ${balancer.kind},`)
      const cookies = new CookiePool(await login(balancer.url, ctx.users))
      return {
        url: `${balancer.url}/`,
        cookies,
        pids: [...sidecars.map((s) => s.pid), balancer.pid],
        settle: async () => { await Promise.all(sidecars.map(async (s) => { await s.flushed() })) },
        stop: async () => {
          await balancer.stop()
          await stop()
        }
      }
    } catch (err) {
      await stop()
      throw err
    }
  }
} satisfies Scenario
