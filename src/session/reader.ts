import type { MemcachedNode, StoredValue } from '../memcached/node.js'
import type { NodePool } from '../memcached/pool.js'
import type { StoredCopy } from './record.js'
import type { CopySeal } from './sealed-copy.js'

/** One node's answer to a read: its copy (live or tombstone), null for a miss, 'error' when it failed. */
export type ReadResult = StoredCopy | null | 'error'

export interface ReaderOptions {
  readonly pool: NodePool
  readonly keyPrefix: string
  readonly seal: CopySeal
  /** A copy sealed by a retiring secret (or an older format) was read at `address`: reseal it there. */
  readonly reseal: (key: string, address: string) => void
  /** A copy was read at `address` with its CAS: the writer can apply the next change to it without reading it again. */
  readonly seen?: (key: string, address: string, cas: string, copy: StoredCopy) => void
  /** Monotonic milliseconds; tests pass a fake clock. */
  readonly now: () => number
}

/** What a read found: the newest copy any round saw, and the last round's answers. */
export interface Found {
  readonly best: StoredCopy | undefined
  readonly results: readonly ReadResult[]
  /** The address of each result, in the same order. */
  readonly answered: readonly string[]
  /** How many nodes the read could ask (allowed, well-formed addresses). */
  readonly asked: number
  /** The nodes that failed or had not answered by the deadline, in the last round. */
  readonly silent: readonly MemcachedNode[]
}

// Retrying a read that found only older copies covers the usual case of "the other node's
// async write is still on its way" before calling the read stale.
const STALE_RETRY_FIRST_MS = 2
const MISS_GRACE_MS = 20

/**
 * The read path: copies as memcached holds them, opened. Decides nothing about the local
 * cache (the store does); it only asks nodes, within a deadline.
 */
export class CopyReader {
  readonly #options: ReaderOptions

  constructor (options: ReaderOptions) {
    this.#options = options
  }

