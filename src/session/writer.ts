import type { Logger } from 'pino'
import { codes } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { NodeUnavailable, type MemcachedNode } from '../memcached/node.js'
import type { NodePool } from '../memcached/pool.js'
import { encodeObject, isObject, mergePatch, parseStored, setMember, type SessionObject } from './data.js'
import type { StoredCopy } from './record.js'
import type { CopySeal } from './sealed-copy.js'
import { keyHash } from './key.js'

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
  /**
   * A miss may be filled: true for new keys, copies (relocation, repair) and writes retried
   * after an outage (the node may be back empty). A plain change that finds its session on
   * neither node means the session was destroyed or expired meanwhile: it is not recreated.
   */
  readonly mayCreate: boolean
  /** Regeneration: the old key, which must still exist, or the new key is not written. */
  readonly replaces?: { readonly key: string, readonly addresses: readonly string[] }
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
  readonly seal: CopySeal
  readonly maxBytes: number
  readonly log: Logger
  readonly metrics: Metrics
  /** Session TTL in ms: how long a copy left on an unreachable node can live. */
  readonly ttlMs: number
  /** Called when a write finds its session gone (destroyed elsewhere, expired). */
  readonly onGone: (key: string) => void
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
  /** Per key, the write that reached no node, waiting for a retry (later failures combined in). */
  readonly #failed = new Map<string, WriteJob>()
  /** Per key, the write queued behind the one in flight, not started yet. */
  readonly #waiting = new Map<string, WaitingWrite>()
  /** Copies to delete where a node could not be reached: `address key` -> what and until when. */
  readonly #deletes = new Map<string, PendingDelete>()
  #pending = 0
  #retryTimer: NodeJS.Timeout | undefined

  constructor (options: WriterOptions) {
    this.#options = options
  }

  /** Writes queued or in flight, plus failed writes waiting for a retry. */
  get pending (): number {
    return this.#pending + this.#failed.size
  }

  /**
   * Queues a write after earlier writes of the same key, failed ones included: a retried old
   * write must never land after a newer one. Never rejects.
   */
  write (job: WriteJob): Promise<WriteResult | undefined> {
    // A failed write of this key goes first, folded into this one, never after it.
    const failed = this.#failed.get(job.key)
    if (failed !== undefined) {
      this.#failed.delete(job.key)
      job = combine(failed, job)
    }
    // A write of this key still waiting for its turn absorbs this one: a busy session costs
    // one write per round trip, not one per request, and the queue cannot grow without bound.
    const waiting = this.#waiting.get(job.key)
    if (waiting !== undefined) {
      waiting.job = combine(waiting.job, job)
      return waiting.done
    }
    const slot: WaitingWrite = { job, done: Promise.resolve(undefined) }
    this.#waiting.set(job.key, slot)
    slot.done = this.#enqueue(job.key, async () => {
      if (this.#waiting.get(job.key) === slot) this.#waiting.delete(job.key)
      return await this.#write(slot.job)
    })
    return slot.done
  }

  /**
   * Queues deletion of the copies at `addresses`; deletes a down node cannot take now are
   * retried until the copy would have expired anyway. Never rejects.
   */
  delete (key: string, addresses: readonly string[]): Promise<void> {
    this.#failed.delete(key)
    return this.#enqueue(key, async () => {
      await Promise.all(addresses.map(async (address) => await this.#deleteCopy(key, address, Infinity)))
    })
  }

  /**
   * Reseals, under the signing secret, the copies at `addresses` that another secret sealed,
   * so they still open once that secret is retired (a copy is otherwise resealed only at its
   * next change, and an unchanged session's copy can outlive the retirement). Same version and
   * data; a copy that changed meanwhile is left alone. Never rejects.
   */
  reseal (key: string, addresses: readonly string[]): Promise<void> {
    return this.#enqueue(key, async () => {
      await Promise.all(addresses.map(async (address) => await this.#resealCopy(key, address)))
    })
  }

  /** Resolves when every queued write has settled, or after `ms`; returns what is left. */
  async flush (ms: number): Promise<number> {
    const deadline = performance.now() + ms
    while (this.pending > 0 && performance.now() < deadline) {
      if (this.#failed.size > 0) this.#retryFailed()
      const chains = [...this.#chains.values()]
      const wait = new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - performance.now()))).unref())
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
    if (job.replaces !== undefined && placement !== undefined && !await this.#stillExists(job.replaces.key, job.replaces.addresses)) {
      this.#options.log.info({ session: keyHash(job.replaces.key) }, 'session destroyed before its regeneration was stored; the new key is dropped')
      this.#options.onGone(job.key)
      return undefined
    }
    let mayCreate = job.mayCreate
    let copy: StoredCopy | undefined
    // The primary decides the final version; a failing one is now marked down, so placing
    // again hands its role to the next live node.
    for (let attempt = 0; attempt < 3 && placement !== undefined && copy === undefined; attempt++) {
      try {
        copy = await this.#writeCopy(pool.node(placement.primary) as MemcachedNode, mkey, job.version, job.header, job.kind, job.fresh, mayCreate)
      } catch (err) {
        if (err instanceof SessionMissing) {
          // Missing on the primary: a node back from a restart, or a session that ended. The
          // other copy decides.
          const other = [placement.backup, job.backup, job.primary].find((a) => a !== undefined && a !== placement?.primary)
          if (other !== undefined && await this.#stillExists(job.key, [other])) {
            mayCreate = true
            attempt--
            continue
          }
          this.#options.log.info({ session: keyHash(job.key) }, 'session is gone from memcached (destroyed or expired); the change is not stored')
          this.#options.onGone(job.key)
          return undefined
        }
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
        await this.#writeCopy(pool.node(placement.backup) as MemcachedNode, mkey, copy.version, copy.header, { type: 'copy' }, job.fresh, true)
      } catch (err) {
        if (!(err instanceof NodeUnavailable)) throw err
        const again = this.#placement(job.key, placement.primary, placement.backup)
        if (again?.primary === placement.primary && again.backup !== undefined && again.backup !== placement.backup) {
          await this.#writeCopy(pool.node(again.backup) as MemcachedNode, mkey, copy.version, copy.header, { type: 'copy' }, false, true)
            .then(() => { placement = again }, () => undefined)
        }
      }
    }
    if (placement.primary !== job.primary || placement.backup !== job.backup) {
      this.#options.metrics.relocations.inc()
      // The nodes left behind may come back holding this version: a replayed old cookie
      // naming them must not find it, so their copies go once they answer again.
      for (const left of [job.primary, job.backup]) {
        if (left !== undefined && left !== placement.primary && left !== placement.backup) this.#queueDelete(job.key, left, copy.version)
      }
    }
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

  /** True when some node holds the key (a node that fails counts as holding it: unknown). */
  async #stillExists (key: string, addresses: readonly string[]): Promise<boolean> {
    const mkey = this.#options.keyPrefix + key
    for (const address of addresses) {
      const node = this.#options.pool.node(address)
      if (node === undefined) continue
      try {
        if (await node.gets(mkey) !== undefined) return true
      } catch {
        return true
      }
    }
    return false
  }

  /**
   * One node, gets/cas until stored or the stored copy wins. Throws NodeUnavailable, or
   * SessionMissing when the key is absent and `mayCreate` is false.
   */
  async #writeCopy (node: MemcachedNode, mkey: string, version: number, header: string, kind: WriteKind, fresh: boolean, mayCreate: boolean): Promise<StoredCopy> {
    const seal = this.#options.seal
    // The first command of a new session goes out before the response: another node that
    // gets the next request (round-robin) then finds it.
    if (fresh && await node.add(mkey, seal.seal(mkey, { version, header }))) return { version, header }
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const stored = await node.gets(mkey)
      if (stored === undefined) {
        if (!mayCreate) throw new SessionMissing()
        if (await node.add(mkey, seal.seal(mkey, { version, header }))) return { version, header }
        continue
      }
      const current = seal.open(mkey, stored.value)
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
      if (await node.cas(mkey, seal.seal(mkey, next), stored.cas)) return next
    }
    // Persistent contention: someone else keeps winning; their copy is newer than ours.
    const stored = await node.gets(mkey)
    const current = stored === undefined ? undefined : seal.open(mkey, stored.value)
    if (current !== undefined) return current
    throw new NodeUnavailable(node.address, 'cas', 'gave up after repeated conflicts')
  }

  async #resealCopy (key: string, address: string): Promise<void> {
    const node = this.#options.pool.node(address)
    if (node === undefined || node.down) return
    const { seal, keyPrefix } = this.#options
    const mkey = keyPrefix + key
    try {
      const stored = await node.gets(mkey)
      const copy = stored === undefined ? undefined : seal.open(mkey, stored.value)
      if (stored === undefined || copy === undefined || copy.current) return
      await node.cas(mkey, seal.seal(mkey, copy), stored.cas)
    } catch (err) {
      // The next read of it tries again.
      if (!(err instanceof NodeUnavailable)) throw err
    }
  }

  /** Deletes one copy; `upTo` spares a copy newer than that version (it is live again there). */
  async #deleteCopy (key: string, address: string, upTo: number): Promise<void> {
    const node = this.#options.pool.node(address)
    if (node === undefined) return
    const mkey = this.#options.keyPrefix + key
    try {
      if (node.down) throw new NodeUnavailable(address, 'delete', 'node is marked down')
      if (upTo !== Infinity) {
        const seal = this.#options.seal
        const stored = await node.gets(mkey)
        const copy = stored === undefined ? undefined : seal.open(mkey, stored.value)
        if (copy === undefined || copy.version > upTo) return
      }
      await node.delete(mkey)
    } catch (err) {
      if (!(err instanceof NodeUnavailable)) throw err
      this.#queueDelete(key, address, upTo)
    }
  }

  #queueDelete (key: string, address: string, upTo: number): void {
    const id = `${address} ${key}`
    const existing = this.#deletes.get(id)
    this.#deletes.set(id, { key, address, upTo: Math.max(upTo, existing?.upTo ?? 0), until: performance.now() + this.#options.ttlMs })
    this.#scheduleRetry()
  }

  /**
   * Keeps a write that reached no node, combined with any earlier one of the same key (the
   * later state, the merge patches composed), so an outage holds one job per session.
   */
  #keepForRetry (job: WriteJob): void {
    const earlier = this.#failed.get(job.key)
    // After an outage the node may be back empty: the retry may fill the miss.
    const retry: WriteJob = { ...job, mayCreate: true }
    this.#failed.set(job.key, earlier === undefined ? retry : combine(earlier, retry))
    this.#scheduleRetry()
  }

  #scheduleRetry (): void {
    if (this.#retryTimer !== undefined) return
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#retryFailed()
    }, RETRY_INTERVAL_MS)
    this.#retryTimer.unref()
  }

  #retryFailed (): void {
    const failed = [...this.#failed.values()]
    this.#failed.clear()
    for (const job of failed) void this.write(job)
    const now = performance.now()
    for (const [id, d] of [...this.#deletes]) {
      this.#deletes.delete(id)
      // Past its TTL the copy has expired by itself.
      if (d.until > now) void this.#enqueue(d.key, async () => await this.#deleteCopy(d.key, d.address, d.upTo))
    }
  }
}

