import { LRUCache } from 'lru-cache'
import type { Logger } from 'pino'
import type { Metrics, RequestOutcome } from '../metrics.js'
import type { NodePool } from '../memcached/pool.js'
import type { CookieFields } from './cookie.js'
import { encodeObject, mergePatch, parseStored, type SessionObject } from './data.js'
import { keyHash, mintKey } from './key.js'
import { CopyReader, newest, type ReadResult } from './reader.js'
import { withState, type SessionRecord, type StoredCopy } from './record.js'
import type { CopySeal } from './sealed-copy.js'
import { answersOf, SessionTrace } from './trace.js'
import { endOf, SessionWriter, type WriteJob, type WriteKind, type WriteResult } from './writer.js'

// What a cached session costs beyond its data's characters: bench/heap.ts measures 2,434 to
// 2,827 bytes of heap per 1 KB session (1,366 characters of data) from 10k to 447k sessions.
const RECORD_OVERHEAD = 1100
// A node back from a restart gets the cached sessions it held checked in batches, each
// answered before the next goes a tick later, so a large cache does not flood it (and the
// requests waiting on it) at once (test/unit/session/store: "a batch at a time").
const RECHECK_BATCH = 200
const RECHECK_TICK_MS = 10
// How long a silent node may hold the only copy of a session's newest version: a pause or a
// restart lasts seconds; past that, what it held is given up and older copies are served.
const SILENT_NODE_GRACE_MS = 5000

export interface StoreOptions {
  readonly pool: NodePool
  readonly keyPrefix: string
  /** Seals the copies written to memcached and opens those read back. */
  readonly seal: CopySeal
  /** Session TTL, seconds: local expiry and memcached item lifetime. */
  readonly idleTimeout: number
  readonly revalidateMs: number
  readonly cacheMaxBytes: number
  readonly maxBytes: number
  readonly log: Logger
  readonly metrics: Metrics
  /** Monotonic milliseconds (performance.now by default): freshness and budgets. Tests pass a fake clock. */
  readonly now?: () => number
}

/**
 * How a session was found for a request: the request outcomes it decides (see REQUEST_OUTCOMES:
 * miss-loaded, a copy at least as new as the cookie; stale, only older copies, served anyway;
 * degraded, memcached did not answer and the local copy is served as it is), or: */
export type LoadOutcome =
  | Extract<RequestOutcome, 'miss-loaded' | 'stale' | 'degraded'>
  /** Found nowhere (expired, destroyed): the session is absent (the request's outcome: none). */
  | 'gone'
  /** Not local, and memcached did not answer: absent for this request, the cookie is kept (degraded). */
  | 'unavailable'

export interface Loaded {
  readonly record: SessionRecord | undefined
  readonly outcome: LoadOutcome
}

/** A change the app asked for, already decoded and validated. */
export interface Change {
  /** Replacement data (X-Session-Set, with any merge already applied to it). */
  readonly set: SessionObject | undefined
  /** RFC 7396 patch (X-Session-Merge) when there is no set. */
  readonly merge: SessionObject | undefined
  readonly regenerate: boolean
}

export interface Applied {
  readonly record: SessionRecord
  /** Settles when the primary copy is stored (or the write gave up and was queued for retry). */
  readonly written: Promise<WriteResult | undefined> | undefined
}

/**
 * Sessions: the local LRU cache in front of memcached, and the one owner of every change to a
 * cached record. Decides when a local copy may be served (version and revalidation rules),
 * what a read or revalidation found means (reader.ts asks the nodes), and turns app changes
 * into new versions that the writer (writer.ts) stores; the writer's outcomes come back here.
 */
export class SessionStore {
  readonly #cache: LRUCache<string, SessionRecord>
  readonly #options: StoreOptions
  readonly #now: () => number
  readonly #reader: CopyReader
  readonly #writer: SessionWriter
  /** Keys destroyed or regenerated on this node, for as long as a copy of them could live. */
  readonly #ended: LRUCache<string, true>
  /** Per node back from a possible restart, the sweep under way; `again` when it came back once more meanwhile. */
  readonly #rechecks = new Map<string, { again: boolean }>()
  readonly #trace: SessionTrace

