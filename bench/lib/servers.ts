import type { ChildProcess } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, until } from '../../test/helpers/ports.js'
import { announced, stopChild, type Children } from './children.js'
import { BENCH_DIR, ROOT } from './root.js'

/** A server process the benchmark started: where it listens and how to stop it. */
export interface Server {
  readonly url: string
  readonly pid: number | undefined
  stop: () => Promise<void>
}

/** One of bench/servers/*.ts (compiled), in its own node process. */
export async function startScript (children: Children, script: 'upstream' | 'bare-proxy' | 'express-session' | 'balancer' | 'sink', args: readonly string[], nodeFlags: readonly string[] = []): Promise<Server> {
  const child = children.spawn(script, process.execPath, [...nodeFlags, join(BENCH_DIR, 'servers', `${script}.js`), ...args], { cwd: ROOT })
  const { port } = await announced<{ port: number }>(script, child)
  return serverOf(child, `http://127.0.0.1:${port}`)
}

function serverOf (child: ChildProcess, url: string): Server {
  return { url, pid: child.pid, stop: async () => { await stopChild(child, 'SIGTERM', 5000) } }
}

export const HAPROXY = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy'].find((p) => existsSync(p))

/**
 * Round-robin, not sticky, over `backends`: HAProxy when installed (one thread, keep-alive to
 * the sidecars), else bench/servers/balancer.ts.
 */
export async function startBalancer (children: Children, dir: string, backends: readonly string[]): Promise<Server & { kind: string }> {
  if (HAPROXY === undefined) return { ...await startScript(children, 'balancer', [backends.join(',')]), kind: 'node:http balancer (no HAProxy)' }
  const port = await freePort()
  const file = join(dir, 'haproxy.cfg')
  writeFileSync(file, `global
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend web
    bind 127.0.0.1:${port}
    default_backend sidecars
backend sidecars
    balance roundrobin
${backends.map((b, i) => `    server s${i} ${new URL(b).host}`).join('\n')}
`)
  const child = children.spawn('haproxy', HAPROXY, ['-f', file, '-db'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { output += c.toString() })
  const url = `http://127.0.0.1:${port}`
  await until(async () => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`haproxy exited: ${output}`)
    return await fetch(`${url}/`).then(() => true, () => false)
  }, 10_000, 'haproxy')
  return { ...serverOf(child, url), kind: 'HAProxy' }
}
