import { spawn, type ChildProcess } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { CopySeal } from '../../src/session/sealed-copy.js'
import { onFreePort, until } from '../../harness/index.js'
import { SECRET } from './sidecar.js'

const TEST_SEAL = new CopySeal([SECRET], true)

/**
 * A real memcached process on 127.0.0.1 and a free port, killed by pid. `stop` and `start`
 * kill and restart it on the same port (empty, as after a crash).
 */
export class MemcachedProcess {
  readonly port: number
  readonly host: string
  /** memcached's `-m`: a small cache evicts under filler keys (the eviction tests). */
  readonly memoryMb: number
  #child: ChildProcess | undefined

  private constructor (host: string, port: number, memoryMb: number) {
    this.host = host
    this.port = port
    this.memoryMb = memoryMb
  }

  /**
   * On 127.0.0.1 and a free port, or on another loopback address (127.0.0.2, ...) and a given
   * port. memcached cannot report a port it picked, and `stop`/`start` restart it on the same
   * one: a free port below the ephemeral range, another if it was taken before memcached bound it.
   */
  static async start (host = '127.0.0.1', port?: number, memoryMb = 64): Promise<MemcachedProcess> {
    const started = async (p: number): Promise<MemcachedProcess> => {
      const m = new MemcachedProcess(host, p, memoryMb)
      await m.start()
      return m
    }
    return port === undefined ? await onFreePort(started) : await started(port)
  }

  get address (): string { return `${this.host}:${this.port}` }
  get pid (): number | undefined { return this.#child?.pid }

  async start (): Promise<void> {
    // memcached refuses to run as root unless told which user to be.
    const user = process.getuid?.() === 0 ? ['-u', 'root'] : []
    const child = spawn('memcached', [...user, '-l', this.host, '-p', String(this.port), '-U', '0', '-m', String(this.memoryMb), '-t', '1'], { stdio: ['ignore', 'ignore', 'pipe'] })
    this.#child = child
    let failure: Error | undefined
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    child.once('error', (err) => { failure = err })
    child.once('exit', (code) => { failure ??= new Error(`memcached exited with ${String(code)}: ${stderr.trim()}`) })
    try {
      await until(async () => {
        if (failure !== undefined) throw failure
        return await this.ping()
      }, 5000, `memcached on ${this.port}`)
    } catch (err) {
      // Not ready in time: killed, so a retry (or the end of the run) leaves no orphan behind.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      throw err
    }
  }

  /** Kills the process (SIGKILL by default) and waits for it to be gone. */
  async stop (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    process.kill(child.pid as number, signal)
    await exited
    this.#child = undefined
  }

  /** True when memcached answers `version`. */
  async ping (): Promise<boolean> {
    return await this.command('version\r\n').then((r) => r.startsWith('VERSION'), () => false)
  }

  /** One raw text-protocol exchange: for assertions that must not go through the sidecar. */
  async command (text: string): Promise<string> {
    return await new Promise((resolve, reject) => {
      const socket = connect(this.port, this.host)
      let reply = ''
      socket.setTimeout(2000, () => socket.destroy(new Error('memcached did not answer')))
      socket.on('data', (chunk) => {
        reply += chunk.toString('latin1')
        if (/(END|VERSION [^\r]*|STORED|NOT_STORED|DELETED|NOT_FOUND|TOUCHED|ERROR[^\r]*)\r\n$/.test(reply)) socket.end()
      })
      socket.on('end', () => resolve(reply))
      socket.on('error', reject)
      socket.write(text)
    })
  }

  /** The raw stored value of a key, or undefined. */
  async get (key: string): Promise<string | undefined> {
    const reply = await this.command(`get ${key}\r\n`)
    const m = /^VALUE \S+ \d+ \d+\r\n([\s\S]*)\r\nEND\r\n$/.exec(reply)
    return m?.[1]
  }

  async set (key: string, value: string, ttl = 0): Promise<void> {
    const reply = await this.command(`set ${key} 0 ${ttl} ${Buffer.byteLength(value)}\r\n${value}\r\n`)
    if (!reply.startsWith('STORED')) throw new Error(`set failed: ${reply}`)
  }

  /**
   * The session copy stored under `sess:<key>` as the sidecars of the tests' fleet read it
   * (opened with the tests' secret): `<version> <data>`, or `<version> ended` for a tombstone;
   * undefined when there is none, `unopenable` when it does not open.
   */
  async copy (key: string, prefix = 'sess:', seal = TEST_SEAL): Promise<string | undefined> {
    const mkey = prefix + key
    const value = await this.get(mkey)
    if (value === undefined) return undefined
    const copy = seal.open(mkey, value)
    if (copy === undefined) return 'unopenable'
    return copy.ended ? `${copy.version} ended` : `${copy.version} ${copy.header}`
  }

  /** Stores a copy as another sidecar of the tests' fleet would (sealed with the tests' secret); `ended` makes it a tombstone. */
  async putCopy (key: string, version: number, header: string, prefix = 'sess:', ended = false): Promise<void> {
    await this.set(prefix + key, TEST_SEAL.seal(prefix + key, { version, header, ended }))
  }

  async delete (key: string): Promise<void> {
    await this.command(`delete ${key}\r\n`)
  }

  /** Counters from `stats` (cmd_get, cmd_set, cmd_touch, ...). */
  async stats (): Promise<Stats> {
    const reply = await this.command('stats\r\n')
    const out: Record<string, number> = {}
    for (const m of reply.matchAll(/^STAT (\S+) (\S+)\r$/gm)) out[m[1] as string] = Number(m[2])
    return out as Stats
  }
}

/** The `stats` counters the tests read; memcached always reports these. */
export type Stats = Record<string, number> & { cmd_get: number, cmd_set: number, cmd_touch: number, get_hits: number, get_misses: number }

/** Whether this machine can listen on ::1 (containers may have IPv6 off). */
export async function hasIpv6Loopback (): Promise<boolean> {
  const probe = createServer()
  const listening = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false))
    probe.listen(0, '::1', () => resolve(true))
  })
  if (listening) await new Promise((resolve) => probe.close(resolve))
  return listening
}