  constructor (options: StoreOptions) {
    this.#options = options
    this.#now = options.now ?? performance.now.bind(performance)
    this.#trace = new SessionTrace(options.log)
    this.#cache = new LRUCache<string, SessionRecord>({
      maxSize: options.cacheMaxBytes,
      // Strings of ASCII are one byte per character in V8; RECORD_OVERHEAD covers the record
      // object, its other strings and the cache's own bookkeeping, so cache.maxBytes bounds
      // real memory.
      sizeCalculation: (r) => r.header.length + RECORD_OVERHEAD,
      ttl: options.idleTimeout * 1000,
      updateAgeOnGet: true
    })
    // As long as a tombstone lives: past it, no sidecar can still be serving the key.
    const tombstoneTtl = options.idleTimeout + Math.ceil(options.revalidateMs / 1000)
    this.#ended = new LRUCache<string, true>({ max: 100_000, ttl: tombstoneTtl * 1000 })
    this.#writer = new SessionWriter({
      pool: options.pool,
      keyPrefix: options.keyPrefix,
      seal: options.seal,
      maxBytes: options.maxBytes,
      log: options.log,
      metrics: options.metrics,
      ttlMs: options.idleTimeout * 1000,
      maxPendingBytes: options.cacheMaxBytes,
      tombstoneTtl,
      onSettled: (job, outcome) => {
        if (outcome !== 'ended') return this.#written(job, outcome)
        this.#trace.line(job.key, 'ended-elsewhere', () => ({ version: job.version }))
        this.#end(job.key)
      }
    })
    options.pool.onRecovered((address) => { this.#recheck(address) })
    this.#reader = new CopyReader({
      pool: options.pool,
      keyPrefix: options.keyPrefix,
      seal: options.seal,
      reseal: (key, address) => { void this.#writer.reseal(key, [address]) },
      seen: (key, address, cas, copy) => { this.#writer.remember(address, key, cas, copy) },
      now: this.#now
    })
  }

  get size (): number { return this.#cache.size }
  get bytes (): number { return this.#cache.calculatedSize }
  get pendingWrites (): number { return this.#writer.pending }

  /** The local record for a key, with no I/O; undefined when not cached. */
  local (key: string): SessionRecord | undefined {
    return this.#cache.get(key)
  }

  /** True when a key was destroyed or regenerated here, or found ended, within a tombstone's lifetime. */
  ended (key: string): boolean {
    return this.#ended.has(key)
  }

  /** True when the local record may be served for this cookie without asking memcached. */
  fresh (record: SessionRecord, cookieVersion: number, now: number): boolean {
    return record.acceptedVersion >= cookieVersion && now - record.checkedAt < this.#options.revalidateMs
  }

  /**
   * Finds the session a verified cookie names, when the local copy is missing or not fresh.
   * `deadline`: when a read stops waiting for memcached (this store's clock; the request's memcached.timeoutMs).
   */
  async load (cookie: CookieFields, local: SessionRecord | undefined, deadline: number): Promise<Loaded> {
    // Destroyed or regenerated here: nothing to ask memcached.
    if (this.#ended.has(cookie.key)) return { record: undefined, outcome: 'gone' }
    const checked = local !== undefined && local.acceptedVersion >= cookie.version
    const loaded = checked ? await this.#revalidate(local, addressesOf(cookie), deadline) : await this.#read(cookie, local, deadline)
    this.#trace.line(cookie.key, 'loaded', () => ({ by: checked ? 'check' : 'read', cookieVersion: cookie.version, outcome: loaded.outcome, version: loaded.record?.version, nodes: loaded.record === undefined ? undefined : addressesOf(loaded.record) }))
    return loaded
  }

  /**
   * Turns an app change into the next version of the session; throws RefusedUpdate.
   * `captured` is the record the request was served with; a concurrent request on this node
   * may have changed (or destroyed) the session since, and the change applies to that.
   * `unloaded`: the cookie of a session memcached could not produce in time, which a
   * regeneration (a login) ends as it ends a loaded one.
   */
  apply (captured: SessionRecord | undefined, cookieVersion: number, change: Change, unloaded?: CookieFields): Applied | undefined {
    const { maxBytes } = this.#options
    let current = captured
    if (captured !== undefined) {
      // Destroyed or regenerated meanwhile: a late response must not bring the old key back.
      if (this.#ended.has(captured.key)) return undefined
      const latest = this.#cache.peek(captured.key)
      if (latest !== undefined && latest.version > captured.version) current = latest
    }
    let data: SessionObject | undefined = change.set
    let kind: WriteKind = { type: 'set' }
    if (data === undefined && change.merge !== undefined) {
      data = mergePatch(current === undefined ? {} : parseStored(current.header), change.merge) as SessionObject
      kind = { type: 'merge', patch: change.merge }
    }
    const header = data === undefined ? current?.header : encodeObject(data, change.set !== undefined ? 'X-Session-Set' : 'X-Session-Merge', maxBytes).header
    if (header === undefined) return undefined // regenerate with no session: nothing to do
    const changed = header !== current?.header
    if (!changed && !change.regenerate) return undefined
    const now = this.#now()
    let record: SessionRecord
    const base = current === undefined || change.regenerate ? 0 : current.version
    if (current === undefined || change.regenerate) {
      const key = mintKey()
      const placed = this.#options.pool.place(key)
      const version = current === undefined ? 1 : Math.max(current.version, cookieVersion) + (changed ? 1 : 0)
      record = { key, version, header, primary: placed.primary, backup: placed.backup, checkedAt: now, acceptedVersion: version, cookie: undefined }
      if (!changed) kind = { type: 'copy' }
    } else {
      const version = Math.max(current.version, cookieVersion) + 1
      // A change made here confirms nothing about memcached (another sidecar may have ended the
      // session meanwhile): the copy stays as fresh as its last check, until the write lands.
      record = withState(current, { version, header, checkedAt: current.checkedAt, acceptedVersion: version })
    }
    this.#cache.set(record.key, record)
    const fresh = record.key !== current?.key
    const job: WriteJob = { ...this.#job(record, kind, fresh), base, baseHeader: base === 0 ? undefined : current?.header }
    // Regeneration keeps the data but not the key: the old key gets a tombstone. Without a
    // session loaded, the key the cookie names is the old one: a login while memcached did not
    // answer must still end it (fixation, a shared browser's previous user).
    const old = current ?? (change.regenerate && unloaded !== undefined && unloaded.key !== record.key ? unloaded : undefined)
    if (old === undefined || !fresh) return { record, written: this.#writer.write(job) }
    const version = Math.max(old.version, cookieVersion) + 1
    this.#end(old.key)
    this.#trace.line(old.key, 'ended', () => ({ version, nodes: addressesOf(old), regeneratedAs: keyHash(record.key) }))
    return { record, written: this.#writer.write({ ...job, replaces: { key: old.key, addresses: addressesOf(old), version } }) }
  }

  /**
   * Ends a session here and with a tombstone on every node that may hold it: the record's
   * nodes and those the client's cookie names (they differ after a relocation). Resolves when
   * the primary holds the tombstone (or could not be reached).
   */
  destroy (record: SessionRecord, cookie?: CookieFields): Promise<void> {
    const version = Math.max(record.version, cookie?.version ?? 0) + 1
    return this.#discard(record.key, cookie === undefined ? addressesOf(record) : [...addressesOf(record), ...addressesOf(cookie)], version)
  }

  /** Ends the session a cookie names, when the session itself could not be loaded. */
  destroyByCookie (cookie: CookieFields): Promise<void> {
    return this.#discard(cookie.key, addressesOf(cookie), cookie.version + 1)
  }

  /** Waits for queued writes, at most `ms`; returns how many are still pending. */
  async flush (ms: number): Promise<number> {
    return await this.#writer.flush(ms)
  }

  close (): void {
    this.#writer.close()
    this.#cache.clear()
  }

  /**
   * A tombstone was found: the key ends here, and a node of the key that missed (back from a
   * restart, empty) or holds a live copy gets the tombstone too, as a lost live copy is stored
   * again; otherwise a second restart would leave no trace of the end for a sidecar still
   * caching the session, and a live copy would serve it to a sidecar that asks that node only.
   * The mark copied is a destroy's if any tombstone found is one, else a regeneration's: a login
   * sent again with the old cookie must find what it would have found where the end was read.
   */
  #endFound (key: string, addresses: readonly string[], tombstone: StoredCopy, answers: readonly ReadResult[]): void {
    this.#end(key)
    const copied = answers.length < addresses.length || answers.some((r) => r === null || (r !== 'error' && !r.ended))
    this.#trace.line(key, 'tombstone-found', () => ({ version: tombstone.version, copiedTo: copied ? addresses : [] }))
    if (!copied) return
    const tombstones = [tombstone, ...answers.filter((r): r is StoredCopy => r !== null && r !== 'error' && r.ended)]
    void this.#writer.end(key, addresses, Math.max(...tombstones.map((t) => t.version)), endOf(tombstones.map((t) => t.header)))
  }

  /** Forgets a key here and keeps it from coming back: destroyed, regenerated, or gone. */
  #end (key: string): void {
    this.#cache.delete(key)
    this.#ended.set(key, true)
  }

  #discard (key: string, addresses: readonly string[], version: number): Promise<void> {
    this.#end(key)
    const nodes = [...new Set(addresses)]
    this.#trace.line(key, 'ended', () => ({ version, nodes }))
    return this.#writer.end(key, nodes, version)
  }

  /** A write of this record (a copy, unless `kind` says it is a change). */
  #job (record: SessionRecord, kind: WriteKind = { type: 'copy' }, fresh = false): WriteJob {
    return { key: record.key, version: record.version, header: record.header, kind, primary: record.primary, backup: record.backup, base: record.version, fresh }
  }

  /** Stores a local copy again where memcached lost it (or holds an older one): a miss is not a destroy. */
  #restore (record: SessionRecord, lost: boolean): void {
    if (lost) this.#options.metrics.restoredCopies.inc()
    this.#trace.line(record.key, 'restored', () => ({ version: record.version, lost }))
    void this.#writer.write(this.#job(record))
  }

  /**
   * A node may be back from a restart, empty: every cached session with a copy there is checked
   * now (paced, like a drain), not at its next request, so a lost copy, live or tombstone, is
   * written again from its other node or from here within about `cache.revalidateMs`. Otherwise
   * the session's other node restarting before that request would leave no copy of a live
   * session but this cache, and no trace at all of an end (a replayed cookie would be served
   * by a sidecar that cached the session before it ended).
   */
  #recheck (address: string): void {
    const queued = this.#rechecks.get(address)
    if (queued !== undefined) {
      queued.again = true
      return
    }
    const sweep = { again: false }
    this.#rechecks.set(address, sweep)
    // Sessions with a copy there, and sessions that lost their backup while nodes were down
    // (moved to one node): a live node may take the backup's role again now, not only at the
    // session's next change, which an idle session may never make.
    const wantBackup = this.#options.pool.replicas > 1
    const records = [...this.#cache.values()].filter((r) => r.primary === address || r.backup === address || (wantBackup && r.backup === undefined))
    const next = async (): Promise<void> => {
      // A batch at a time, each awaited: under load the sweep slows down with memcached instead
      // of piling reads on it (timeouts would mark the node down and start the sweep again).
      const batch = records.splice(0, RECHECK_BATCH).filter((record) => this.#cache.peek(record.key) === record)
      await Promise.all(batch.map(async (record) => {
        // A copy write places the session on as many live nodes as configured: the primary's
        // copy stands (or a newer one found there is adopted), the new backup gets it.
        if (wantBackup && record.backup === undefined) return await this.#writer.write(this.#job(record))
        return await this.#revalidate(record).catch((err: unknown) => { this.#options.log.warn({ err, session: keyHash(record.key) }, 'checking a session after its memcached node came back failed') })
      }))
      // Failing again: stop here; its next recovery starts a new sweep. (Failing, not marked
      // down: a batch whose checks time out can outlast the node's backoff window.)
      if (this.#options.pool.node(address)?.failing === true) records.length = 0
      if (records.length > 0) {
        setTimeout(() => { void next() }, RECHECK_TICK_MS).unref()
        return
      }
      this.#rechecks.delete(address)
      if (sweep.again) this.#recheck(address)
    }
    void next()
  }

  /** Brings the local record up to what memcached now holds, unless a newer local change exists. */
  #written (job: WriteJob, result: WriteResult): void {
    const { copy, primary, backup } = result
    this.#trace.line(job.key, 'written', () => ({ kind: job.kind.type, version: copy.version, nodes: addressesOf(result) }))
    const current = this.#cache.peek(job.key)
    // A newer local change is still on its way: it will bring the record up to date.
    if (current === undefined || current.version > job.version) return
    if (primary !== current.primary || backup !== current.backup) this.#trace.line(job.key, 'moved', () => ({ from: addressesOf(current), to: addressesOf(result) }))
    if (copy.version === current.version && copy.header === current.header && primary === current.primary && backup === current.backup) return
    // Not a check (checkedAt stays): the primary taking a write says nothing of the other nodes,
    // where another sidecar's logout may have put its tombstone while the primary was frozen.
    this.#cache.set(job.key, withState(current, { version: copy.version, header: copy.header, primary, backup, acceptedVersion: copy.version }))
  }

  /**
   * Compares the local copy with the stored ones and refreshes their TTL, one `gats` per node:
   * a newer (or different) stored copy is adopted, a tombstone ends the session, a miss or an
   * older copy gets the local copy again, no answer at all serves the local copy as it is.
   * `named`: the nodes the request's cookie names. They differ from the record's once this
   * sidecar moved the session off a failing node after that cookie was issued (an async write
   * relocates after the response): a sidecar that ended the session from that cookie wrote its
   * tombstones there, and the node this sidecar moved the session to has none. They are asked
   * too, for a tombstone only (chaos seed 8: an ended session served again once the one node of
   * both sets was lost). When one of its own nodes missed or failed, so are the session's other
   * possible nodes (#elsewhere), within `deadline` when a request waits.
   */
  async #revalidate (local: SessionRecord, named: readonly string[] = [], deadline?: number): Promise<Loaded> {
    const own = addressesOf(local)
    const asked = [...own, ...named.filter((a) => !own.includes(a))]
    const answers = await this.#reader.check(local.key, asked)
    const results = answers.slice(0, own.length)
    // A node missed (the local copy is about to be stored again) or failed (the rest decide).
    const elsewhere = newest(answers)?.ended !== true && results.some(incomplete) ? await this.#elsewhere(local.key, asked, [], deadline) : NOWHERE
    this.#trace.line(local.key, 'answers', () => ({ by: 'check', localVersion: local.version, nodes: answersOf(asked, answers), elsewhere: answersOf(elsewhere.addresses, elsewhere.answers) }))
    if (this.#ended.has(local.key)) return { record: undefined, outcome: 'gone' }
    // A tombstone on any node asked comes first.
    const end = newest([...answers, ...elsewhere.answers])
    if (end?.ended === true) {
      this.#endFound(local.key, [...asked, ...elsewhere.addresses], end, [...answers, ...elsewhere.answers])
      return { record: undefined, outcome: 'gone' }
    }
    const found = newest(results)
    if (results.every((r) => r === 'error')) return { record: local, outcome: 'degraded' }
    if (results.includes('error')) this.#options.metrics.failovers.inc()
    // A concurrent request here may have changed the session while the nodes answered.
    const latest = this.#cache.peek(local.key) ?? local
    let record = latest
    if (found !== undefined && (found.version > latest.version || (found.version === latest.version && found.header !== latest.header))) {
      record = withState(latest, { version: found.version, header: found.header, acceptedVersion: Math.max(found.version, latest.acceptedVersion) })
      this.#cache.set(record.key, record)
    }
    record.checkedAt = this.#now()
    const version = record.version
    if (results.some((r) => r === null || (r !== 'error' && r.version < version))) this.#restore(record, results.includes(null))
    return { record, outcome: 'miss-loaded' }
  }

  /**
   * The session's other possible nodes, beyond `asked`: its first `replicas + 1` in placement
   * order (where it was placed, and where a failover moves it) and `also`, asked for what they
   * hold (those that hold something are returned) when one of its nodes missed or failed. A
   * session moved off a failing node after its cookie was issued keeps a live copy where a
   * logout made from that cookie wrote no tombstone; once the node both name is lost, that
   * copy must not decide alone (chaos seed 7).
   */
  async #elsewhere (key: string, asked: readonly string[], also: readonly string[], deadline: number | undefined): Promise<Elsewhere> {
    const { pool } = this.#options
    const others = [...new Set([...also, ...pool.ranked(key).slice(0, pool.replicas + 1)])].filter((a) => !asked.includes(a))
    const answers = await this.#reader.probe(key, others, deadline)
    const holding = others.flatMap((address, i) => {
      const answer = answers[i]
      return answer === undefined || answer === null || answer === 'error' ? [] : [{ address, answer }]
    })
    return { addresses: holding.map((h) => h.address), answers: holding.map((h) => h.answer) }
  }

  async #read (cookie: CookieFields, local: SessionRecord | undefined, deadline: number): Promise<Loaded> {
    const named = addressesOf(cookie)
    const found = await this.#reader.read(cookie.key, named, cookie.version, deadline)
    const { results } = found
    let best = found.best
    const failed = results.includes('error')
    if (failed) this.#options.metrics.failovers.inc()
    // A node missed or failed, and a copy to serve from the rest (and store again there).
    const elsewhere = best?.ended !== true && (results.some(incomplete) || results.length < found.asked) && (best !== undefined || local !== undefined)
      ? await this.#elsewhere(cookie.key, named, local === undefined ? [] : addressesOf(local), deadline)
      : NOWHERE
    this.#trace.line(cookie.key, 'answers', () => ({ by: 'read', localVersion: local?.version, nodes: answersOf(found.answered, results), elsewhere: answersOf(elsewhere.addresses, elsewhere.answers) }))
    // Destroyed on this node while the read was under way: do not cache it again.
    if (this.#ended.has(cookie.key)) return { record: undefined, outcome: 'gone' }
    const end = newest(elsewhere.answers)
    if (end?.ended === true) {
      this.#endFound(cookie.key, [...named, ...elsewhere.addresses], end, [...results, ...elsewhere.answers])
      return { record: undefined, outcome: 'gone' }
    }
    if (best?.ended === true) {
      this.#endFound(cookie.key, named, best, results)
      return { record: undefined, outcome: 'gone' }
    }
    // A concurrent request on this node may have stored a newer record while we read.
    const latest = this.#cache.peek(cookie.key) ?? local
    if (best === undefined) {
      // Every node answered and none has it: lost (restart, eviction) if this node holds it,
      // absent (expired, never stored) if not. No answer: the local copy, or nothing for now.
      const answered = !failed && results.length === found.asked
      if (latest === undefined) return { record: undefined, outcome: answered ? 'gone' : 'unavailable' }
      // The local copy serves only if it is at least as new as the cookie: an older one would
      // hand the app stale data, and its next change would be made on it (a lost update).
      if (!answered) return latest.acceptedVersion >= cookie.version ? { record: latest, outcome: 'degraded' } : { record: undefined, outcome: 'unavailable' }
      best = { version: latest.version, header: latest.header, ended: false }
    } else if (latest !== undefined && latest.version > best.version) {
      // This node's own write has not landed yet (or memcached lost it); its copy is the newest there is.
      best = { version: latest.version, header: latest.header, ended: false }
    }
    const stale = best.version < cookie.version
    // Only older copies, while a node of the session that may hold the newest is silent (paused,
    // cut off, just failed): a change made on the older copy would be written above the
    // versions that node holds, which are lost when it answers again. Unavailable for now, as
    // when nothing answers; a node silent for longer is taken for lost, and the newest copy
    // found is served (a stale read).
    if (stale && found.silent.some((node) => node.failingFor() < SILENT_NODE_GRACE_MS)) return { record: undefined, outcome: 'unavailable' }
    if (stale) {
      this.#options.metrics.staleReads.inc()
      this.#options.log.warn({ session: keyHash(cookie.key), found: best.version, expected: cookie.version }, 'only older copies of the session exist; serving the newest')
    }
    const record: SessionRecord = {
      key: cookie.key,
      version: best.version,
      header: best.header,
      primary: cookie.primary,
      backup: cookie.backup,
      checkedAt: this.#now(),
      acceptedVersion: Math.max(best.version, cookie.version),
      cookie: undefined
    }
    this.#cache.set(record.key, record)
    // A node that failed, missed (restarted empty) or holds an older copy gets it again.
    const version = best.version
    if (results.length < found.asked || results.some((r) => r === 'error' || r === null || r.version < version)) this.#restore(record, results.includes(null))
    return { record, outcome: stale ? 'stale' : 'miss-loaded' }
  }
}

/** What the session's other possible nodes hold, those that hold anything. */
interface Elsewhere {
  readonly addresses: readonly string[]
  readonly answers: readonly StoredCopy[]
}
const NOWHERE: Elsewhere = { addresses: [], answers: [] }

/** A node's answer that cannot rule out a tombstone there: a miss (restarted empty, evicted) or a failure. */
function incomplete (result: ReadResult): boolean {
  return result === null || result === 'error'
}

/** The nodes a cookie or record names: primary, then backup if any. */
function addressesOf (at: { readonly primary: string, readonly backup: string | undefined }): string[] {
  return at.backup === undefined ? [at.primary] : [at.primary, at.backup]
}
