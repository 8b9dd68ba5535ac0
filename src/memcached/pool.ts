import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import type { MemcachedOps } from '../metrics.js'
import { AddressAllowList, parseAddress, type Address } from './address.js'
import { MemcachedNode, type NodeOptions } from './node.js'

export interface PoolOptions {
  /** Where new sessions go, canonical `host:port` text. */
  readonly nodes: readonly string[]
  readonly replicas: 1 | 2
  readonly allow: readonly string[]
  readonly timeoutMs: number
  readonly ttl: number
  readonly log: Logger
  readonly ops: MemcachedOps
  /** A node only cookies name (not placed on) is closed and forgotten after this idle time. Default 5 minutes. */
  readonly idleCloseMs?: number
  /** Monotonic milliseconds (performance.now by default); tests pass a fake clock. */
  readonly now?: () => number
  /** Makes the client of one address (a real MemcachedNode by default); tests pass their own. */
  readonly createNode?: (address: Address, options: NodeOptions) => MemcachedNode
}

const IDLE_CLOSE_MS = 5 * 60_000

/**
 * Every memcached node this sidecar talks to: the configured ones, and those that signed
 * cookies name (created on first use, after the allow list passes them). Placement of new
 * sessions uses the configured nodes only.
 */
export class NodePool {
  readonly #nodes = new Map<string, MemcachedNode>()
  #placement: readonly string[]
  #replicas: 1 | 2
  #allow: AddressAllowList
  readonly #options: PoolOptions
  readonly #sweeper: NodeJS.Timeout
  readonly #recovered = new Set<(address: string) => void>()

  constructor (options: PoolOptions) {
    this.#options = options
    this.#placement = options.nodes
    this.#replicas = options.replicas
    this.#allow = new AddressAllowList(options.allow)
    this.#sweeper = setInterval(() => this.sweep(), Math.min(60_000, options.idleCloseMs ?? IDLE_CLOSE_MS))
    this.#sweeper.unref()
  }

  /**
   * Closes and forgets the nodes that only cookies named and nobody used for `idleCloseMs`,
   * metric series included: otherwise every address a cookie ever named (a leaked secret and
   * an empty allow list make that any address) would hold a client for good. A cookie naming
   * one again creates it afresh.
   */
  sweep (): string[] {
    const now = (this.#options.now ?? performance.now.bind(performance))()
    const idleMs = this.#options.idleCloseMs ?? IDLE_CLOSE_MS
    const forgotten: string[] = []
    for (const [text, node] of this.#nodes) {
      if (this.#placement.includes(text) || now - node.lastUsedAt < idleMs) continue
      node.close()
      this.#nodes.delete(text)
      this.#options.ops.forget(text)
      forgotten.push(text)
    }
    return forgotten
  }

  /**
   * The node at `text`, or undefined when the address is malformed or not allowed: such an
   * address is never contacted.
   */
  node (text: string): MemcachedNode | undefined {
    const known = this.#nodes.get(text)
    if (known !== undefined) return known
    const address = parseAddress(text)
    // Only the canonical spelling is accepted, so one node never gets two clients.
    if (address === undefined || address.text !== text || !this.#allow.allows(address)) return undefined
    const options: NodeOptions = { ...this.#options, onRecovered: (a) => { for (const listener of this.#recovered) listener(a) } }
    const node = (this.#options.createNode ?? ((a, o) => new MemcachedNode(a, o)))(address, options)
    this.#nodes.set(text, node)
    return node
  }

  /** Calls `listener` whenever a node that was marked down answers again. */
  onRecovered (listener: (address: string) => void): void {
    this.#recovered.add(listener)
  }

  /** True when a cookie naming this address may be acted on. */
  allows (text: string): boolean {
    return this.#nodes.has(text) || this.node(text) !== undefined
  }

  /** How many copies a session should have (memcached.replicas). */
  get replicas (): 1 | 2 {
    return this.#replicas
  }

  /** The nodes new sessions are placed on. */
  get placement (): readonly string[] {
    return this.#placement
  }

  /**
   * Replaces the nodes new sessions are placed on (config reload, DNS discovery). Sessions on
   * nodes no longer listed stay readable and writable: their addresses are in their cookies.
   * Addresses the allow list refuses are left out and returned.
   */
  setPlacement (nodes: readonly string[], settings?: { readonly replicas: 1 | 2, readonly allow: readonly string[] }): { added: string[], removed: string[], refused: string[] } {
    // A config reload: a larger list may bring a backup (replicas 2) and new allowed names.
    if (settings !== undefined) {
      this.#replicas = settings.replicas
      this.#allow = new AddressAllowList(settings.allow)
    }
    const refused = nodes.filter((a) => this.node(a) === undefined)
    const next = [...new Set(nodes.filter((a) => !refused.includes(a)))]
    const added = next.filter((a) => !this.#placement.includes(a))
    const removed = this.#placement.filter((a) => !next.includes(a))
    this.#placement = next
    return { added, removed, refused }
  }

  /** True when the address may be contacted and its node is not in a backoff window (down, or refusing stores). */
  isLive (text: string): boolean {
    const node = this.node(text)
    return node !== undefined && node.takesWrites
  }

  /**
   * The configured nodes in rendezvous (highest random weight) order for a key. Only new
   * sessions, relocations and reads or checks that found a node of the session empty or
   * failing pay for this, never a hit or a change of a session whose nodes answer.
   */
  ranked (key: string): string[] {
    return this.#placement
      .map((a) => ({ a, score: createHash('sha256').update(a).update('\0').update(key).digest().readUInt32BE(0) }))
      .sort((x, y) => y.score - x.score)
      .map((x) => x.a)
  }

  /**
   * Placement of a new session: the first live nodes in rendezvous order (primary, then the
   * backup when replicas is 2). With no live node, the first in order: the write is retried
   * when they return.
   */
  place (key: string): { primary: string, backup: string | undefined } {
    if (this.#placement.length === 0) throw new Error('no memcached node is known yet (memcached.nodes is empty and discovery has found none)')
    const ranked = this.ranked(key)
    const live = ranked.filter((a) => this.isLive(a))
    const order = live.length > 0 ? [...live, ...ranked.filter((a) => !live.includes(a))] : ranked
    return { primary: order[0] as string, backup: this.#replicas === 2 ? order[1] : undefined }
  }

  /**
   * Connects to the placement nodes now (one `version` each) rather than on the first session's
   * write: a login answered by a sidecar just started must not wait for a TCP connect to reach
   * memcached while the user's next request, on another sidecar, looks for it. A node that does
   * not answer is marked down, so placement skips it from the start. Resolves when each has
   * answered or failed (within memcached.timeoutMs).
   */
  async connect (addresses: readonly string[] = this.#placement): Promise<void> {
    await Promise.all(addresses.map(async (a) => await this.node(a)?.probe()))
  }

  close (): void {
    clearInterval(this.#sweeper)
    for (const node of this.#nodes.values()) node.close()
    this.#nodes.clear()
  }
}
