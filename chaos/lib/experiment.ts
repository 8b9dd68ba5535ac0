import { check, type Finding, type Notes } from './checks.js'
import { ChaosCluster, type CounterName } from './cluster.js'
import type { Exchange, FaultRecord, SessionLife } from './history.js'
import { Rng } from './prng.js'
import { FAULT_LABELS, planSchedule, type PlannedFault, type Schedule } from './schedule.js'
import { Recorder, SimulatedUser } from './users.js'

export interface ChaosOptions {
  readonly seed: number
  /** How long faults are planned for; the run adds start-up, healing and the final reads. */
  readonly durationMs: number
  readonly write: 'async' | 'sync'
  /** cache.revalidateMs of every sidecar: the guarantee's time unit. */
  readonly revalidateMs: number
  /** Let faults overlap (beyond the guarantee); off: one at a time, revalidateMs apart. */
  readonly overlap: boolean
  readonly users: number
  /** write: async: an update lost when its sidecar was killed this long after answering is excused (counted apart). */
  readonly asyncWindowMs: number
  /** Add 2 memcached nodes and 2 sidecars (which alone list them) at 40% of the run. */
  readonly scaleOut: boolean
  readonly maxEvents?: number
  readonly thinkMs?: readonly [number, number]
  /** One line per fault as it runs, and per phase. */
  readonly progress?: (line: string) => void
  /** The sidecars' log.level (default warn): debug puts the session trace in the report's logs. */
  readonly logLevel?: string
}

export interface ChaosResult {
  readonly options: ChaosOptions
  readonly schedule: Schedule
  readonly faults: readonly FaultRecord[]
  /** Planned faults not run: the fault phase hit its time cap (1.5 x duration + 10 s). */
  readonly skipped: number
  readonly exchanges: readonly Exchange[]
  readonly sessions: readonly SessionLife[]
  readonly findings: readonly Finding[]
  readonly notes: Notes
  readonly counters: Record<CounterName, number>
  readonly topology: { readonly memcached: readonly [number, number], readonly sidecars: readonly [number, number] }
  /** Healing or flushing that did not work out (a sidecar that would not restart, writes still pending). */
  readonly problems: readonly string[]
  readonly faultPhaseMs: number
  readonly elapsedMs: number
  /** Date.now() when the users started: run time 0 (the sidecars' logs use wall-clock ms). */
  readonly wallT0: number
  readonly logs: ReadonlyArray<{ name: string, output: string }>
}

const BASE = { memcached: 3, sidecars: 3 }
const SPARE = { memcached: 2, sidecars: 2 }
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Node truncates timer delays to whole ms: loop so a fault never starts before its time. */
async function sleepUntil (target: number, now: () => number): Promise<void> {
  while (now() < target) await sleep(Math.ceil(target - now()))
}

/**
 * One run: start the cluster, let the users work while the schedule's faults run, heal
 * everything, let writes flush and revalidateMs pass, read every session back, check.
 */
