import type { ChildProcess } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { CLI, ROOT, listeningPorts, sidecarYaml, stopChild, until, waitReady } from '../../harness/index.js'
import type { Children } from './children.js'

export const SECRET = 'bench-secret-0123456789abcdef'

export interface SidecarOptions {
  readonly name: string
  readonly upstream: string
  readonly nodes: readonly string[]
  readonly write?: 'async' | 'sync'
  /** Extra node flags, e.g. --cpu-prof. */
  readonly nodeFlags?: readonly string[]
  /** session.maxBytes (default 8192): larger sessions for the session-size dimension. */
  readonly sessionMaxBytes?: number
  /** cache.maxBytes (default 64 MiB): room for every session of the cached-sessions dimension. */
  readonly cacheMaxBytes?: number
  /** cache.revalidateMs (default 30 s). */
  readonly revalidateMs?: number
}

/**
 * The built CLI (dist/cli.js) in its own process, configured by a YAML file like an
 * operator's, so the load generator never shares its event loop.
 */
export class SidecarChild {
  port = 0
  adminPort = 0
  #child: ChildProcess | undefined
  #output = ''

  constructor (readonly dir: string, readonly options: SidecarOptions) {}

  get url (): string { return `http://127.0.0.1:${this.port}` }
  /** The sidecar's process id (its RSS is read from /proc). */
  get pid (): number | undefined { return this.#child?.pid }
  get adminUrl (): string { return `http://127.0.0.1:${this.adminPort}` }

  async start (children: Children): Promise<this> {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build`)
    const { name, upstream, nodes, write = 'async', nodeFlags = [], sessionMaxBytes, cacheMaxBytes, revalidateMs } = this.options
    const file = join(this.dir, `${name}.yaml`)
    // Port 0: never restarted, so it listens where the kernel says and reports it (the
    // "listening" line, at log level info: request logging is off, so that is a few lines a run).
    writeFileSync(file, sidecarYaml({
      port: 0,
      adminPort: 0,
      upstream,
      // The config's ${VAR} substitution: the sidecar reads BENCH_SECRET from its environment.
      secretEnv: 'BENCH_SECRET',
      nodes,
      write,
      timeoutMs: 250,
      // Stopped once its scenario has run: no load balancer to wait for.
      shutdown: { delayMs: 0, timeoutMs: 5000 },
      logLevel: 'info',
      extra: {
        session: { maxBytes: sessionMaxBytes },
        ...(cacheMaxBytes === undefined && revalidateMs === undefined ? {} : { cache: { maxBytes: cacheMaxBytes, revalidateMs } })
      }
    }))
    const child = children.spawn(`sidecar ${name}`, process.execPath, [...nodeFlags, CLI, '--config', file], {
      cwd: ROOT,
      env: { ...process.env, BENCH_SECRET: SECRET },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    this.#child = child
    const keep = (text: string): void => { this.#output = (this.#output + text).slice(-8000) }
    // Kept: warn and above, as when the sidecar logged at warn (info is on only for the line
    // that says where it listens).
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => { if (!/^\{"level":(10|20|30),/.test(line)) keep(`${line}\n`) })
    child.stderr?.on('data', (c: Buffer) => keep(c.toString()))
    const ready = waitReady(child, `sidecar ${name}`, async () => this.adminPort !== 0 && await fetch(`${this.adminUrl}/readyz`).then((r) => r.status === 200, () => false), 15_000, () => this.#output)
    ready.catch(() => {}) // handled below; marked here so it never counts as unhandled meanwhile
    // A child that exits or never gets ready: waitReady's error, which carries its output.
    const ports = await listeningPorts(child, 15_000).catch(async (err: unknown) => { await ready; throw err })
    this.port = ports.port
    this.adminPort = ports.adminPort
    await ready
    return this
  }

  /** Log lines the sidecar wrote (warn and above), last 8 KB. */
  get output (): string { return this.#output }

  /** Queued or in-flight memcached writes, from /metrics. */
  async pendingWrites (): Promise<number> {
    return (await this.metrics(['sidecar_pending_writes']))[0] ?? 0
  }

  /** Values of unlabelled metrics from /metrics, in the order asked (0 for one not there). */
  async metrics (names: readonly string[]): Promise<number[]> {
    const text = await (await fetch(`${this.adminUrl}/metrics`)).text()
    return names.map((name) => {
      const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text)
      return m === null ? 0 : Number(m[1])
    })
  }

  /** Waits (at most `ms`) until no write is pending, so memcached counters are complete. */
  async flushed (ms = 10_000): Promise<void> {
    await until(async () => await this.pendingWrites() === 0, ms, `sidecar ${this.options.name} to flush its writes`)
  }

  /** Graceful stop (SIGTERM: drain and flush); SIGKILL if it takes longer than 15 s. */
  async stop (): Promise<number | null> {
    if (this.#child === undefined) return null
    return await stopChild(this.#child, 'SIGTERM', 15_000)
  }
}
