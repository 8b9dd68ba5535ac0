import { Rng } from './prng.js'

/**
 * The faults a run injects. Each one but `scale-out` removes one copy of the sessions it
 * touches: a sidecar's local cache (kill -9; SIGTERM drains and flushes first), or a
 * memcached node's copies (killed and restarted empty later, restarted empty at once, or
 * frozen by SIGSTOP until SIGCONT, then back with whatever it held).
 */
export type FaultKind =
  | 'sidecar-kill'
  | 'sidecar-term'
  | 'memcached-kill'
  | 'memcached-restart-empty'
  | 'memcached-stop'
  | 'scale-out'

export const FAULT_LABELS: Readonly<Record<FaultKind, string>> = {
  'sidecar-kill': 'sidecar kill -9',
  'sidecar-term': 'sidecar SIGTERM',
  'memcached-kill': 'memcached kill -9',
  'memcached-restart-empty': 'memcached restart empty',
  'memcached-stop': 'memcached SIGSTOP',
  'scale-out': 'scale-out'
}

export interface PlannedFault {
  readonly index: number
  /** ms after the start of the run; with `overlap` off, the earliest time (see ScheduleOptions). */
  readonly at: number
  readonly kind: FaultKind
  /** Index of the sidecar or memcached slot (unused by scale-out). */
  readonly target: number
  /** How long the target stays down or frozen before it is restarted or continued. */
  readonly holdMs: number
}

export interface ScheduleOptions {
  readonly seed: number
  /** Faults are planned in [0, durationMs). */
  readonly durationMs: number
  readonly revalidateMs: number
  /**
   * false: one fault at a time, the next starting at least revalidateMs after the previous one
   * healed (inside the guarantee; the executor keeps that spacing with the real heal times).
   * true: Poisson arrivals with mean gap `meanGapMs`, free to overlap (beyond the guarantee).
   */
  readonly overlap: boolean
  readonly meanGapMs?: number
  readonly sidecars: number
  readonly memcached: number
  /** Nodes and sidecars added together, at this fraction of the duration. */
  readonly scaleOut?: { readonly at: number, readonly sidecars: number, readonly memcached: number }
  readonly maxEvents: number
}

export interface Schedule {
  readonly options: ScheduleOptions
  readonly faults: readonly PlannedFault[]
}

const WEIGHTS: Readonly<Record<Exclude<FaultKind, 'scale-out'>, number>> = {
  'sidecar-kill': 3,
  'sidecar-term': 2,
  'memcached-kill': 2,
  'memcached-restart-empty': 2,
  'memcached-stop': 2
}

/**
 * Rough wall time of the action itself, as measured on a loaded 2-core machine (a sidecar
 * restart is a Node start, 0.7 s idle and 2-3 s under the run's load; memcached is quick):
 * for planning only, the executor spaces faults by their real heal times.
 */
export const ACTION_MS: Readonly<Record<FaultKind, number>> = {
  'sidecar-kill': 2500,
  'sidecar-term': 3000,
  'memcached-kill': 200,
  'memcached-restart-empty': 200,
  'memcached-stop': 10,
  'scale-out': 5000
}

function holdFor (kind: FaultKind, rng: Rng): number {
  switch (kind) {
    case 'sidecar-kill':
    case 'sidecar-term': return rng.int(0, 1500)
    case 'memcached-kill': return rng.int(300, 2500)
    case 'memcached-stop': return rng.int(200, 2500)
    default: return 0
  }
}

const isSidecar = (kind: FaultKind): boolean => kind === 'sidecar-kill' || kind === 'sidecar-term'

/** A seeded, bounded fault schedule: the same options give the same list. */
export function planSchedule (options: ScheduleOptions): Schedule {
  const rng = new Rng(options.seed).fork(1)
  const { durationMs, revalidateMs: r, scaleOut } = options
  const faults: PlannedFault[] = []
  const scaleAt = scaleOut === undefined ? Infinity : Math.round(durationMs * scaleOut.at)
  let scaled = false
  let sidecars = options.sidecars
  let memcached = options.memcached
  /** Per target ("s1", "m0"), planned busy until. */
  const busy = new Map<string, number>()
  const add = (at: number, kind: FaultKind, target: number, holdMs: number): void => {
    faults.push({ index: faults.length, at: Math.round(at), kind, target, holdMs })
  }
  const scaleOutNow = (at: number): void => {
    scaled = true
    add(at, 'scale-out', 0, 0)
    sidecars += scaleOut?.sidecars ?? 0
    memcached += scaleOut?.memcached ?? 0
  }
  let t = options.overlap ? 0 : r
  while (faults.length < options.maxEvents) {
    if (options.overlap) t += rng.exponential(options.meanGapMs ?? r / 2)
    if (t >= durationMs) break
    if (!scaled && t >= scaleAt) {
      scaleOutNow(t)
      if (!options.overlap) t += ACTION_MS['scale-out'] + r
      continue
    }
    const kind = rng.weighted(WEIGHTS)
    const holdMs = holdFor(kind, rng)
    const count = isSidecar(kind) ? sidecars : memcached
    const prefix = isSidecar(kind) ? 's' : 'm'
    const free = Array.from({ length: count }, (_, i) => i).filter((i) => (busy.get(`${prefix}${i}`) ?? 0) <= t)
    // Overlapping faults keep one sidecar in the pool (else there is nothing to measure);
    // memcached may go down entirely.
    const downSidecars = Array.from({ length: sidecars }, (_, i) => i).filter((i) => (busy.get(`s${i}`) ?? 0) > t).length
    if (free.length === 0 || (isSidecar(kind) && downSidecars >= sidecars - 1)) continue
    const target = rng.pick(free)
    add(t, kind, target, holdMs)
    const end = t + holdMs + ACTION_MS[kind]
    busy.set(`${prefix}${target}`, end)
    if (!options.overlap) t = end + r + rng.between(0, r / 2)
  }
  return { options, faults }
}
