import { MemcacheClient, MemcacheConnection } from 'memcache-client'
import type { Logger } from 'pino'
import { codes, NodeUnavailable, type MemcachedCommand } from '../errors.js'
import type { Address } from './address.js'
import type { MemcachedOps } from '../metrics.js'

/** A stored copy as read with `gets`. */
export interface StoredValue {
  readonly value: string
  readonly cas: string
}

type Command = MemcachedCommand

export interface NodeOptions {
  /** Longest one command may take, connect included. */
  readonly timeoutMs: number
  /** Item TTL in seconds. */
  readonly ttl: number
  readonly log: Logger
  readonly ops: MemcachedOps
  /** Monotonic milliseconds (performance.now by default); tests pass a fake clock. */
  readonly now?: () => number
  /**
   * Hears that a node may be back from a restart, empty: it answers again after being marked
   * down, or after its connection ended unasked (a probe notices that even on an idle node).
   */
  readonly onRecovered?: (address: string) => void
}

/**
 * memcache-client parses replies inside the socket's 'data' handler, where a malformed reply
 * (a broken node, a wrong port, a middlebox) throws and would crash the process. Contain it:
 * the connection is shut down, its pending commands fail, and the node is marked down.
 */
const connection = MemcacheConnection.prototype as unknown as {
  onData: (data: Buffer) => void
  _shutdown: (msg: string, keepSocket?: boolean) => void
  isShutdown: () => boolean
  client?: { emit: (event: string, ...args: unknown[]) => boolean }
}
const parseReply = connection.onData
connection.onData = function onData (this: typeof connection, data: Buffer): void {
  try {
    parseReply.call(this, data)
  } catch (err) {
    this._shutdown(`unparseable reply (${(err as Error).name})`)
  }
}
/**
 * memcache-client reconnects silently on the next command. A connection that ends without our
 * asking (the server restarted, or died) is announced on the client, so the node can tell that
 * memcached may have come back empty even when no command was in flight to fail.
 */
const shutdownConnection = connection._shutdown
connection._shutdown = function shutdown (this: typeof connection, msg: string, keepSocket?: boolean): void {
  if (!this.isShutdown() && msg !== SHUTDOWN_REQUESTED) this.client?.emit(CONNECTION_LOST, msg)
  shutdownConnection.call(this, msg, keepSocket)
}

// memcache-client's reason when we close a connection ourselves.
const SHUTDOWN_REQUESTED = 'Shutdown requested'
const CONNECTION_LOST = 'session-sidecar:connection-lost'
const BACKOFF_MIN_MS = 500
// Short and capped: a node back from a restart is noticed within seconds by the next command.
const BACKOFF_MAX_MS = 2_000
// memcached's replies to a store that did not happen: protocol outcomes, not node failures.
const PROTOCOL_REPLIES = new Set(['NOT_STORED', 'EXISTS', 'NOT_FOUND'])

/**
 * One memcached server: its own client (memcache-client fails over randomly between servers,
 * so it must never hold more than one), a hard deadline on every command, and a down mark with
 * exponential backoff that steers writes and placement away while the node is failing.
 */
export class MemcachedNode {
  readonly address: string
  readonly #client: MemcacheClient
  readonly #options: NodeOptions
  #downUntil = 0
  #failures = 0
  /** When the last command was sent (or the node created), on the options' clock: the pool forgets idle nodes. */
  #lastUsedAt: number
  /** The connection ended unasked: the next answer may come from a restarted (empty) memcached. */
  #connectionLost = false
  #failingSince: number | undefined
  #probe: NodeJS.Timeout | undefined
  /** Backoff windows and idle time; command latencies are always measured on performance.now. */
  readonly #now: () => number