  /**
   * The revalidation read: one `gats` per node (the copy, and its TTL refreshed), all at once.
   * Down-marked nodes are not waited on: the caller holds a local copy to serve.
   */
  async check (key: string, addresses: readonly string[]): Promise<ReadResult[]> {
    const mkey = this.#options.keyPrefix + key
    return await Promise.all(addresses.map(async (address): Promise<ReadResult> => {
      const node = this.#options.pool.node(address)
      if (node === undefined || node.down) return 'error'
      return await node.gats(mkey).then((hit) => hit === undefined ? null : this.#opened(key, address, hit), () => 'error' as const)
    }))
  }

  /**
   * Asks nodes that are not the session's own whether they hold a tombstone: a plain `gets`
   * (a live copy left there keeps its TTL, is not resealed, and is not remembered for writes),
   * nodes inside a backoff window skipped, and nothing waited for past `deadline` (answers due
   * by then are 'error'). A node whose window has ended is asked even before its recovery probe
   * answers: that is when a node back from a restart may hold the only tombstone.
   */
  async probe (key: string, addresses: readonly string[], deadline: number | undefined): Promise<ReadResult[]> {
    const mkey = this.#options.keyPrefix + key
    let timer: NodeJS.Timeout | undefined
    const late = deadline === undefined
      ? undefined
      : new Promise<'error'>((resolve) => { timer = setTimeout(resolve, Math.max(0, deadline - this.#options.now()), 'error') })
    try {
      return await Promise.all(addresses.map(async (address): Promise<ReadResult> => {
        const node = this.#options.pool.node(address)
        if (node === undefined || node.down) return 'error'
        const answer = node.gets(mkey).then((hit) => hit === undefined ? null : this.#options.seal.open(mkey, hit.value) ?? null, () => 'error' as const)
        return await (late === undefined ? answer : Promise.race([answer, late]))
      }))
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Reads the copies of `key` at `addresses` (all of them: a node back from a crash may hold
   * the only copy, another may hold a tombstone) until one is at least version `wanted`, a tombstone is found, a
   * node fails, or the time runs out: `deadline` for older copies (most often another node's
   * async write still on its way, under round-robin balancing), a short grace for a miss (a new
   * session's `add` is sent before its response, so an expired cookie costs little).
   */
  async read (key: string, addresses: readonly string[], wanted: number, deadline: number): Promise<Found> {
    const { pool, now } = this.#options
    const nodes = addresses
      .map((a) => pool.node(a))
      .filter((n): n is MemcachedNode => n !== undefined)
    let results: ReadResult[] = []
    let answered: string[] = []
    let silent: MemcachedNode[] = []
    let best: StoredCopy | undefined
    const missDeadline = Math.min(deadline, now() + MISS_GRACE_MS)
    for (let wait = STALE_RETRY_FIRST_MS; ; wait *= 2) {
      const answers = await this.#readCopies(nodes, key, wanted, deadline)
      results = [...answers.values()]
      answered = [...answers.keys()].map((n) => n.address)
      silent = nodes.filter((n) => answers.get(n) === undefined || answers.get(n) === 'error')
      // A copy found by an earlier round counts even when the last round ran out of budget
      // before any node answered: it is served as a stale read, never taken for no session.
      const found = newest(results)
      if (found !== undefined && (best === undefined || found.ended || (!best.ended && found.version > best.version))) best = found
      if (best !== undefined && (best.ended || best.version >= wanted)) break
      // A failing node and no copy at all: nothing to wait for (the caller serves its local
      // copy or none). A failing node and an older copy: the newest may be on its way to the
      // node that answered (a write that gave up on the failing one), so ask again.
      if (best === undefined && results.includes('error')) break
      if (now() + wait >= (best === undefined ? missDeadline : deadline)) break
      await new Promise((resolve) => setTimeout(resolve, wait))
    }
    return { best, results, answered, asked: nodes.length, silent }
  }

  /** Opens a copy read from `address`; one sealed by a retiring secret is resealed there. */
  #opened (key: string, address: string, hit: StoredValue): StoredCopy | null {
    const copy = this.#options.seal.open(this.#options.keyPrefix + key, hit.value)
    if (copy === undefined) return null
    if (!copy.current) this.#options.reseal(key, address)
    else this.#options.seen?.(key, address, hit.cas, copy)
    return copy
  }

  /**
   * Every node at once. A copy that satisfies the wanted version ends the read only once the
   * other nodes answered, are marked down, or half the budget has passed: one of them may hold
   * a tombstone, which wins (a stale live copy on one node must not serve a logged-out
   * session). A tombstone ends the read at once. A node whose copy is older than wanted (or
   * missing) is asked again, a little later each time, while another node has not answered:
   * a write that gave up on a hung primary lands on the next node moments later. Nothing
   * waits past `deadline`; nodes that had not answered by then are left out of the results.
   */
  async #readCopies (nodes: MemcachedNode[], key: string, wanted: number, deadline: number): Promise<Map<MemcachedNode, ReadResult>> {
    const mkey = this.#options.keyPrefix + key
    if (nodes.length === 0) return new Map()
    return await new Promise((resolve) => {
      const latest = new Map<MemcachedNode, ReadResult>()
      const timers = new Set<NodeJS.Timeout>()
      let done = false
      let satisfied = false
      let graceOver = false
      const finish = (): void => {
        if (done) return
        done = true
        clearTimeout(grace)
        clearTimeout(timeout)
        for (const timer of timers) clearTimeout(timer)
        resolve(latest)
      }
      const unanswered = (): MemcachedNode[] => nodes.filter((n) => !latest.has(n))
      // Satisfied, and nothing left worth waiting for: the rest are down-marked (a node back
      // from a crash is asked, but not waited on once another answered).
      const settle = (): void => {
        const rest = unanswered()
        if (rest.length === 0 || (satisfied && (graceOver || rest.every((n) => n.down)))) finish()
      }
      const ask = (node: MemcachedNode, wait: number): void => {
        node.gets(mkey).then((hit) => hit === undefined ? null : this.#opened(key, node.address, hit), () => 'error' as const).then((result) => {
          if (done) return
          latest.set(node, result)
          if (result !== null && result !== 'error') {
            if (result.ended) return finish()
            if (result.version >= wanted) satisfied = true
          }
          settle()
          if (done || satisfied || result === 'error' || unanswered().length === 0) return
          const timer = setTimeout(() => { timers.delete(timer); ask(node, wait * 2) }, wait)
          timers.add(timer)
        }, () => undefined)
      }
      for (const node of nodes) ask(node, STALE_RETRY_FIRST_MS)
      const remaining = Math.max(0, deadline - this.#options.now())
      const grace = setTimeout(() => { graceOver = true; settle() }, remaining / 2)
      const timeout = setTimeout(finish, remaining)
    })
  }
}

/** The newest copy among the answers; a tombstone, whatever its version, above all. */
export function newest (results: readonly ReadResult[]): StoredCopy | undefined {
  let best: StoredCopy | undefined
  for (const r of results) {
    if (r === null || r === 'error') continue
    if (r.ended) return r
    if (best === undefined || r.version > best.version) best = r
  }
  return best
}
