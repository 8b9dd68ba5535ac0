import { MemcachedProcess } from '../../test/helpers/memcached.js'
import { metricValue } from '../../test/helpers/metrics.js'
import { HAProxyProcess, SidecarProcess, scratch } from '../../test/helpers/processes.js'
import { TestApp } from '../../test/helpers/upstream.js'
import type { FaultRecord } from './history.js'
import { PortReservation } from './ports.js'
import type { PlannedFault } from './schedule.js'

export interface ClusterOptions {
  readonly memcached: number
  readonly sidecars: number
  /** Added together mid-run: the new sidecars alone are configured with the new nodes (and the old ones). */
  readonly spare: { readonly memcached: number, readonly sidecars: number }
  readonly write: 'async' | 'sync'
  readonly revalidateMs: number
  /** The sidecars' log.level: debug keeps the session trace of every read and write in the report. */
  readonly logLevel?: string
}

export interface MemcachedSlot {
  readonly slot: number
  readonly name: string
  readonly address: string
  readonly port: number
  process: MemcachedProcess | undefined
  frozen: boolean
}

export interface SidecarSlot {
  readonly slot: number
  readonly name: string
  readonly process: SidecarProcess
  readonly app: TestApp
  started: boolean
}

/** The product's own counters, summed over every sidecar process (last scrape of each). */
export const COUNTERS = {
  'stale reads': ['sidecar_stale_reads_total', {}],
  'copies restored': ['sidecar_restored_copies_total', {}],
  relocations: ['sidecar_relocations_total', {}],
  failovers: ['sidecar_failovers_total', {}],
  'writes that reached no node': ['sidecar_write_failures_total', {}],
  'writes dropped': ['sidecar_dropped_writes_total', {}],
  'updates refused': ['sidecar_refused_updates_total', {}],
  'degraded requests': ['sidecar_requests_total', { outcome: 'degraded' }]
} as const satisfies Record<string, readonly [string, Record<string, string>]>
export type CounterName = keyof typeof COUNTERS

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/**
 * 3 memcached nodes, 3 app+sidecar pairs (the built CLI), HAProxy round-robin in front, on
 * 127.0.0.1; spare nodes and sidecars started by scaleOut (HAProxy has their slots from the
 * start: down until they answer /readyz). Every process is killed by `close`, and by an exit
 * hook if the run dies first.
 */
export class ChaosCluster {
  readonly memcached: MemcachedSlot[] = []
  readonly sidecars: SidecarSlot[] = []
  /** rid -> sidecar slot whose app received that request. */
  readonly served = new Map<string, number>()
  readonly #counters = new Map<string, Record<CounterName, number>>()
  readonly #ports = new PortReservation()
  readonly #scratch = scratch()
  readonly #options: ClusterOptions
  readonly #exitHook = (): void => { this.#killAllNow() }
  #lb: HAProxyProcess | undefined
  #scaled: Promise<void> | undefined

