import type { Logger } from 'pino'
import { codes } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { NodeUnavailable, type MemcachedNode } from '../memcached/node.js'
import type { NodePool } from '../memcached/pool.js'
import { encodeObject, mergePatch, parseStored, type SessionObject } from './data.js'
import { decodeCopy, encodeCopy, type StoredCopy } from './record.js'

/**
 * What a write means when memcached already holds an equal or newer version (another node
 * changed the session meanwhile): a merge is re-applied to that copy, a set wins with a
 * higher version, a copy (relocation, repair, regeneration) yields to it.
 */
export type WriteKind =
  | { readonly type: 'set' }
  | { readonly type: 'merge', readonly patch: SessionObject }
  | { readonly type: 'copy' }

export interface WriteJob {
  readonly key: string
  readonly version: number
  readonly header: string
  readonly kind: WriteKind
  readonly primary: string
  readonly backup: string | undefined
  /** A key minted just now: try `add` before anything else, saving a round trip. */
  readonly fresh: boolean
}

export interface WriteResult {
  /** What the primary (or the node that took its place) now holds. */
  readonly copy: StoredCopy
  readonly primary: string
  readonly backup: string | undefined
}

export interface WriterOptions {
  readonly pool: NodePool
  readonly keyPrefix: string
  readonly maxBytes: number
  readonly log: Logger
  readonly metrics: Metrics
  /** Called with the outcome of every write, to bring the local copy and placement up to date. */
  readonly onWritten: (job: WriteJob, result: WriteResult) => void
}

const CAS_ATTEMPTS = 5
const RETRY_INTERVAL_MS = 1000

/**
 * Writes sessions to memcached with gets/cas so that a version never replaces an equal or
 * newer one. Writes of one key run in order (a later merge must not land before an earlier
 * one); writes that reached no node are kept and retried when nodes come back.
 */
export class SessionWriter {
  readonly #options: WriterOptions
  readonly #chains = new Map<string, Promise<unknown>>()
  readonly #failed = new Map<string, WriteJob[]>()
  #pending = 0
  #retryTimer: NodeJS.Timeout | undefined

  constructor (options: WriterOptions) {
    this.#options = options
  }