export async function runChaos (options: ChaosOptions): Promise<ChaosResult> {
  const started = performance.now()
  const R = options.revalidateMs
  const schedule = planSchedule({
    seed: options.seed,
    durationMs: options.durationMs,
    revalidateMs: R,
    overlap: options.overlap,
    sidecars: BASE.sidecars,
    memcached: BASE.memcached,
    scaleOut: options.scaleOut ? { at: 0.4, ...SPARE } : undefined,
    maxEvents: options.maxEvents ?? Math.ceil(options.durationMs / 250)
  })
  const progress = options.progress ?? (() => undefined)
  const spare = options.scaleOut ? SPARE : { memcached: 0, sidecars: 0 }
  const cluster = await ChaosCluster.start({ ...BASE, spare, write: options.write, revalidateMs: R, logLevel: options.logLevel })
  const timers: NodeJS.Timeout[] = []
  try {
    const recorder = new Recorder()
    const root = new Rng(options.seed).fork(2)
    const users = Array.from({ length: options.users }, (_, i) => new SimulatedUser(i, root.fork(100 + i), recorder, {
      lb: cluster.lbUrl,
      revalidateMs: R,
      thinkMs: options.thinkMs ?? [5, 25],
      itemsPerSession: [20, 120],
      logoutChance: 0.5,
      replayChance: 0.03,
      requestTimeoutMs: 15_000
    }))
    let stopping = false
    const working = users.map(async (u) => await u.run(() => stopping))
    timers.push(setInterval(() => cluster.harvest(), 1000))
    let scraping: Promise<void> = Promise.resolve()
    timers.push(setInterval(() => { scraping = scraping.then(async () => await cluster.scrape()) }, 2000))
    const { faults, skipped } = await runSchedule(schedule, async (f, now) => await cluster.inject(f, now), () => recorder.now(), options, progress)
    const faultPhaseMs = recorder.now()
    progress(`${(faultPhaseMs / 1000).toFixed(1)} s: faults done (${faults.length} run, ${skipped} skipped); healing`)
    const problems = await cluster.healAll()
    // The users go on for a while with everything healed, then stop; writes drain; then
    // revalidateMs passes so every sidecar has checked what it holds against memcached.
    await sleep(R)
    stopping = true
    await Promise.all(working)
    for (const name of await cluster.flushed()) problems.push(`${name}: writes still pending after 5 s`)
    await sleep(R + 250)
    await scraping
    await cluster.scrape()
    progress(`${(recorder.now() / 1000).toFixed(1)} s: final reads`)
    const direct = cluster.running.map((s) => ({ slot: s.slot, url: s.process.url }))
    await Promise.all(users.map(async (u) => await u.finalReads(direct)))
    cluster.harvest()
    for (const e of recorder.exchanges) e.servedBy = cluster.served.get(e.rid)
    const { findings, notes } = check({ exchanges: recorder.exchanges, sessions: recorder.sessions, faults }, { revalidateMs: R, write: options.write, asyncWindowMs: options.asyncWindowMs })
    const scaled = faults.some((f) => f.kind === 'scale-out' && f.error === undefined)
    return {
      options,
      schedule,
      faults,
      skipped,
      exchanges: recorder.exchanges,
      sessions: recorder.sessions,
      findings,
      notes,
      counters: cluster.counters(),
      topology: {
        memcached: [BASE.memcached, BASE.memcached + (scaled ? spare.memcached : 0)],
        sidecars: [BASE.sidecars, BASE.sidecars + (scaled ? spare.sidecars : 0)]
      },
      problems,
      faultPhaseMs,
      elapsedMs: performance.now() - started,
      wallT0: recorder.wallT0,
      logs: cluster.logs()
    }
  } finally {
    for (const timer of timers) clearInterval(timer)
    await cluster.close()
  }
}

/**
 * Runs the planned faults. One at a time: each starts at its planned time but never before
 * revalidateMs after the previous one really healed. Overlapping: each at its planned time,
 * after any earlier fault of the same target. Nothing starts past 1.5 x duration + 10 s.
 */
export async function runSchedule (
  schedule: Schedule,
  inject: (f: PlannedFault, now: () => number) => Promise<FaultRecord>,
  now: () => number,
  options: Pick<ChaosOptions, 'durationMs' | 'revalidateMs' | 'overlap'>,
  progress: (line: string) => void
): Promise<{ faults: FaultRecord[], skipped: number }> {
  const faults: FaultRecord[] = []
  const cap = options.durationMs * 1.5 + 10_000
  const run = async (f: PlannedFault): Promise<FaultRecord> => {
    const record = await inject(f, now)
    progress(`${(record.at / 1000).toFixed(1)} s: #${f.index} ${FAULT_LABELS[f.kind]} ${record.target}${f.holdMs > 0 ? ` (${f.holdMs} ms)` : ''}${record.error === undefined ? '' : ` FAILED: ${record.error}`}`)
    faults.push(record)
    return record
  }
  let skipped = 0
  if (!options.overlap) {
    let readyAt = 0
    for (const f of schedule.faults) {
      const start = Math.max(f.at, readyAt)
      if (start > cap) {
        skipped++
        continue
      }
      await sleepUntil(start, now)
      const record = await run(f)
      readyAt = record.healedAt + options.revalidateMs
    }
  } else {
    const chains = new Map<string, Promise<unknown>>()
    for (const f of schedule.faults) {
      if (f.at > cap) {
        skipped++
        continue
      }
      await sleepUntil(f.at, now)
      const target = f.kind === 'scale-out' ? 'scale-out' : `${f.kind.startsWith('sidecar') ? 's' : 'm'}${f.target}`
      chains.set(target, (chains.get(target) ?? Promise.resolve()).then(async () => await run(f)))
    }
    await Promise.all(chains.values())
  }
  faults.sort((a, b) => a.index - b.index)
  return { faults, skipped }
}