  private constructor (options: ClusterOptions) {
    this.#options = options
    process.once('exit', this.#exitHook)
  }

  static async start (options: ClusterOptions): Promise<ChaosCluster> {
    const cluster = new ChaosCluster(options)
    try {
      await cluster.#start()
    } catch (err) {
      await cluster.close()
      throw err
    }
    return cluster
  }

  get lbUrl (): string {
    if (this.#lb === undefined) throw new Error('the load balancer is not running')
    return this.#lb.url
  }

  /** Sidecars running now (for direct reads). */
  get running (): SidecarSlot[] {
    return this.sidecars.filter((s) => s.started && s.process.running)
  }

  async #start (): Promise<void> {
    const { memcached, sidecars, spare, write, revalidateMs, logLevel } = this.#options
    for (let i = 0; i < memcached + spare.memcached; i++) {
      const port = await this.#ports.take()
      this.memcached.push({ slot: i, name: `memcached-${i}`, address: `127.0.0.1:${port}`, port, process: undefined, frozen: false })
    }
    const base = this.memcached.slice(0, memcached).map((m) => m.address)
    const all = this.memcached.map((m) => m.address)
    for (let i = 0; i < sidecars + spare.sidecars; i++) {
      const app = await new TestApp().start()
      const name = `sidecar-${i}`
      const proc = new SidecarProcess(this.#scratch.dir, name, { upstream: app.url, nodes: i < sidecars ? base : all, write, revalidateMs, logLevel })
      proc.port = await this.#ports.take()
      proc.adminPort = await this.#ports.take()
      this.sidecars.push({ slot: i, name, process: proc, app, started: false })
    }
    for (const m of this.memcached.slice(0, memcached)) m.process = await MemcachedProcess.start('127.0.0.1', m.port)
    for (const s of this.sidecars.slice(0, sidecars)) await this.#startSidecar(s)
    this.#lb = new HAProxyProcess(this.#scratch.dir, this.sidecars.map((s) => s.process))
    await this.#lb.start()
  }

  async #startSidecar (s: SidecarSlot): Promise<void> {
    // A restart can meet its old port still closing under load: a few tries.
    for (let attempt = 1; ; attempt++) {
      try {
        await s.process.start()
        s.started = true
        return
      } catch (err) {
        if (attempt >= 3) throw err
        await sleep(200)
      }
    }
  }

  /** Adds the spare memcached nodes and the sidecars that alone know them. */
  async scaleOut (): Promise<void> {
    this.#scaled ??= (async () => {
      for (const m of this.memcached.filter((x) => x.process === undefined)) m.process = await MemcachedProcess.start('127.0.0.1', m.port)
      for (const s of this.sidecars.filter((x) => !x.started)) await this.#startSidecar(s)
    })()
    await this.#scaled
  }

  /** Runs one fault to its end (restart, SIGCONT); `now` is the run's clock. */
  async inject (f: PlannedFault, now: () => number): Promise<FaultRecord> {
    const sidecar = f.kind === 'sidecar-kill' || f.kind === 'sidecar-term'
    if (f.kind !== 'scale-out' && (sidecar ? this.sidecars[f.target]?.started !== true : this.memcached[f.target]?.process === undefined)) await this.scaleOut()
    const m = this.memcached[f.target]
    const s = this.sidecars[f.target]
    const target = f.kind === 'scale-out' ? 'scale-out' : sidecar ? s?.name : m?.name
    if (target === undefined) throw new Error(`fault #${f.index}: no slot ${f.target}`)
    const record: FaultRecord = { index: f.index, kind: f.kind, target, slot: f.target, address: sidecar || f.kind === 'scale-out' ? undefined : m?.address, plannedAt: f.at, at: now(), lostAt: 0, healedAt: 0, holdMs: f.holdMs }
    try {
      switch (f.kind) {
        case 'scale-out':
          await this.scaleOut()
          break
        case 'sidecar-kill':
        case 'sidecar-term': {
          const slot = s as SidecarSlot
          record.at = now()
          await slot.process.kill(f.kind === 'sidecar-kill' ? 'SIGKILL' : 'SIGTERM')
          record.lostAt = now()
          await sleep(f.holdMs)
          await this.#startSidecar(slot)
          break
        }
        case 'memcached-kill':
        case 'memcached-restart-empty': {
          const node = (m as MemcachedSlot).process as MemcachedProcess
          record.at = now()
          await node.stop()
          record.lostAt = now()
          await sleep(f.holdMs)
          await node.start()
          break
        }
        case 'memcached-stop': {
          const slot = m as MemcachedSlot
          record.at = now()
          process.kill(slot.process?.pid as number, 'SIGSTOP')
          slot.frozen = true
          record.lostAt = now()
          await sleep(f.holdMs)
          process.kill(slot.process?.pid as number, 'SIGCONT')
          slot.frozen = false
          break
        }
      }
    } catch (err) {
      record.error = (err as Error).message.slice(0, 300)
    }
    if (record.lostAt === 0) record.lostAt = record.at
    record.healedAt = now()
    return record
  }

  /** Everything back: frozen nodes continued, stopped nodes and sidecars started. */
  async healAll (): Promise<string[]> {
    const problems: string[] = []
    for (const m of this.memcached) {
      if (m.process === undefined) continue
      if (m.frozen) {
        process.kill(m.process.pid as number, 'SIGCONT')
        m.frozen = false
      }
      if (!(await m.process.ping())) await m.process.start().catch((err: Error) => problems.push(`${m.name}: ${err.message}`))
    }
    for (const s of this.sidecars) {
      if (s.started && !s.process.running) await this.#startSidecar(s).catch((err: Error) => problems.push(`${s.name}: ${err.message}`))
    }
    return problems
  }

  /** Which sidecar passed each request on, from the apps' logs (then emptied: runs are long). */
  harvest (): void {
    for (const s of this.sidecars) {
      for (const seen of s.app.seen) {
        const rid = /[?&]rid=([^&]+)/.exec(seen.url)?.[1]
        if (rid !== undefined) this.served.set(rid, s.slot)
      }
      s.app.seen.length = 0
    }
  }

  /** Reads the product's counters of every running sidecar (a killed one keeps its last reading). */
  async scrape (): Promise<void> {
    await Promise.all(this.running.map(async (s) => {
      const values = {} as Record<CounterName, number>
      try {
        for (const [name, [metric, labels]] of Object.entries(COUNTERS) as Array<[CounterName, readonly [string, Record<string, string>]]>) {
          values[name] = await metricValue(s.process.adminUrl, metric, labels)
        }
        this.#counters.set(`${s.slot}:${String(s.process.pid)}`, values)
      } catch {
        // Killed meanwhile: its previous reading stands.
      }
    }))
  }

  counters (): Record<CounterName, number> {
    const sum = Object.fromEntries(Object.keys(COUNTERS).map((k) => [k, 0])) as Record<CounterName, number>
    for (const values of this.#counters.values()) for (const k of Object.keys(sum) as CounterName[]) sum[k] += values[k] ?? 0
    return sum
  }

  /** Waits until no sidecar has a pending write; returns those that still had some. */
  async flushed (): Promise<string[]> {
    const stuck: string[] = []
    for (const s of this.running) await s.process.flushed().catch(() => stuck.push(s.name))
    return stuck
  }

  /** Each sidecar's log (warnings and errors), for reports. */
  logs (): Array<{ name: string, output: string }> {
    return this.sidecars.filter((s) => s.started).map((s) => ({ name: s.name, output: s.process.output }))
  }

  async close (): Promise<void> {
    const attempt = async (work: () => Promise<unknown>): Promise<void> => { await work().catch(() => undefined) }
    for (const m of this.memcached) {
      if (m.frozen && m.process?.pid !== undefined) await attempt(async () => process.kill(m.process?.pid as number, 'SIGCONT'))
    }
    await attempt(async () => await this.#lb?.kill('SIGKILL'))
    for (const s of this.sidecars) await attempt(async () => await s.process.kill('SIGKILL'))
    for (const s of this.sidecars) await attempt(async () => { await s.app.close() })
    for (const m of this.memcached) await attempt(async () => { await m.process?.stop() })
    this.#scratch.cleanup()
    this.#ports.release()
    process.off('exit', this.#exitHook)
  }

  /** Last resort when the process exits without close(): synchronous kills by pid. */
  #killAllNow (): void {
    const pids = [this.#lb?.pid, ...this.sidecars.map((s) => s.process.running ? s.process.pid : undefined), ...this.memcached.map((m) => m.process?.pid)]
    for (const pid of pids) {
      if (pid === undefined) continue
      try {
        process.kill(pid, 'SIGKILL')
      } catch {}
    }
    this.#ports.release()
  }
}
