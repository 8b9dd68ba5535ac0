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
  /** HAProxy's check timing per server (HAProxyProcess's default: every 100 ms, out after 1 failure). */
  haproxyCheck?: string
}): Promise<Topology> {
  const { dir, cleanup } = scratch()
  const memcached: MemcachedProcess[] = []
  const apps: TestApp[] = []
  const sidecars: SidecarProcess[] = []
  let lb: HAProxyProcess | NginxProcess | undefined
  const stopAll = async (): Promise<void> => {
    await lb?.kill('SIGKILL')
    for (const s of sidecars) await s.kill('SIGKILL')
    for (const a of apps) await a.close()
    for (const m of memcached) await m.stop()
    cleanup()
  }
  try {
    // Started one by one and recorded as they come, so a failed start leaks nothing.
    for (let i = 0; i < options.memcached; i++) memcached.push(await MemcachedProcess.start())
    for (let i = 0; i < options.apps; i++) apps.push(await new TestApp().start())
    const nodes = memcached.map((m) => m.address)
    for (const [i, app] of apps.entries()) {
      const sidecar = new SidecarProcess(dir, `sidecar-${i}`, { upstream: app.url, nodes, ...options.sidecar })
      sidecars.push(sidecar)
      await sidecar.start()
    }
    lb = options.lb === 'haproxy' ? new HAProxyProcess(dir, sidecars, options.haproxyCheck) : new NginxProcess(dir, sidecars)
    await lb.start()
  } catch (err) {
    await stopAll()
    throw err
  }
  const started = lb
  return {
    memcached,
    apps,
    sidecars,
    lb: started,
    count: async (stat) => {
      let sum = 0
      for (const m of memcached) if (await m.ping()) sum += (await m.stats())[stat] ?? 0
      return sum
    },
    close: stopAll
  }
}
