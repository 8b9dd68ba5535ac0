import type { Logger } from 'pino'
import { NodeUnavailable, type MemcachedCommand } from '../errors.js'
import type { Address } from './address.js'
import { MetaConnection, MetaConnectionError, type MetaStore } from './meta-connection.js'
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

const BACKOFF_MIN_MS = 500
// Short and capped: a node back from a restart is noticed within seconds by the next command.
const BACKOFF_MAX_MS = 2_000

/** The backoff window after `steps` earlier ones in a row: 0.5 s, doubling, capped at 2 s. */
const backoffAfter = (steps: number): number => Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(steps, 16))

/**
 * One memcached server: one pipelined connection speaking the meta protocol (every store
 * returns the item's new CAS, so a later change can skip its read), a hard deadline on every
 * command, and a down mark with exponential backoff that steers writes and placement away
 * while the node is failing.
 */
export class MemcachedNode {
  readonly address: string
  readonly #connection: MetaConnection
  readonly #options: NodeOptions
  #downUntil = 0
  #failures = 0
  /** When the last command was sent (or the node created), on the options' clock: the pool forgets idle nodes. */
  #lastUsedAt: number
  /** The connection ended unasked: the next answer may come from a restarted (empty) memcached. */
  #connectionLost = false
  #connectionsLost = 0
  #failingSince: number | undefined
  /** Refusing stores (see `refused`): writes and placement avoid the node until then. */
  #refusedUntil = 0
  #refusals = 0
  #probe: NodeJS.Timeout | undefined
  #closed = false
  /** Backoff windows and idle time; command latencies are always measured on performance.now. */
  readonly #now: () => number

