import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { randomInt } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bindable } from '../../harness/index.js'

/**
 * Ports for processes the run restarts on the same address (memcached nodes, sidecars), and
 * for the sidecars added mid-run (HAProxy knows them from the start). Taken below the kernel's
 * ephemeral range, so no bind(0) elsewhere (other tests' freePort, outgoing connections) gets
 * one while its owner is down, and recorded under the temp folder with our pid, so concurrent
 * chaos runs on one machine never share one. Released by `release`.
 */
export const LOCK_DIR = join(tmpdir(), 'session-sidecar-chaos-ports')

function ephemeralStart (): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    return low !== undefined && Number.isInteger(low) ? low : 32768
  } catch {
    return 32768
  }
}

/** Signal 0 only checks that the process exists. */
function alive (pid: number): boolean {
  try { return process.kill(pid, 0) } catch { return false }
}

/** Claims the lock file of `port` for this process; false when a live process holds it. */
export function claim (port: number): boolean {
  mkdirSync(LOCK_DIR, { recursive: true })
  const file = join(LOCK_DIR, String(port))
  try {
    const fd = openSync(file, 'wx')
    writeSync(fd, String(process.pid))
    closeSync(fd)
    return true
  } catch {
    let owner = 0
    try {
      owner = Number(readFileSync(file, 'utf8'))
    } catch {
      return false
    }
    // Empty: another run is writing its pid right now.
    if (!Number.isInteger(owner) || owner <= 0 || alive(owner)) return false
    // Left by a run that died: take it over.
    rmSync(file, { force: true })
    return claim(port)
  }
}

export class PortReservation {
  readonly #ports: number[] = []

  async take (): Promise<number> {
    const high = ephemeralStart()
    const low = Math.max(1024, high - 12000)
    for (let attempt = 0; attempt < 200; attempt++) {
      const port = randomInt(low, high)
      if (this.#ports.includes(port) || !claim(port)) continue
      if (await bindable(port)) {
        this.#ports.push(port)
        return port
      }
      rmSync(join(LOCK_DIR, String(port)), { force: true })
    }
    throw new Error(`no free port below ${high} after 200 tries`)
  }

  release (): void {
    for (const port of this.#ports.splice(0)) rmSync(join(LOCK_DIR, String(port)), { force: true })
  }
}
