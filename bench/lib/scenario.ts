import type { MemcachedProcess } from '../../test/helpers/memcached.js'
import type { Children } from './children.js'
import type { TransferResult } from './report.js'
import { startScript } from './servers.js'
import { SidecarChild } from './sidecar.js'
import { CookiePool, login } from './sessions.js'

/** What every scenario gets from the runner: shared servers and a scratch folder. */
export interface BenchContext {
  readonly children: Children
  /** Scratch folder for configs (removed at the end). */
  readonly dir: string
  /** The shared app (bench/servers/upstream.ts). */
  readonly upstream: string
  readonly upstreamPid: number | undefined
  readonly memcached: readonly MemcachedProcess[]
  readonly nodes: readonly string[]
  /** Users the session workloads play: one per connection. */
  readonly users: number
  /** Extra node flags for the proxy processes a scenario measures (--profile adds --cpu-prof). */
  readonly nodeFlags: readonly string[]
}

/** A scenario's servers, started and ready for load. */
export interface Running {
  /** Where the load goes, path included. */
  readonly url: string
  readonly cookies?: CookiePool
  /** Or a cookie for every request, from many sessions (the cached-sessions and miss-load dimensions). */
  readonly cookieFor?: () => string
  /**
   * The processes the row measures (the proxy; the sidecars and their balancer; the app in
   * (a) and (g)): their CPU per request is reported beside req/s.
   */
  readonly pids?: ReadonlyArray<number | undefined>
  /** Resolves once work a response left behind (async writes) is done: counters are complete. */
  settle: () => Promise<void>
  stop: () => Promise<void>
}

export interface Scenario {
  /** Stable id in the JSON output. */
  readonly id: string
  /** Its letter in the issue and the table, e.g. "(d)". */
  readonly ref: string
  readonly title: string
  /** Another proxy, for comparison (nginx, a bare Node one): in the load table, under `peers` in the JSON. */
  readonly peer?: boolean
  start: (ctx: BenchContext) => Promise<Running>
}

/**
 * A scenario that moves one large body instead of running a load: it starts its own servers,
 * measures, stops them and returns its row. `progress` appends to the runner's progress line.
 */
export interface TransferScenario {
  readonly id: string
  readonly ref: string
  readonly title: string
  measure: (ctx: BenchContext, progress: (text: string) => void) => Promise<TransferResult>
}

export interface OneSidecarOptions {
  readonly name: string
  /** Where the load goes. */
  readonly path: string
  readonly write?: 'async' | 'sync'
  /** Create `ctx.users` sessions first, one per connection. */
  readonly sessions: boolean
  /** The app's path that creates one (default /login: 1 KB). */
  readonly loginPath?: string
  /** session.maxBytes, when sessions are larger than its default allows. */
  readonly sessionMaxBytes?: number
}

/** One sidecar (built CLI) in front of the shared app; with `users` sessions created first. */
export async function oneSidecar (ctx: BenchContext, options: OneSidecarOptions): Promise<Running> {
  const sidecar = await new SidecarChild(ctx.dir, { name: options.name, upstream: ctx.upstream, nodes: ctx.nodes, write: options.write, nodeFlags: ctx.nodeFlags, sessionMaxBytes: options.sessionMaxBytes }).start(ctx.children)
  try {
    const cookies = options.sessions ? new CookiePool(await login(sidecar.url, ctx.users, options.loginPath)) : undefined
    return {
      url: sidecar.url + options.path,
      cookies,
      pids: [sidecar.pid],
      settle: async () => { await sidecar.flushed() },
      stop: async () => { await sidecar.stop() }
    }
  } catch (err) {
    await sidecar.stop()
    throw err
  }
}

/** A proxy of bench/servers/ in front of the shared app, no sessions: load goes to its `/`. */
export function proxyScript (script: 'bare-proxy' | 'minimal-proxy'): (ctx: BenchContext) => Promise<Running> {
  return async (ctx) => {
    const proxy = await startScript(ctx.children, script, [ctx.upstream], ctx.nodeFlags)
    return { url: `${proxy.url}/`, pids: [proxy.pid], settle: async () => {}, stop: proxy.stop }
  }
}
