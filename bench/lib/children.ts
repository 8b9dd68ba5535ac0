import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { createInterface } from 'node:readline'

/**
 * Every process the benchmark starts, by pid. `killAllNow` is synchronous so it can run in
 * a process 'exit' handler: an error or Ctrl-C in the runner never leaves a server behind.
 */
export class Children {
  readonly #live = new Map<number, string>()

  spawn (what: string, command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    // stdin is a pipe our own node servers watch: they exit when the runner is gone, even
    // when it was killed too hard to clean up.
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], ...options })
    if (child.pid === undefined) throw new Error(`${what}: could not start ${command}`)
    const pid = child.pid
    this.#live.set(pid, what)
    child.once('exit', () => this.#live.delete(pid))
    return child
  }

  /** Tracks a process started elsewhere (memcached through the test helper). */
  adopt (what: string, pid: number | undefined): void {
    if (pid !== undefined) this.#live.set(pid, what)
  }

  forget (pid: number | undefined): void {
    if (pid !== undefined) this.#live.delete(pid)
  }

  /** SIGKILL to every process still tracked, one by one, by pid. */
  killAllNow (): void {
    for (const pid of [...this.#live.keys()]) {
      try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
      this.#live.delete(pid)
    }
  }
}

/**
 * Waits for the first stdout line of a child that announces itself as JSON
 * (`{"port":1234}`): our servers listen on port 0 and say where.
 */
export async function announced<T> (what: string, child: ChildProcess, ms = 15_000): Promise<T> {
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-4000) })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  try {
    return await new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what} did not start within ${ms} ms: ${stderr}`)), ms)
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited with ${String(code)}: ${stderr}`)) })
      lines.once('line', (line) => {
        clearTimeout(timer)
        try { resolve(JSON.parse(line) as T) } catch { reject(new Error(`${what} said ${line}`)) }
      })
    })
  } finally {
    lines.close()
    // Keep draining so a chatty child never blocks on a full pipe.
    child.stdout?.resume()
  }
}

/**
 * For our own server scripts: exit when the runner closes our stdin (it died or is done), and
 * on SIGTERM through process.exit, so that --cpu-prof gets to write its profile.
 */
export function exitWithParent (): void {
  process.stdin.on('end', () => process.exit(0))
  process.stdin.on('close', () => process.exit(0))
  process.stdin.resume()
  process.once('SIGTERM', () => process.exit(0))
}
