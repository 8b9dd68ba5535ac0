import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, ROOT, exitOf, freePort, onFreePort, running, sidecarYaml, until, waitReady } from '../../harness/index.js'
import { SECRET } from './sidecar.js'

/** Debian puts haproxy and nginx in /usr/sbin, which a non-root PATH often lacks. */
function sbin (name: string): string {
  return existsSync(`/usr/sbin/${name}`) ? `/usr/sbin/${name}` : name
}

async function answers (url: string): Promise<boolean> {
  return await fetch(`${url}/`).then(() => true, () => false)
}

/** A scratch folder for generated configs, removed by `cleanup`. */
export function scratch (): { dir: string, cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-e2e-'))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** A child process we start, signal by pid and wait for. */
abstract class Managed {
  protected child: ChildProcess | undefined
  output = ''

  get pid (): number | undefined { return this.child?.pid }
  get running (): boolean { return running(this.child) }

  protected launch (command: string, args: string[], env: NodeJS.ProcessEnv = process.env): void {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    child.stdout?.on('data', (c: Buffer) => { this.output += c.toString() })
    child.stderr?.on('data', (c: Buffer) => { this.output += c.toString() })
  }

  /**
   * Starts a server and waits until `probe` answers; fails early if the process exits, and kills
   * it if not ready in 30 s (a deadline, not a speed bound: the first tests of a CI run start
   * their processes while both CPUs compile the others).
   */
  protected async launchAndWait (what: string, command: string, args: string[], probe: () => Promise<boolean>, env?: NodeJS.ProcessEnv): Promise<void> {
    this.launch(command, args, env)
    await waitReady(this.child as ChildProcess, what, probe, 30_000, () => this.output)
  }

  /** Sends `signal` and resolves with the exit code (null when killed by the signal). */
  async kill (signal: NodeJS.Signals = 'SIGKILL', ms = 20_000): Promise<number | null> {
    const child = this.child
    if (child === undefined || !this.running) return child?.exitCode ?? null
    const exited = exitOf(child, ms, `pid ${String(child.pid)}`)
    // child.kill, not process.kill: a process that died and was reaped before its exit event
    // was handled (one waitReady killed) is not an error (ESRCH) here.
    child.kill(signal)
    return await exited.catch((err: Error) => { throw new Error(`${err.message} after ${signal}`) })
  }

  /** Resolves with the exit code once the process exits by itself. */
  async exited (ms = 20_000): Promise<number | null> {
    const child = this.child
    if (child === undefined || !this.running) return child?.exitCode ?? null
    return await exitOf(child, ms)
  }
}

export interface SidecarOptions {
  upstream: string
  nodes: string[]
  write?: 'async' | 'sync'
  revalidateMs?: number
  /** log.level (default warn); debug writes the session trace (chaos --log-level). */
  logLevel?: string
  extra?: Record<string, Record<string, unknown>>
}

/** The built CLI, configured by a YAML file like an operator's, on free loopback ports. */
export class SidecarProcess extends Managed {
  port = 0
  adminPort = 0

  constructor (readonly dir: string, readonly name: string, readonly options: SidecarOptions) {
    super()
  }

  get url (): string { return `http://127.0.0.1:${this.port}` }
  get adminUrl (): string { return `http://127.0.0.1:${this.adminPort}` }

  /**
   * Started on the ports it had (a restart), or on free ones: not port 0, as a restart must get
   * the same ports back (load balancers know them) and listen(0) ports are in the ephemeral range,
   * where a busy test's outgoing connection can hold one while the sidecar is down. A port taken
   * between the check and the bind: other ones, up to 3 tries.
   */
  async start (): Promise<this> {
    if (this.port !== 0 && this.adminPort !== 0) return await this.#launch()
    return await onFreePort(async (port) => {
      this.port = port
      this.adminPort = await freePort()
      return await this.#launch()
    })
  }

  async #launch (): Promise<this> {
    const { upstream, nodes, write = 'async', revalidateMs = 30000, logLevel = 'warn', extra = {} } = this.options
    const file = join(this.dir, `${this.name}.yaml`)
    writeFileSync(file, sidecarYaml({
      port: this.port,
      adminPort: this.adminPort,
      upstream,
      // The config's ${VAR} substitution: the sidecar reads E2E_SECRET from its environment.
      secretEnv: 'E2E_SECRET',
      nodes,
      write,
      // Above the 250 ms default: CI runs several topologies at once on two cores, and these
      // scenarios are about correctness; the default itself is exercised by test/integration.
      timeoutMs: 1000,
      // No wait for load balancers before draining unless a test asks (extra.shutdown.delayMs).
      shutdown: { delayMs: 0, timeoutMs: 5000 },
      logLevel,
      extra: { ...extra, cache: { revalidateMs, ...extra.cache } }
    }))
    await this.launchAndWait(`sidecar ${this.name}`, process.execPath, [CLI, '--config', file],
      async () => await this.readyz() === 200, { ...process.env, E2E_SECRET: SECRET })
    return this
  }

  async readyz (): Promise<number> {
    return await fetch(`${this.adminUrl}/readyz`).then((r) => r.status, () => 0)
  }

  /** Polls /metrics until no session write is pending. */
  async flushed (): Promise<void> {
    await until(async () => /^sidecar_pending_writes 0$/m.test(await this.metrics()), 5000, `${this.name} to flush its writes`)
  }

  async metrics (): Promise<string> {
    return await (await fetch(`${this.adminUrl}/metrics`)).text()
  }
}