  constructor (address: Address, options: NodeOptions) {
    this.address = address.text
    this.#options = options
    this.#now = options.now ?? performance.now.bind(performance)
    this.#lastUsedAt = this.#now()
    this.#client = new MemcacheClient({
      server: { server: `${address.host}:${address.port}`, maxConnections: 1 },
      // Without connectTimeout a black-holed connect never settles.
      connectTimeout: options.timeoutMs,
      cmdTimeout: options.timeoutMs,
      // After a connect timeout the library drops the socket's error listener; a dangling
      // socket keeps one, so a late ECONNREFUSED cannot crash the process.
      keepDangleSocket: true,
      dangleSocketWaitTimeout: 1000,
      lifetime: options.ttl,
      logger: quietLogger(options.log)
    })
    ;(this.#client as unknown as NodeJS.EventEmitter).on(CONNECTION_LOST, () => { this.#lost() })
  }

  get lastUsedAt (): number {
    return this.#lastUsedAt
  }

  /**
   * How long this node has been failing, on the options' clock: from its first failed command
   * of the current outage until a command succeeds; 0 while it answers.
   */
  failingFor (): number {
    return this.#failingSince === undefined ? 0 : this.#now() - this.#failingSince
  }

  /** True while the node is inside its backoff window after a failure. */
  get down (): boolean {
    return this.#downUntil > this.#now()
  }

  async gets (key: string): Promise<StoredValue | undefined> {
    return storedValue(await this.#run('gets', () => this.#client.gets<string>(key)))
  }

  /**
   * `gats`: reads the copy (with its CAS token) and refreshes its TTL in one command, so a
   * revalidation learns what is stored, not only that something is. memcache-client has no
   * method for it, but its generic retrieve sends `<cmd> <key>` and parses the VALUE reply,
   * which for `gats <exptime>` has the same shape as for `gets`.
   */
  async gats (key: string): Promise<StoredValue | undefined> {
    return storedValue(await this.#run('gats', () => this.#client.retrieve<RetrievedValue | undefined>(`gats ${this.#options.ttl}`, key)))
  }

  /** Stores only if absent. Resolves false when the key exists. `ttl` (seconds) overrides the item TTL. */
  async add (key: string, value: string, ttl = this.#options.ttl): Promise<boolean> {
    return await this.#store('add', () => this.#client.add(key, value, { lifetime: ttl }))
  }

  /** Stores only if unchanged since `gets`. Resolves false on EXISTS / NOT_FOUND. */
  async cas (key: string, value: string, cas: string, ttl = this.#options.ttl): Promise<boolean> {
    return await this.#store('cas', () => this.#client.cas(key, value, { casUniq: cas, lifetime: ttl }))
  }

  /** Resolves false when there was nothing to delete. */
  async delete (key: string): Promise<boolean> {
    return await this.#store('delete', () => this.#client.delete(key))
  }

  /**
   * Opens the connection if needed and asks for memcached's version: true when it answers. A
   * probe is not use (a node only cookies named is still forgotten when idle); a failed one marks
   * the node down like any command.
   */
  async probe (): Promise<boolean> {
    return await this.#run('version', async () => await this.#client.version(), false).then(() => true, () => false)
  }

  close (): void {
    clearTimeout(this.#probe)
    this.#client.shutdown()
  }

  /**
   * The connection ended: memcached may be restarting. A probe (`version`) a moment later
   * reconnects, so `onRecovered` fires as soon as it answers, whether or not anything else is
   * sent to this node meanwhile; a failed probe marks the node down, and its backoff decides
   * when the next command tries again.
   */
  #lost (): void {
    this.#connectionLost = true
    if (this.#probe !== undefined) return
    // Not before the backoff window ends: a dead node is probed at the backoff's pace.
    this.#probe = setTimeout(() => {
      this.#probe = undefined
      if (this.#connectionLost) void this.probe()
    }, Math.max(BACKOFF_MIN_MS, this.#downUntil - this.#now()))
    this.#probe.unref()
  }

  async #store (command: Command, send: () => Promise<unknown>): Promise<boolean> {
    try {
      await this.#run(command, send)
      return true
    } catch (err) {
      if (err instanceof NodeUnavailable) throw err
      return false
    }
  }

  async #run<T> (command: Command, send: () => Promise<T>, use = true): Promise<T> {
    const started = performance.now()
    if (use) this.#lastUsedAt = this.#now()
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_resolve, reject) => {
      // memcache-client checks its own timeout on a coarse interval: this bound is exact.
      timer = setTimeout(() => reject(new NodeUnavailable(this.address, command, `timed out after ${this.#options.timeoutMs} ms`)), this.#options.timeoutMs)
    })
    try {
      const result = await Promise.race([send(), deadline])
      this.#succeeded()
      this.#options.ops.observe(this.address, command, result === undefined && (command === 'gets' || command === 'gats') ? 'miss' : 'ok', performance.now() - started)
      return result
    } catch (err) {
      const message = (err as Error).message
      if (!(err instanceof NodeUnavailable) && PROTOCOL_REPLIES.has(message)) {
        this.#succeeded()
        this.#options.ops.observe(this.address, command, 'miss', performance.now() - started)
        throw err
      }
      // memcache-client's own timers may fire first ("Command timeout", "connect timeout"):
      // one wording for every timeout keeps the log line greppable.
      const failure = err instanceof NodeUnavailable
        ? err
        : new NodeUnavailable(this.address, command, /timeout/i.test(message) ? `timed out after ${this.#options.timeoutMs} ms` : message)
      this.#failed(failure)
      this.#options.ops.observe(this.address, command, 'error', performance.now() - started)
      throw failure
    } finally {
      clearTimeout(timer)
    }
  }

  #succeeded (): void {
    this.#failingSince = undefined
    if (this.#failures > 0) {
      this.#options.log.info({ node: this.address }, 'memcached node is answering again')
      this.#failures = 0
      this.#downUntil = 0
      this.#connectionLost = false
      this.#options.onRecovered?.(this.address)
    } else if (this.#connectionLost) {
      this.#connectionLost = false
      this.#options.log.debug({ node: this.address }, 'memcached node answers on a new connection')
      this.#options.onRecovered?.(this.address)
    }
  }

  /**
   * One backoff step per outage window, not per command: the commands already in flight when
   * a node fails (a burst under load) all fail together and must not push the backoff to its
   * cap. Only a command sent after the window (a probe) that fails again doubles it. Logged
   * when the node goes down; the later steps only at debug.
   */
  #failed (err: NodeUnavailable): void {
    const now = this.#now()
    this.#failingSince ??= now
    if (this.#downUntil > now) return
    const backoff = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.#failures, 16))
    this.#failures++
    this.#downUntil = now + backoff
    const fields = { node: this.address, code: err.code, command: err.command, backoffMs: backoff }
    if (this.#failures === 1) this.#options.log.warn(fields, err.message)
    else this.#options.log.debug(fields, err.message)
  }
}

interface RetrievedValue { readonly value: unknown, readonly casUniq?: unknown }

function storedValue (hit: RetrievedValue | undefined): StoredValue | undefined {
  return hit === undefined ? undefined : { value: String(hit.value), cas: String(hit.casUniq) }
}

/**
 * memcache-client prints unexpected replies with console.log unless given a logger. Its
 * messages can quote reply lines, which may hold session data: log that it happened, not what.
 */
function quietLogger (log: Logger): Record<'error' | 'warn' | 'info' | 'debug', () => void> {
  const report = (): void => log.warn({ code: codes.MEMCACHED_CLIENT_WARNING }, 'memcache-client reported an unexpected reply')
  const ignore = (): void => {}
  return { error: report, warn: report, info: ignore, debug: ignore }
}