  constructor (address: Address, options: NodeOptions) {
    this.address = address.text
    this.#options = options
    this.#now = options.now ?? performance.now.bind(performance)
    this.#lastUsedAt = this.#now()
    this.#connection = new MetaConnection({
      host: address.host,
      port: address.port,
      connectTimeoutMs: options.timeoutMs,
      commandTimeoutMs: options.timeoutMs,
      onLost: () => { this.#lost() }
    })
  }

  /**
   * Counts the connections that ended unasked: a CAS learnt before is not trusted after, since
   * a memcached restarted empty counts CAS values from 1 again and one may come back on another
   * copy of the same key.
   */
  get connection (): number {
    return this.#connectionsLost
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

  /** True from a failed command until a command succeeds (the backoff window may end sooner). */
  get failing (): boolean {
    return this.#failingSince !== undefined
  }

  /** True while the node is inside its backoff window after a failure. */
  get down (): boolean {
    return this.#downUntil > this.#now()
  }

  /** True while the node is inside its backoff window after it refused stores; it may still answer reads. */
  get refusing (): boolean {
    return this.#refusedUntil > this.#now()
  }

  /** Whether writes and new placements should go here: not down, not refusing. */
  get takesWrites (): boolean {
    return !this.down && !this.refusing
  }

  /**
   * The node answers but will not store: a write gave up after repeated CAS conflicts (a node
   * that refuses every store, or contention no writer wins). Writes and placements avoid it
   * for a backoff window that reads answered meanwhile do not end (they would, were this a
   * failure: the node answers them); a store it takes does. Returns the error to throw.
   */
  refused (command: Command, reason: string): NodeUnavailable {
    const err = new NodeUnavailable(this.address, command, reason)
    const now = this.#now()
    if (this.#refusedUntil > now) return err
    const backoff = backoffAfter(this.#refusals)
    this.#refusals++
    this.#refusedUntil = now + backoff
    const fields = { node: this.address, code: err.code, command, backoffMs: backoff }
    if (this.#refusals === 1) this.#options.log.warn(fields, `${err.message}: writes go to the next live nodes meanwhile`)
    else this.#options.log.debug(fields, err.message)
    return err
  }

  async gets (key: string): Promise<StoredValue | undefined> {
    return await this.#run('gets', async () => await this.#connection.get(key))
  }

  /**
   * Reads the copy (with its CAS token) and refreshes its TTL in one command (`mg v c T`), so a
   * revalidation learns what is stored, not only that something is.
   */
  async gats (key: string): Promise<StoredValue | undefined> {
    return await this.#run('gats', async () => await this.#connection.get(key, this.#options.ttl))
  }

  /** Stores only if absent: the new item's CAS, or undefined when the key exists. `ttl` (seconds) overrides the item TTL. */
  async add (key: string, value: string, ttl = this.#options.ttl): Promise<string | undefined> {
    return await this.#store('add', { mode: 'add', ttl }, key, value)
  }

  /** Stores only if the item still has CAS `cas`: its new CAS, or undefined (changed or gone since). */
  async cas (key: string, value: string, cas: string, ttl = this.#options.ttl): Promise<string | undefined> {
    return await this.#store('cas', { mode: 'set', ttl, cas }, key, value)
  }

  /** Resolves false when there was nothing to delete. */
  async delete (key: string): Promise<boolean> {
    return await this.#run('delete', async () => await this.#connection.delete(key))
  }

  /**
   * Opens the connection if needed and asks for memcached's version: true when it answers. A
   * probe is not use (a node only cookies named is still forgotten when idle); a failed one marks
   * the node down like any command.
   */
  async probe (): Promise<boolean> {
    return await this.#run('version', async () => await this.#connection.version(), false).then(() => true, () => false)
  }

  close (): void {
    this.#closed = true
    clearTimeout(this.#probe)
    this.#connection.close()
  }

  /**
   * The connection ended: memcached may be restarting. A probe (`version`) a moment later
   * reconnects, so `onRecovered` fires as soon as it answers, whether or not anything else is
   * sent to this node meanwhile; a failed probe marks the node down and is tried again at the
   * backoff's pace until one answers (a memcached still exiting refuses the first one, and
   * its restart must be noticed without waiting for a request).
   */
  #lost (): void {
    this.#connectionLost = true
    this.#connectionsLost++
    this.#probeLater()
  }

  #probeLater (): void {
    if (this.#probe !== undefined || this.#closed) return
    // Not before the backoff window ends: a dead node is probed at the backoff's pace.
    this.#probe = setTimeout(() => {
      this.#probe = undefined
      if (!this.#connectionLost) return
      void this.probe().then((answered) => { if (!answered && this.#connectionLost) this.#probeLater() })
    }, Math.max(BACKOFF_MIN_MS, this.#downUntil - this.#now()))
    this.#probe.unref()
  }

  async #store (command: Command, options: { readonly mode: 'add' | 'set', readonly ttl: number, readonly cas?: string }, key: string, value: string): Promise<string | undefined> {
    const outcome: MetaStore = await this.#run(command, async () => await this.#connection.store(key, value, options))
    if (!outcome.stored) return undefined
    if (this.#refusals > 0) {
      this.#options.log.info({ node: this.address }, 'memcached node stores again')
      this.#refusals = 0
      this.#refusedUntil = 0
    }
    return outcome.cas
  }

  async #run<T> (command: Command, send: () => Promise<T>, use = true): Promise<T> {
    const started = performance.now()
    if (use) this.#lastUsedAt = this.#now()
    try {
      // The connection's own deadline (timeoutMs, connect included) fails the command and
      // resets the connection, whose stream can no longer be trusted.
      const result = await send()
      this.#succeeded()
      this.#options.ops.observe(this.address, command, isMiss(result) ? 'miss' : 'ok', performance.now() - started)
      return result
    } catch (err) {
      // An invalid key is a bug of ours, not a node failure.
      if (!(err instanceof MetaConnectionError)) throw err
      const failure = new NodeUnavailable(this.address, command, err.message)
      this.#failed(failure)
      this.#options.ops.observe(this.address, command, 'error', performance.now() - started)
      throw failure
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
    const backoff = backoffAfter(this.#failures)
    this.#failures++
    this.#downUntil = now + backoff
    const fields = { node: this.address, code: err.code, command: err.command, backoffMs: backoff }
    if (this.#failures === 1) this.#options.log.warn(fields, err.message)
    else this.#options.log.debug(fields, err.message)
  }
}

/** A read that found nothing, a store that did not happen, a delete of nothing: answered, but a miss. */
function isMiss (result: unknown): boolean {
  if (result === undefined || result === false) return true
  return typeof result === 'object' && result !== null && 'stored' in result && result.stored === false
}
