import { readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'

/**
 * CPU time (user + system) of processes, from /proc/<pid>/stat: what a row's own processes
 * spent per request. On a machine whose CPUs the load generator, the app and memcached share,
 * req/s moves with everything else running; CPU per request moves much less, and says what
 * each request costs the process under test whatever the machine lent it.
 */

// Ticks per second of /proc's utime and stime (USER_HZ, 100 on every common Linux).
const TICKS = ((): number => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
  const n = Number(r.stdout?.trim())
  return Number.isInteger(n) && n > 0 ? n : 100
})()

/** Seconds of CPU `pid` has used so far, or undefined where /proc does not tell (not Linux, gone). */
export function cpuSeconds (pid: number): number | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return undefined
  }
  // Fields after the command name, which is in parentheses and may hold spaces: state is
  // field 3, utime field 14 and stime field 15 (proc(5)).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / TICKS : undefined
}

/** A reading of several processes' CPU, and what they used since: undefined when any cannot be read. */
export function cpuMeter (pids: readonly number[]): () => number | undefined {
  const total = (): number | undefined => {
    let sum = 0
    for (const pid of pids) {
      const s = cpuSeconds(pid)
      if (s === undefined) return undefined
      sum += s
    }
    return sum
  }
  const start = total()
  return () => {
    const end = total()
    return start === undefined || end === undefined || pids.length === 0 ? undefined : end - start
  }
}