/**
 * The example load balancer configs an operator copies (deploy/haproxy/haproxy.cfg, deploy/nginx/nginx.conf)
 * are what the e2e tests run, so they cannot rot. Their only test-specific parts are blocks
 * between `# test-harness: begin <name>` and `# test-harness: end <name>` comment lines, each
 * replaced by `blocks[name]`: a string (its lines indented like the begin marker) or a function
 * of the block's original lines. Every block in the file must be replaced and every replacement
 * must find its block.
 */
export function renderConfig (file: string, blocks: Record<string, string | ((original: string[]) => string)>): string {
  const text = readFileSync(join(ROOT, file), 'utf8')
  const used = new Set<string>()
  const block = /^([ \t]*)# test-harness: begin ([\w-]+)\n([\s\S]*?)^[ \t]*# test-harness: end \2\n/gm
  const rendered = text.replace(block, (_all, indent: string, name: string, body: string) => {
    const replacement = blocks[name]
    if (replacement === undefined) throw new Error(`${file}: no replacement for test-harness block "${name}"`)
    used.add(name)
    const lines = body.split('\n').filter((l) => l.trim() !== '')
    const out = typeof replacement === 'function' ? replacement(lines) : replacement
    return out === '' ? '' : out.split('\n').map((l) => `${indent}${l}\n`).join('')
  })
  if (/^[ \t]*# test-harness:/m.test(rendered)) throw new Error(`${file}: unbalanced test-harness markers`)
  const missing = Object.keys(blocks).filter((name) => !used.has(name))
  if (missing.length > 0) throw new Error(`${file}: no test-harness block named ${missing.join(', ')}`)
  return rendered
}

/** A load balancer in front of sidecars, on a free loopback port. */
abstract class LoadBalancer extends Managed {
  port = 0

  constructor (readonly dir: string, readonly sidecars: SidecarProcess[]) {
    super()
  }

  get url (): string { return `http://127.0.0.1:${this.port}` }
}

/**
 * HAProxy from deploy/haproxy/haproxy.cfg: round-robin and not sticky, with health checks on each
 * sidecar's /readyz (checked every 100 ms here so the tests need not wait; `check` replaces the
 * servers' timing parameters).
 */
export class HAProxyProcess extends LoadBalancer {
  constructor (dir: string, sidecars: SidecarProcess[], readonly check = 'inter 100 fall 1 rise 1') {
    super(dir, sidecars)
  }

  async start (): Promise<this> {
    return await onFreePort(async (port) => await this.#start(port))
  }

  async #start (port: number): Promise<this> {
    this.port = port
    const file = join(this.dir, 'haproxy.cfg')
    writeFileSync(file, renderConfig('deploy/haproxy/haproxy.cfg', {
      host: '',
      listen: `bind 127.0.0.1:${this.port}`,
      servers: this.sidecars.map((s, i) => `server s${i} 127.0.0.1:${s.port} check port ${s.adminPort} ${this.check}`).join('\n')
    }))
    await this.launchAndWait('haproxy', sbin('haproxy'), ['-f', file, '-db'], async () => await answers(this.url))
    return this
  }
}

/**
 * nginx from deploy/nginx/nginx.conf (an http-context file, included here as conf.d would): sticky by
 * the session key in the cookie (`hash $session_key consistent`), failing over on errors. The
 * sidecars get the parameters of the file's first example server line.
 */
export class NginxProcess extends LoadBalancer {
  async start (): Promise<this> {
    return await onFreePort(async (port) => await this.#start(port))
  }

  async #start (port: number): Promise<this> {
    this.port = port
    const prefix = join(this.dir, 'nginx')
    mkdirSync(join(prefix, 'logs'), { recursive: true })
    const site = join(prefix, 'session-sidecar.conf')
    writeFileSync(site, renderConfig('deploy/nginx/nginx.conf', {
      listen: `listen 127.0.0.1:${this.port};`,
      servers: (original) => {
        const example = /^\s*server\s+\S+(.*);\s*$/.exec(original[0] ?? '')
        if (example === null) throw new Error('deploy/nginx/nginx.conf: the servers block must start with a server line')
        return this.sidecars.map((s) => `server 127.0.0.1:${s.port}${example[1] ?? ''};`).join('\n')
      }
    }))
    const file = join(prefix, 'nginx.conf')
    writeFileSync(file, `daemon off;
master_process off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path ${prefix}/body;
    proxy_temp_path ${prefix}/proxy;
    fastcgi_temp_path ${prefix}/fastcgi;
    uwsgi_temp_path ${prefix}/uwsgi;
    scgi_temp_path ${prefix}/scgi;
    include ${site};
}
`)
    await this.launchAndWait('nginx', sbin('nginx'), ['-c', file, '-p', prefix], async () => await answers(this.url))
    return this
  }
}
