import type { ChildProcess } from 'node:child_process'
import { until, type UntilOptions } from './wait.js'

// Child processes (sidecars, memcached, load balancers, apps): the waits every starter shares.
// Who keeps a child's output, and who kills what on exit, stays with the caller (tests keep
// output in memory, the demo writes log files, the bench tracks pids for its exit handler).

/** Whether the child is still running (not exited, not killed). */
export function running (child: ChildProcess | undefined): boolean {
  return child !== undefined && child.exitCode === null && child.signalCode === null
}

/**
 * Waits until `probe` answers for a child just started; throws (early) when it exits, with
 * `output()` in the message. A child not ready within `ms` is killed (SIGKILL) before the error
 * is thrown, so a retry, or the end of a run, leaves no orphan holding ports.
 */
export async function waitReady (child: ChildProcess, what: string, probe: () => Promise<boolean>, ms: number, output: () => string = () => '', options: UntilOptions = {}): Promise<void> {
  try {
    await until(async () => {
      if (!running(child)) throw options.onTimeout?.(`${what} exited: ${output()}`) ?? new Error(`${what} exited: ${output()}`)
      return await probe()
    }, ms, what, options)
  } catch (err) {
    if (running(child)) child.kill('SIGKILL')
    throw err
  }
}

/** Resolves with the exit code once the child exits (null when a signal ended it); rejects after `ms`. */
export async function exitOf (child: ChildProcess, ms: number, what = `pid ${String(child.pid)}`): Promise<number | null> {
  if (!running(child)) return child.exitCode
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not exit within ${ms} ms`)), ms)
    child.once('exit', (code) => { clearTimeout(timer); resolve(code) })
  })
}

/** Sends `signal`, waits up to `ms` for the exit, then SIGKILL. Resolves with the exit code. */
export async function stopChild (child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', ms = 10_000): Promise<number | null> {
  if (!running(child)) return child.exitCode
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), ms)
  const code = await exited
  clearTimeout(timer)
  return code
}
