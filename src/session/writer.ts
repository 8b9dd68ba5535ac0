import { setTimeout as sleep } from 'node:timers/promises'
import { LRUCache } from 'lru-cache'
import type { Logger } from 'pino'
import { codes, NodeUnavailable } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { MemcachedNode, StoredValue } from '../memcached/node.js'
import type { NodePool } from '../memcached/pool.js'
import { encodeObject, isObject, mergePatch, parseStored, setMember, type SessionObject } from './data.js'
import type { StoredCopy } from './record.js'
import type { CopySeal } from './sealed-copy.js'
import { keyHash } from './key.js'

/**
 * What a write does to the copy a node holds (see `nextCopy`): a change (set, merge) is applied
 * to it, a copy (restore, relocation, the backup's copy of the primary's result) only fills a
 * miss or replaces an older version, an end writes a tombstone.
 */
export type WriteKind =
  | { readonly type: 'set' }
  | { readonly type: 'merge', readonly patch: SessionObject }
  | { readonly type: 'copy' }
  | { readonly type: 'end' }

export interface WriteJob {
  readonly key: string
  readonly version: number
  readonly header: string
  readonly kind: WriteKind
  readonly primary: string
  readonly backup: string | undefined
  /**
   * The version the change was made on locally (0 for a new key). A stored copy at least this
   * new gets the change applied to it; an older one was lost and replaced by a stale copy
   * (a restart, a failover), and this node's state, which is newer, is written instead.
   */
  readonly base: number
  /** The data at `base` the change was made on, when known: a stored copy that is exactly it needs no re-merge. */
  readonly baseHeader?: string
  /** A key minted just now: try `add` before anything else, saving a round trip. */
  readonly fresh: boolean
  /** Regeneration: the old key, which gets a tombstone; already ended elsewhere, the new key ends too. */
  readonly replaces?: { readonly key: string, readonly addresses: readonly string[], readonly version: number }
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
  /**
   * Bound on the data held by writes waiting for a node (cache.maxBytes: no more than the
   * cache holds); past it the oldest are dropped, counted and logged once per outage.
   */
  readonly maxPendingBytes: number
  /** Tombstone TTL in seconds: idleTimeout + revalidateMs, as long as any sidecar may still serve the key. */
  readonly tombstoneTtl: number
  /**
   * Hears the outcome of every write that reached memcached, retried ones included, so the
   * owner of the local copies (the store) brings them up to date: what the primary now holds
   * and where, or 'ended' when a tombstone was found (the session was destroyed elsewhere).
   */
  readonly onSettled: (job: WriteJob, outcome: WriteResult | 'ended') => void
}

const CAS_ATTEMPTS = 5
// While no node takes writes: how often to try again (a node's backoff decides when it is probed).
const RETRY_INTERVAL_MS = 1000
// Once a node is live again, pending writes drain in batches, a tick apart, so a backlog left
// by an outage does not flood memcached (and the requests waiting on it) all at once.
const DRAIN_BATCH = 200
const DRAIN_TICK_MS = 10
// flush(): the pause between rounds of retries while writes are still pending.
const FLUSH_ROUND_MS = 10

/**
 * Writes sessions to memcached with gets/cas: a change is applied to the copy the primary
 * holds (versions are ordered there), the backup gets the primary's result, and a tombstone is
 * never overwritten. Writes of one key run in order (a later merge must not land before an
 * earlier one); writes that reached no node are kept and retried when nodes come back.
 */
export class SessionWriter {
  readonly #options: WriterOptions
  readonly #chains = new Map<string, Promise<unknown>>()
  /** Backup copies being written outside their key's queue (see #copyToBackup). */
  readonly #detached = new Set<Promise<void>>()
  /** Per key, the write that reached no node, waiting for a retry (later failures combined in). */
  readonly #failed = new Map<string, WriteJob>()
  #failedBytes = 0
  /** Since when writes have been failing, and how many were kept: for one log line per outage, not one per write. */
  #outage: { since: number, peak: number, dropped: number } | undefined
  /** Per key, the write queued behind the one in flight, not started yet. */
  readonly #waiting = new Map<string, WaitingWrite>()
  /** Copies to delete where a node could not be reached: `address key` -> what and until when. */
  readonly #deletes = new Map<string, PendingDelete>()
  /** Tombstones a node could not take yet: `address key` -> what and until when. */
  readonly #tombstones = new Map<string, PendingDelete>()
  /**
   * Tombstones this sidecar wrote or found, per `address key`, for as long as they live: written again
   * to a node that answers after an outage, which may be back from a restart, empty (a
   * sidecar still holding the session would otherwise store it again).
   */
  readonly #ends: LRUCache<string, PendingDelete>
  /**
   * Per `address memcachedKey`, the copy this sidecar last stored or read there and its CAS: a
   * change is applied to it and stored with one command, no read first. Anything written there
   * since changes the CAS, the store is refused, and the copy is read as before.
   */
  readonly #known: LRUCache<string, KnownCopy>
  /** The last copy sealed per memcached key, for the backup's write of the same version (see #seal). */
  readonly #lastSealed = new LRUCache<string, { readonly copy: StoredCopy, readonly sealed: string }>({ max: 256 })
  #pending = 0
  #retryTimer: NodeJS.Timeout | undefined