  /** Writes queued or in flight, plus failed writes waiting for a retry. */
  get pending (): number {
    let failed = 0
    for (const jobs of this.#failed.values()) failed += jobs.length
    return this.#pending + failed
  }

  /** Queues a write after earlier writes of the same key. Never rejects. */
  write (job: WriteJob): Promise<WriteResult | undefined> {
    return this.#enqueue(job.key, async () => await this.#write(job))
  }

  /** Queues deletion of every copy. Never rejects. */
  delete (key: string, addresses: ReadonlyArray<string | undefined>): Promise<void> {
    this.#failed.delete(key)
    return this.#enqueue(key, async () => {
      const mkey = this.#options.keyPrefix + key
      await Promise.all(addresses.map(async (a) => {
        if (a === undefined) return
        await this.#options.pool.node(a)?.delete(mkey).catch(() => {
          this.#options.log.warn({ node: a, code: codes.SESSION_WRITE_FAILED }, 'could not delete a destroyed session copy; it expires with its TTL')
        })
      }))
    })
  }

  /** Resolves when every queued write has settled, or after `ms`; returns what is left. */
  async flush (ms: number): Promise<number> {
    const deadline = Date.now() + ms
    while (this.pending > 0 && Date.now() < deadline) {
      if (this.#failed.size > 0) this.#retryFailed()
      const chains = [...this.#chains.values()]
      const wait = new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - Date.now()))).unref())
      await Promise.race([Promise.all(chains), wait])
    }
    return this.pending
  }

  close (): void {
    clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
  }

  #enqueue<T> (key: string, task: () => Promise<T>): Promise<T> {
    this.#pending++
    this.#options.metrics.pendingWrites.inc()
    const previous = this.#chains.get(key)
    const run = previous === undefined ? task() : previous.then(task, task)
    const settled = run.finally(() => {
      this.#pending--
      this.#options.metrics.pendingWrites.dec()
      if (this.#chains.get(key) === settled) this.#chains.delete(key)
    })
    this.#chains.set(key, settled)
    return settled
  }

  async #write (job: WriteJob): Promise<WriteResult | undefined> {
    const { pool } = this.#options
    const mkey = this.#options.keyPrefix + job.key
    let placement = this.#placement(job.key, job.primary, job.backup)
    let copy: StoredCopy | undefined
    // The primary decides the final version; a failing one is now marked down, so placing
    // again hands its role to the next live node.
    for (let attempt = 0; attempt < 3 && placement !== undefined && copy === undefined; attempt++) {
      try {
        copy = await this.#writeCopy(pool.node(placement.primary) as MemcachedNode, mkey, job.version, job.header, job.kind, job.fresh)
      } catch (err) {
        if (!(err instanceof NodeUnavailable)) throw err
        placement = this.#placement(job.key, placement.primary, placement.backup)
      }
    }
    if (placement === undefined || copy === undefined) {
      this.#options.metrics.writeFailures.inc()
      this.#options.log.warn({ code: codes.SESSION_WRITE_FAILED }, 'session write reached no memcached node; kept locally and retried')
      this.#keepForRetry(job)
      return undefined
    }
    if (placement.backup !== undefined) {
      try {
        await this.#writeCopy(pool.node(placement.backup) as MemcachedNode, mkey, copy.version, copy.header, { type: 'copy' }, job.fresh)
      } catch (err) {
        if (!(err instanceof NodeUnavailable)) throw err
        const again = this.#placement(job.key, placement.primary, placement.backup)
        if (again?.primary === placement.primary && again.backup !== undefined && again.backup !== placement.backup) {
          await this.#writeCopy(pool.node(again.backup) as MemcachedNode, mkey, copy.version, copy.header, { type: 'copy' }, false)
            .then(() => { placement = again }, () => undefined)
        }
      }
    }
    if (placement.primary !== job.primary || placement.backup !== job.backup) this.#options.metrics.relocations.inc()
    const result = { copy, primary: placement.primary, backup: placement.backup }
    this.#options.onWritten(job, result)
    return result
  }

  /**
   * Where a session should live now: the nodes it names while they are live, the next live
   * configured nodes in its placement order for those that are down. Undefined when no
   * node is live (the write waits for a retry).
   */
  #placement (key: string, primary: string, backup: string | undefined): { primary: string, backup: string | undefined } | undefined {
    const { pool } = this.#options
    const want = backup === undefined ? 1 : 2
    const chosen: string[] = []
    if (pool.isLive(primary)) chosen.push(primary)
    if (backup !== undefined && pool.isLive(backup)) chosen.push(backup)
    for (const candidate of pool.ranked(key)) {
      if (chosen.length >= want) break
      if (!chosen.includes(candidate) && pool.isLive(candidate)) chosen.push(candidate)
    }
    if (chosen.length === 0) return undefined
    return { primary: chosen[0] as string, backup: chosen[1] }
  }

  /** One node, gets/cas until stored or the stored copy wins. Throws NodeUnavailable. */
  async #writeCopy (node: MemcachedNode, mkey: string, version: number, header: string, kind: WriteKind, fresh: boolean): Promise<StoredCopy> {
    // The first command of a new session goes out before the response: another node that
    // gets the next request (round-robin) then finds it.
    if (fresh && await node.add(mkey, encodeCopy(version, header))) return { version, header }
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const stored = await node.gets(mkey)
      if (stored === undefined) {
        if (await node.add(mkey, encodeCopy(version, header))) return { version, header }
        continue
      }
      const current = decodeCopy(stored.value)
      let next = { version, header }
      if (current !== undefined && current.version >= version) {
        if (kind.type === 'copy') return current
        if (kind.type === 'merge') {
          try {
            next = { version: current.version + 1, header: encodeObject(mergePatch(parseStored(current.header), kind.patch) as SessionObject, 'X-Session-Merge', this.#options.maxBytes).header }
          } catch {
            return current // re-applied patch would exceed maxBytes: the newer copy stands
          }
        } else {
          next = { version: current.version + 1, header }
        }
      }
      if (await node.cas(mkey, encodeCopy(next.version, next.header), stored.cas)) return next
    }
    // Persistent contention: someone else keeps winning; their copy is newer than ours.
    const stored = await node.gets(mkey)
    const current = stored === undefined ? undefined : decodeCopy(stored.value)
    if (current !== undefined) return current
    throw new NodeUnavailable(node.address, 'cas', 'gave up after repeated conflicts')
  }

  #keepForRetry (job: WriteJob): void {
    const jobs = this.#failed.get(job.key)
    if (jobs === undefined) this.#failed.set(job.key, [job])
    else jobs.push(job)
    if (this.#retryTimer === undefined) {
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined
        this.#retryFailed()
      }, RETRY_INTERVAL_MS)
      this.#retryTimer.unref()
    }
  }

  #retryFailed (): void {
    const failed = [...this.#failed.values()]
    this.#failed.clear()
    for (const jobs of failed) for (const job of jobs) void this.write(job)
  }
}
