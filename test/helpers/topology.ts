import { MemcachedProcess, type Stats } from './memcached.js'
import { TestApp } from './upstream.js'
import { HAProxyProcess, NginxProcess, SidecarProcess, scratch, type SidecarOptions } from './processes.js'

export interface Topology {
  readonly memcached: MemcachedProcess[]
  readonly apps: TestApp[]
  readonly sidecars: SidecarProcess[]
  readonly lb: HAProxyProcess | NginxProcess
  /** Sum of a memcached counter over every node. */
  count: (stat: keyof Stats) => Promise<number>
  close: () => Promise<void>
}

/**
 * The production shape on loopback: memcached nodes, app instances each with its own sidecar
 * (the built CLI), and a real load balancer in front.
 */
export async function startTopology (options: {
  memcached: number
  apps: number
  lb: 'haproxy' | 'nginx'
  sidecar?: Partial<SidecarOptions>
}): Promise<Topology> {
  const { dir, cleanup } = scratch()
  const memcached = await Promise.all(Array.from({ length: options.memcached }, async () => await MemcachedProcess.start()))
  const apps = await Promise.all(Array.from({ length: options.apps }, async () => await new TestApp().start()))
  const nodes = memcached.map((m) => m.address)
  const sidecars = await Promise.all(apps.map(async (app, i) =>
    await new SidecarProcess(dir, `sidecar-${i}`, { upstream: app.url, nodes, ...options.sidecar }).start()))
  const lb = options.lb === 'haproxy' ? await new HAProxyProcess(dir, sidecars).start() : await new NginxProcess(dir, sidecars).start()
  return {
    memcached,
    apps,
    sidecars,
    lb,
    count: async (stat) => {
      let sum = 0
      for (const m of memcached) if (await m.ping()) sum += (await m.stats())[stat] ?? 0
      return sum
    },
    close: async () => {
      await lb.kill('SIGKILL')
      for (const s of sidecars) await s.kill('SIGKILL')
      for (const a of apps) await a.close()
      for (const m of memcached) await m.stop()
      cleanup()
    }
  }
}