  constructor (options: WriterOptions) {
    this.#options = options
    this.#ends = new LRUCache<string, PendingDelete>({ max: 100_000, ttl: options.tombstoneTtl * 1000 })
    // Bounded like the cache: at most one more copy of each session it holds, per node.
    this.#known = new LRUCache<string, KnownCopy>({ maxSize: Math.max(1, 2 * options.maxPendingBytes), sizeCalculation: (k) => k.copy.header.length + KNOWN_OVERHEAD })
    options.pool.onRecovered((address) => this.#reassert(address))
  }

  /** Writes again the tombstones this sidecar wrote to `address` (a tombstone already there stands). */
  #reassert (address: string): void {
    for (const [id, d] of this.#ends.entries()) {
      if (d.address === address && !this.#tombstones.has(id)) this.#tombstones.set(id, d)
    }
    if (this.#tombstones.size > 0) this.#scheduleRetry(DRAIN_TICK_MS)
  }

  /** Writes queued or in flight, plus failed writes waiting for a retry. */
  get pending (): number {
    return this.#pending + this.#failed.size + this.#tombstones.size
  }

  /**
   * Queues a write after earlier writes of the same key, failed ones included: a retried old
   * write must never land after a newer one. Never rejects.
   */
  write (job: WriteJob): Promise<WriteResult | undefined> {
    // A failed write of this key goes first, folded into this one, never after it.
    const failed = this.#takeFailed(job.key)
    if (failed !== undefined) job = combine(failed, job)
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
   * Ends a session: a tombstone at `version` or above on every node at `addresses`. Resolves
   * when the first address (the primary) has taken it or could not; tombstones a node cannot
   * take now are retried until no sidecar could serve the key any more. `data`: a tombstone's
   * mark (a destroy's by default; a regeneration's when copying one found). Never rejects.
   */
  end (key: string, addresses: readonly string[], version: number, data: string = TOMBSTONE_DATA): Promise<void> {
    this.#takeFailed(key)
    this.#waiting.delete(key)
    return this.#enqueue(key, async () => {
      const [first, ...rest] = addresses.map(async (address) => await this.#endCopy(key, address, version, endMark(data)))
      // The other nodes' tombstones are not waited for, but flush() (a shutdown) waits for them.
      for (const other of rest) this.#detach(other)
      await first
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
    // One timer for the whole flush, not one per round.
    const timeUp = sleep(ms, undefined, { ref: false })
    while (this.pending > 0 && performance.now() < deadline) {
      // Shutting down or told to wait: no pacing.
      if (this.#failed.size + this.#tombstones.size + this.#deletes.size > 0) this.#retryFailed(Infinity)
      await Promise.race([Promise.all([...this.#chains.values(), ...this.#detached]), timeUp])
      // A pause between rounds, on the timer queue: retries against a node still down fail at
      // once, and a loop of microtasks would starve the timers and sockets that see it return.
      if (this.pending > 0) await sleep(Math.max(0, Math.min(FLUSH_ROUND_MS, deadline - performance.now())))
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
    if (job.replaces === undefined) return await this.#store(job)
    // Regeneration: the new key (its `add` goes out before the response, so another sidecar
    // finds it at once) and the old key's tombstone together. The old key already destroyed (a
    // logout elsewhere won the race) ends the new one too; a miss does not (a login during an
    // outage is kept), and neither does an earlier regeneration of it: the same login sent
    // again (its first answer lost with a sidecar that died, or a form submitted twice), whose
    // new key must not log the user out. A change another sidecar stored on the old key
    // meanwhile (the copy the tombstone replaced is newer than this node's) is carried over.
    const old = job.replaces
    // The old key's other nodes get their tombstones outside this key's queue: a hung backup of
    // the old key must not hold up the new key's next writes (chaos seed 7: a change answered
    // after a login waited a second for the old key's frozen backup, and another sidecar read
    // the copy before it).
    for (const a of old.addresses.slice(1)) this.#detach(this.#endCopy(old.key, a, old.version, REGENERATED))
    const [result, first] = await Promise.all([
      this.#store(job),
      this.#endCopy(old.key, old.addresses[0] as string, old.version, REGENERATED)
    ])
    if (result === undefined) return result
    if (first.state === 'regenerated-before') this.#options.log.debug({ session: keyHash(old.key) }, 'session was already regenerated (a login sent again): the new key stands')
    if (first.state === 'ended-before') {
      this.#options.log.info({ session: keyHash(old.key) }, 'session was destroyed elsewhere before its regeneration was stored; the new key ends too')
      this.#options.onSettled(job, 'ended')
      await Promise.all([result.primary, result.backup].filter((a) => a !== undefined).map(async (a) => await this.#endCopy(job.key, a, result.copy.version + 1)))
      return undefined
    }
    const newer = first.live !== undefined && first.live.version >= old.version ? first.live : undefined
    const carried = newer === undefined ? undefined : carryOver(job, newer, this.#options.maxBytes)
    if (carried === undefined || carried.header === result.copy.header) return result
    // Written as the next version of the new key: the cookie already issued stays valid.
    return await this.#store({ ...carried, kind: { type: 'set' }, version: result.copy.version + 1, base: result.copy.version, fresh: false, primary: result.primary, backup: result.backup, replaces: undefined })
  }

  /** The primary decides the version, the backup gets its result; a tombstone found ends the session here. */
  async #store (job: WriteJob): Promise<WriteResult | undefined> {
    const { pool } = this.#options
    const mkey = this.#options.keyPrefix + job.key
    let placement = this.#placement(job.key, job.primary, job.backup)
    let copy: StoredCopy | undefined
    // A new key has no earlier version to order: its backup gets the same `add` at once, so a
    // primary that hangs does not hide a new session (a login) from the next request.
    const earlyBackup = job.fresh ? placement?.backup : undefined
    const early = earlyBackup === undefined ? undefined : this.#addEarly(earlyBackup, mkey, nextCopy(undefined, job, this.#options.maxBytes) as StoredCopy)
    try {
      // A failing primary is now marked down, so placing again hands its role to the next live node.
      for (let attempt = 0; attempt < 3 && placement !== undefined && copy === undefined; attempt++) {
        const other = [placement.backup, job.backup, job.primary].find((a) => a !== undefined && a !== placement?.primary)
        try {
          copy = await this.#writeCopy(pool.node(placement.primary) as MemcachedNode, mkey, job, async () => await this.#peek(mkey, other))
        } catch (err) {
          if (!(err instanceof NodeUnavailable)) throw err
          placement = this.#placement(job.key, placement.primary, placement.backup)
          // The backup takes the primary's role and already holds this new key from its early
          // add: that was this write. Writing it again there would apply it above changes other
          // sidecars made on it since (a login's Set replacing their data).
          if (early !== undefined && placement?.primary === earlyBackup && await early) copy = nextCopy(undefined, job, this.#options.maxBytes) as StoredCopy
        }
      }
      if (placement === undefined || copy === undefined) {
        this.#options.metrics.writeFailures.inc()
        this.#keepForRetry(job)
        return undefined
      }
      if (placement.backup !== undefined) {
        const stored: StoredCopy = copy
        const backup: Placement = placement
        // The early add already carries this very copy there, unless it failed or lost.
        const earlySame = early !== undefined && backup.backup === earlyBackup && stored.version === job.version && stored.header === job.header
        this.#detach(earlySame ? early.then(async (added) => { if (!added) await this.#copyToBackup(job, mkey, stored, backup) }) : this.#copyToBackup(job, mkey, stored, backup))
      }
    } catch (err) {
      if (!(err instanceof SessionEnded)) throw err
      this.#endedElsewhere(job, err.version, err.data)
      return undefined
    }
    this.#relocated(job.key, job, placement, copy.version)
    const result = { copy, primary: placement.primary, backup: placement.backup }
    this.#options.onSettled(job, result)
    if (this.#outage !== undefined && this.#failed.size === 0) {
      const { since, peak, dropped } = this.#outage
      this.#outage = undefined
      this.#options.log.info({ peakPending: peak, dropped, ms: Math.round(performance.now() - since) }, 'session writes reach memcached again; the writes kept during the outage are stored')
    }
    return result
  }

  /**
   * The backup gets the primary's result outside the key's queue: the next change of the key
   * (and a sync response) waits for the primary only, so a backup that hangs delays nobody. A
   * copy never lowers a version, so two of these landing out of order leave the newer; a
   * tombstone already there wins over them.
   */
  async #copyToBackup (job: WriteJob, mkey: string, copy: StoredCopy, placement: Placement): Promise<void> {
    const { pool } = this.#options
    const asCopy: WriteJob = { ...job, kind: copy.ended ? { type: 'end' } : { type: 'copy' }, version: copy.version, header: copy.header, base: copy.version }
    try {
      try {
        await this.#writeCopy(pool.node(placement.backup as string) as MemcachedNode, mkey, asCopy)
        return
      } catch (err) {
        if (!(err instanceof NodeUnavailable)) throw err
      }
      // The backup failed and is now marked down: the next live node takes its role, and the
      // cookie names it from the next response on.
      const again = this.#placement(job.key, placement.primary, placement.backup)
      if (again?.primary !== placement.primary || again.backup === undefined || again.backup === placement.backup) return
      // The copy goes to a node no cookie names yet, where a logout made from the last cookie
      // writes no tombstone: first make sure the primary has not ended the session meanwhile.
      const onPrimary = await this.#peek(mkey, placement.primary)
      if (onPrimary?.ended === true) throw new SessionEnded(onPrimary)
      try {
        await this.#writeCopy(pool.node(again.backup) as MemcachedNode, mkey, asCopy)
      } catch (err) {
        if (!(err instanceof NodeUnavailable)) throw err
        return
      }
      this.#relocated(job.key, placement, again, copy.version)
      this.#options.onSettled(job, { copy, primary: again.primary, backup: again.backup })
    } catch (err) {
      if (!(err instanceof SessionEnded)) throw err
      this.#endedElsewhere(job, err.version, err.data)
    }
  }

  /** Tracks a write that runs outside its key's queue (a backup's copy, a tombstone beyond the primary), so `pending` and `flush()` see it. */
  #detach (write: Promise<unknown>): void {
    this.#pending++
    this.#options.metrics.pendingWrites.inc()
    const settled: Promise<void> = write.then(() => undefined, (err: unknown) => {
      this.#options.log.error({ err: { type: (err as Error).name, message: (err as Error).message }, code: codes.SESSION_WRITE_FAILED }, 'a write outside its session\'s queue (backup copy or tombstone) failed unexpectedly')
    }).finally(() => {
      this.#pending--
      this.#options.metrics.pendingWrites.dec()
      this.#detached.delete(settled)
    })
    this.#detached.add(settled)
  }

  /** A tombstone on a node of the key: destroyed elsewhere. It wins; the key's other nodes get one too. */
  #endedElsewhere (job: WriteJob, version: number, data: string): void {
    this.#options.log.info({ session: keyHash(job.key) }, 'session was destroyed elsewhere; the change is not stored')
    this.#options.onSettled(job, 'ended')
    // The same tombstone, a destroy's or a regeneration's, goes to the key's other nodes.
    for (const a of [job.primary, job.backup]) if (a !== undefined) void this.#endCopy(job.key, a, version, data)
  }

  /**
   * A session moved off nodes that failed: counted, and the nodes left behind may come back
   * holding this version: a replayed old cookie naming them must not find it, so their copies
   * go once they answer again.
   */
  #relocated (key: string, from: Placement, to: Placement, version: number): void {
    if (to.primary === from.primary && to.backup === from.backup) return
    this.#options.metrics.relocations.inc()
    for (const left of [from.primary, from.backup]) {
      if (left !== undefined && left !== to.primary && left !== to.backup) this.#queueDelete(key, left, version)
    }
  }

  /**
   * Where a session should live now: the nodes it names while they are live, the next live
   * configured nodes in its placement order for those that are down. Undefined when no
   * node is live (the write waits for a retry).
   */
  #placement (key: string, primary: string, backup: string | undefined): Placement | undefined {
    const { pool } = this.#options
    // As many copies as configured (a session that lost its backup while a node was down gets
    // one again), never fewer than it has.
    const want = Math.max(pool.replicas, backup === undefined ? 1 : 2)
    const chosen: string[] = []
    if (pool.isLive(primary)) chosen.push(primary)
    if (backup !== undefined && pool.isLive(backup)) chosen.push(backup)
    // The rendezvous order (a hash per node) only when a node is missing: not on every write.
    if (chosen.length < want) {
      for (const candidate of pool.ranked(key)) {
        if (chosen.length >= want) break
        if (!chosen.includes(candidate) && pool.isLive(candidate)) chosen.push(candidate)
      }
    }
    if (chosen.length === 0) return undefined
    return { primary: chosen[0] as string, backup: chosen[1] }
  }

  /** Adds a new key's copy to its backup; false when the node fails or already holds the key. */
  async #addEarly (address: string, mkey: string, copy: StoredCopy): Promise<boolean> {
    const node = this.#options.pool.node(address)
    if (node === undefined || !node.takesWrites) return false
    try {
      const cas = await node.add(mkey, this.#seal(mkey, copy))
      if (cas !== undefined) this.#know(node, mkey, cas, copy)
      return cas !== undefined
    } catch (err) {
      if (err instanceof NodeUnavailable) return false
      throw err
    }
  }

  /** The copy another node holds, when the primary has none; undefined when that node has none or fails. */
  async #peek (mkey: string, address: string | undefined): Promise<StoredCopy | undefined> {
    const node = address === undefined ? undefined : this.#options.pool.node(address)
    if (node === undefined || node.down) return undefined
    try {
      const stored = await node.gets(mkey)
      return stored === undefined ? undefined : this.#options.seal.open(mkey, stored.value)
    } catch (err) {
      if (!(err instanceof NodeUnavailable)) throw err
      return undefined
    }
  }

  /**
   * One node, gets then cas (add on a miss) until stored or the stored copy stands. `onMiss`
   * finds what else may hold the session when this node has no copy (the backup, for the
   * primary); `replaced` hears what the node held when the write landed (or stood). Throws
   * NodeUnavailable, or SessionEnded when the node holds a tombstone.
   */
  async #writeCopy (node: MemcachedNode, mkey: string, job: WriteJob, onMiss?: () => Promise<StoredCopy | undefined>, replaced?: (copy: StoredCopy | undefined) => void): Promise<StoredCopy> {
    const { seal, maxBytes, tombstoneTtl } = this.#options
    const ttl = (copy: StoredCopy): number | undefined => copy.ended ? tombstoneTtl : undefined
    // The first command of a new session goes out before the response: another node that
    // gets the next request (round-robin) then finds it.
    if (job.fresh) {
      const mine = nextCopy(undefined, job, maxBytes) as StoredCopy
      const cas = await node.add(mkey, this.#seal(mkey, mine), ttl(mine))
      if (cas !== undefined) return this.#know(node, mkey, cas, mine)
    }
    // The common case, one command: the copy this sidecar last saw here is still there.
    const known = this.#known.get(`${node.address} ${mkey}`)
    if (known !== undefined && known.connection === node.connection) {
      const next = nextCopy(known.copy, job, maxBytes)
      const cas = typeof next === 'object' ? await node.cas(mkey, this.#seal(mkey, next), known.cas, ttl(next)) : undefined
      if (cas !== undefined) {
        replaced?.(known.copy)
        return this.#know(node, mkey, cas, next as StoredCopy)
      }
      // Changed since (or it holds what decides without a write): read it.
      this.#known.delete(`${node.address} ${mkey}`)
    }
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const stored = await node.gets(mkey)
      // A copy that does not open (forged, damaged) counts as missing: this node's replaces it.
      const current = stored === undefined ? undefined : seal.open(mkey, stored.value)
      // A miss is not a destroy (a restart, an eviction): the change goes onto whatever else
      // holds the session, or this node's own state.
      const basis = current ?? (stored === undefined && onMiss !== undefined ? await onMiss() : undefined)
      const next = nextCopy(basis, job, maxBytes)
      if (next === 'ended') throw new SessionEnded(basis as StoredCopy)
      if (next === 'stands' && current !== undefined) {
        replaced?.(current)
        return this.#know(node, mkey, (stored as StoredValue).cas, current)
      }
      const write = next === 'stands' ? basis as StoredCopy : next
      const cas = stored === undefined ? await node.add(mkey, this.#seal(mkey, write), ttl(write)) : await node.cas(mkey, this.#seal(mkey, write), stored.cas, ttl(write))
      if (cas !== undefined) {
        replaced?.(current)
        return this.#know(node, mkey, cas, write)
      }
    }
    // Persistent contention: someone else keeps winning. A copy or a tombstone yields to what is
    // there; a change (set, merge) must not be dropped: it is tried again, and kept for a retry.
    const stored = await node.gets(mkey)
    const current = stored === undefined ? undefined : seal.open(mkey, stored.value)
    if (current?.ended === true && job.kind.type !== 'end') throw new SessionEnded(current)
    if (current !== undefined && (job.kind.type === 'copy' || job.kind.type === 'end')) {
      replaced?.(current)
      return current
    }
    // A node that keeps refusing (it answers every store NS or EX) would hold every write of
    // the sessions placed there: it is avoided for a while, and this write moves on.
    throw node.refused('cas', 'gave up after repeated conflicts')
  }

  /**
   * A copy sealed for `mkey`: the primary's and the backup's copies of one version are the same
   * bytes (same key, same plaintext), so the backup reuses the primary's seal instead of paying
   * for the encryption twice.
   */
  #seal (mkey: string, copy: StoredCopy): string {
    const last = this.#lastSealed.get(mkey)
    if (last !== undefined && last.copy.version === copy.version && last.copy.ended === copy.ended && last.copy.header === copy.header) return last.sealed
    const sealed = this.#options.seal.seal(mkey, copy)
    this.#lastSealed.set(mkey, { copy, sealed })
    return sealed
  }

  /** What `address` holds for `key`, read just now with its CAS: the next change there skips its read. */
  remember (address: string, key: string, cas: string, copy: StoredCopy): void {
    const node = this.#options.pool.node(address)
    if (node !== undefined) this.#know(node, this.#options.keyPrefix + key, cas, copy)
  }

  /** Remembers what `node` holds under `mkey` (stored or read just now, with its CAS); returns the copy. */
  #know (node: MemcachedNode, mkey: string, cas: string, copy: StoredCopy): StoredCopy {
    this.#known.set(`${node.address} ${mkey}`, { cas, copy, connection: node.connection })
    return copy
  }

  /**
   * A tombstone on one node; one the node cannot take now is retried. Says whether the key had
   * already ended there, and the live copy it replaced.
   */
  async #endCopy (key: string, address: string, version: number, data: string = TOMBSTONE_DATA): Promise<{ state: 'ended' | 'ended-before' | 'regenerated-before' | 'unreachable', live?: StoredCopy }> {
    const node = this.#options.pool.node(address)
    if (node === undefined) return { state: 'unreachable' }
    const mkey = this.#options.keyPrefix + key
    const job: WriteJob = { key, version, header: data, kind: { type: 'end' }, primary: address, backup: undefined, base: 0, fresh: false }
    try {
      if (!node.takesWrites) throw new NodeUnavailable(address, 'cas', 'node is marked down')
      // One gets: the write reports what it replaced (a tombstone already there stands).
      let before: StoredCopy | undefined
      await this.#writeCopy(node, mkey, job, undefined, (copy) => { before = copy })
      // Known ended here either way: written again if the node comes back empty.
      const id = `${address} ${key}`
      this.#ends.set(id, { key, address, upTo: version, until: performance.now() + this.#options.tombstoneTtl * 1000, data: endOf([this.#ends.get(id)?.data, data]) })
      if (before?.ended === true) return { state: before.header === REGENERATED ? 'regenerated-before' : 'ended-before' }
      return before === undefined ? { state: 'ended' } : { state: 'ended', live: before }
    } catch (err) {
      if (!(err instanceof NodeUnavailable)) throw err
      this.#pend(this.#tombstones, key, address, version, this.#options.tombstoneTtl * 1000, data)
      return { state: 'unreachable' }
    }
  }

  async #resealCopy (key: string, address: string): Promise<void> {
    const node = this.#options.pool.node(address)
    if (node === undefined || !node.takesWrites) return
    const { seal, keyPrefix } = this.#options
    const mkey = keyPrefix + key
    try {
      const stored = await node.gets(mkey)
      const copy = stored === undefined ? undefined : seal.open(mkey, stored.value)
      if (stored === undefined || copy === undefined || copy.current) return
      const cas = await node.cas(mkey, seal.seal(mkey, copy), stored.cas, copy.ended ? this.#options.tombstoneTtl : undefined)
      if (cas !== undefined) this.#know(node, mkey, cas, copy)
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
      if (!node.takesWrites) throw new NodeUnavailable(address, 'delete', 'node is marked down')
      if (upTo !== Infinity) {
        const seal = this.#options.seal
        const stored = await node.gets(mkey)
        const copy = stored === undefined ? undefined : seal.open(mkey, stored.value)
        // A tombstone stays: it is what keeps a replayed cookie out.
        if (copy === undefined || copy.version > upTo || copy.ended) return
      }
      this.#known.delete(`${address} ${mkey}`)
      await node.delete(mkey)
    } catch (err) {
      if (!(err instanceof NodeUnavailable)) throw err
      this.#queueDelete(key, address, upTo)
    }
  }

  #queueDelete (key: string, address: string, upTo: number): void {
    this.#pend(this.#deletes, key, address, upTo, this.#options.ttlMs)
  }

  /** Keeps a delete or tombstone a node could not take, for a retry, until `liveMs` from now. */
  #pend (pending: Map<string, PendingDelete>, key: string, address: string, upTo: number, liveMs: number, data?: string): void {
    const id = `${address} ${key}`
    const earlier = pending.get(id)
    pending.set(id, { key, address, upTo: Math.max(upTo, earlier?.upTo ?? 0), until: performance.now() + liveMs, data: data === undefined ? undefined : endOf([earlier?.data, data]) })
    this.#scheduleRetry()
  }

  /**
   * Keeps a write that reached no node, combined with any earlier one of the same key (the
   * later state, the merge patches composed), so an outage holds one job per session, and
   * the jobs' data within maxPendingBytes.
   */
  #keepForRetry (job: WriteJob): void {
    const earlier = this.#takeFailed(job.key)
    // The old key's tombstone was sent already (or queued for its node): a retry must not take
    // that tombstone for a logout elsewhere.
    const retry: WriteJob = { ...job, replaces: undefined }
    this.#putFailed(earlier === undefined ? retry : combine(earlier, retry))
    if (this.#outage === undefined) {
      this.#outage = { since: performance.now(), peak: 0, dropped: 0 }
      this.#options.log.warn({ code: codes.SESSION_WRITE_FAILED }, 'session writes reach no memcached node; kept locally and retried (logged again when they drain)')
    }
    this.#outage.peak = Math.max(this.#outage.peak, this.#failed.size)
    while (this.#failedBytes > this.#options.maxPendingBytes && this.#failed.size > 1) {
      const [oldest] = this.#failed.keys()
      this.#takeFailed(oldest as string)
      this.#options.metrics.droppedWrites.inc()
      if (this.#outage.dropped++ === 0) this.#options.log.error({ code: codes.SESSION_WRITE_FAILED, maxPendingBytes: this.#options.maxPendingBytes }, 'writes kept during the memcached outage exceed cache.maxBytes: the oldest are dropped (their sessions live on in the local cache until evicted)')
    }
    this.#scheduleRetry()
  }

  #putFailed (job: WriteJob): void {
    this.#failed.set(job.key, job)
    this.#failedBytes += job.header.length
  }

  #takeFailed (key: string): WriteJob | undefined {
    const job = this.#failed.get(key)
    if (job === undefined) return undefined
    this.#failed.delete(key)
    this.#failedBytes -= job.header.length
    return job
  }

  #scheduleRetry (ms = RETRY_INTERVAL_MS): void {
    if (this.#retryTimer !== undefined) return
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#retryFailed(DRAIN_BATCH)
    }, ms)
    this.#retryTimer.unref()
  }

  /** Sends up to `limit` kept writes again (oldest first), and the pending deletes and tombstones. */
  #retryFailed (limit: number): void {
    let sent = 0
    for (const key of [...this.#failed.keys()]) {
      if (sent++ >= limit) break
      void this.write(this.#takeFailed(key) as WriteJob)
    }
    const now = performance.now()
    for (const [id, d] of [...this.#deletes]) {
      this.#deletes.delete(id)
      // Past its TTL the copy has expired by itself.
      if (d.until > now) void this.#enqueue(d.key, async () => await this.#deleteCopy(d.key, d.address, d.upTo))
    }
    for (const [id, d] of [...this.#tombstones]) {
      this.#tombstones.delete(id)
      if (d.until > now) void this.#enqueue(d.key, async () => await this.#endCopy(d.key, d.address, d.upTo, d.data))
    }
    // More left and a node takes writes again: the next batch soon, not after the outage interval.
    const { pool } = this.#options
    if (this.#failed.size > 0 && pool.placement.some((a) => pool.isLive(a))) this.#scheduleRetry(DRAIN_TICK_MS)
  }
}

interface Placement {
  readonly primary: string
  readonly backup: string | undefined
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
    base: Math.min(earlier.base, later.base),
    baseHeader: earlier.base <= later.base ? earlier.baseHeader : later.baseHeader,
    fresh: earlier.fresh,
    replaces: earlier.replaces ?? later.replaces
  }
}

function combineKinds (a: WriteKind, b: WriteKind): WriteKind {
  if (b.type === 'end' || a.type === 'end') return { type: 'end' }
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

/**
 * A regeneration's new-key write, given a newer copy another sidecar stored on the old key
 * meanwhile: a merge re-applied to it, no change (a plain regenerate) taking its data, a set
 * as it is.
 */
function carryOver (job: WriteJob, newer: StoredCopy, maxBytes: number): WriteJob {
  switch (job.kind.type) {
    case 'merge':
      try {
        return { ...job, header: encodeObject(mergePatch(parseStored(newer.header), job.kind.patch) as SessionObject, 'X-Session-Merge', maxBytes).header }
      } catch {
        return job // over session.maxBytes with the other change: this node's state stands
      }
    case 'copy':
      return { ...job, header: newer.header }
    default:
      return job
  }
}

/**
 * The data of a tombstone (the state says it ended): `{}` for a destroy, `{"regenerated":true}`
 * for a key replaced by regeneration, which a later regeneration of the same key (a login sent
 * again) does not take for a logout. Sidecars that predate the mark read both as ended.
 */
const TOMBSTONE_DATA = 'e30'
const REGENERATED = Buffer.from('{"regenerated":true}').toString('base64url')

/** A tombstone's data, from whatever a tombstone or an end job carries: the regeneration's mark, or a destroy's. */
function endMark (header: string): string {
  return header === REGENERATED ? REGENERATED : TOMBSTONE_DATA
}

/**
 * What a node should hold after `job`, given the copy it holds (or, on a miss, the copy found
 * elsewhere): the copy to write, 'stands' when what it holds is already as new, or 'ended'
 * when it holds a tombstone (which wins over live data whatever the versions).
 */
export function nextCopy (current: StoredCopy | undefined, job: WriteJob, maxBytes: number): StoredCopy | 'stands' | 'ended' {
  const mine: StoredCopy = { version: job.version, header: job.header, ended: job.kind.type === 'end' }
  if (current === undefined) return mine
  const version = Math.max(current.version + 1, job.version)
  if (current.ended) {
    if (job.kind.type !== 'end') return 'ended'
    // A destroy marks a regeneration's tombstone as destroyed: a logout wins over a login sent again.
    return current.header === REGENERATED && job.header !== REGENERATED ? { version, header: TOMBSTONE_DATA, ended: true } : 'stands'
  }
  // A change whose result the node already holds, at the version its cookie names or above:
  // the change is there (this write landed before and its answer was lost, or another sidecar
  // copied its result there, a restore after a failover). Applied again it would take the
  // next version with the same data, a second copy of a number another sidecar may be giving
  // to another change (it read the first copy elsewhere), and a sidecar holding this one would
  // serve it for that change's cookie: an acknowledged update lost. The copy stands.
  const holds = (header: string): StoredCopy | 'stands' => header === current.header && current.version >= job.version ? 'stands' : { version, header, ended: false }
  switch (job.kind.type) {
    case 'end':
      return { version, header: endMark(job.header), ended: true }
    case 'copy':
      return current.version >= job.version ? 'stands' : mine
    case 'set':
      return holds(job.header)
    case 'merge':
      // Older than what this node changed: the stored copy regressed (lost, replaced by a
      // stale one), and this node's state is the newer of the two.
      if (current.version < job.base) return { version, header: job.header, ended: false }
      // The very copy the change was made on: re-applying the patch gives this node's result.
      if (current.version === job.base && current.header === job.baseHeader) return { version, header: job.header, ended: false }
      try {
        return holds(encodeObject(mergePatch(parseStored(current.header), job.kind.patch) as SessionObject, 'X-Session-Merge', maxBytes).header)
      } catch {
        return 'stands' // the patch re-applied would exceed maxBytes: the stored copy stands
      }
  }
}

/** The node holds a tombstone: the session ended elsewhere. `version` is above it; `data` is its mark. */
class SessionEnded extends Error {
  readonly version: number
  readonly data: string
  constructor (tombstone: StoredCopy) {
    super('session ended')
    this.version = tombstone.version + 1
    this.data = endMark(tombstone.header)
  }
}

interface KnownCopy {
  readonly cas: string
  readonly copy: StoredCopy
  /** The node's connection count when it was learnt (see MemcachedNode.connection). */
  readonly connection: number
}

// What a remembered copy costs beyond its data (key, CAS, the entry itself), for the LRU's bound.
const KNOWN_OVERHEAD = 160

interface PendingDelete {
  readonly key: string
  readonly address: string
  readonly upTo: number
  readonly until: number
  /** A tombstone's data (a destroy's or a regeneration's); undefined for a delete. */
  readonly data?: string
}

/**
 * The mark of a key's end from the marks seen of it (tombstones found, or one written before
 * and this one): a destroy's wins over a regeneration's.
 */
export function endOf (marks: ReadonlyArray<string | undefined>): string {
  return marks.some((m) => m !== undefined && endMark(m) === TOMBSTONE_DATA) ? TOMBSTONE_DATA : REGENERATED
}