interface WaitingWrite {
  job: WriteJob
  done: Promise<WriteResult | undefined>
}

/**
 * Two queued writes of one key as one: the later state, and the changes both stand for, so a
 * conflict with another node's copy re-applies exactly what this node changed.
 */
export function combine (earlier: WriteJob, later: WriteJob): WriteJob {
  return {
    ...later,
    kind: combineKinds(earlier.kind, later.kind),
    fresh: earlier.fresh,
    mayCreate: earlier.mayCreate || later.mayCreate,
    replaces: earlier.replaces ?? later.replaces
  }
}

function combineKinds (a: WriteKind, b: WriteKind): WriteKind {
  if (b.type === 'set' || a.type === 'set') return { type: 'set' }
  if (a.type === 'copy') return b
  if (b.type === 'copy') return a
  const patch = composePatches(a.patch, b.patch)
  return patch === undefined ? { type: 'set' } : { type: 'merge', patch }
}

/**
 * One RFC 7396 patch C with merge(merge(T, A), B) = merge(T, C) for every T, or undefined when
 * no such patch exists (A puts a non-object where B then merges an object): the caller then
 * writes the whole state instead.
 */
export function composePatches (a: SessionObject, b: SessionObject): SessionObject | undefined {
  const out: SessionObject = { ...a }
  for (const [name, value] of Object.entries(b)) {
    const before = out[name]
    if (!isObject(value) || !(name in out)) {
      setMember(out, name, value)
      continue
    }
    if (!isObject(before)) return undefined
    const inner = composePatches(before, value)
    if (inner === undefined) return undefined
    setMember(out, name, inner)
  }
  return out
}

/** The key a plain change wanted to update is not on this node. */
class SessionMissing extends Error {}

interface PendingDelete {
  readonly key: string
  readonly address: string
  readonly upTo: number
  readonly until: number
}
