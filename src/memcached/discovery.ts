import { promises as dns } from 'node:dns'
import type { Logger } from 'pino'
import { parseAddress } from './address.js'

/** The two lookups discovery needs; injectable so tests need no DNS server. */
export interface Resolver {
  resolve4: (name: string) => Promise<string[]>
  resolve6: (name: string) => Promise<string[]>
}

export interface DiscoveryOptions {
  /** `name:port`, e.g. a headless Service `memcached.cache.svc.cluster.local:11211`. */
  readonly target: string
  readonly intervalMs: number
  readonly log: Logger
  /** Called with the sorted `ip:port` / `[ipv6]:port` list whenever it changes (never with an empty list). */
  readonly onChange: (addresses: string[]) => void
  readonly resolver?: Resolver
}

const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND'])

/**
 * Re-resolves a DNS name on an interval and reports its memcached addresses. A failed or empty
 * lookup keeps the last known list: a DNS hiccup must not empty the placement.
 */
export class DnsDiscovery {
  readonly #name: string
  readonly #port: number
  readonly #options: DiscoveryOptions
  readonly #resolver: Resolver
  #current = ''
  #timer: NodeJS.Timeout | undefined

  constructor (options: DiscoveryOptions) {
    const colon = options.target.lastIndexOf(':')
    this.#name = options.target.slice(0, colon)
    this.#port = Number(options.target.slice(colon + 1))
    this.#options = options
    this.#resolver = options.resolver ?? dns
  }

  /** Resolves once now (so the first placement is known at start), then on the interval. */
  async start (): Promise<void> {
    await this.refresh()
    const tick = (): void => {
      this.#timer = setTimeout(() => { void this.refresh().finally(() => { if (this.#timer !== undefined) tick() }) }, this.#options.intervalMs)
      this.#timer.unref()
    }
    tick()
  }

  stop (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  async refresh (): Promise<void> {
    const [v4, v6] = await Promise.all([this.#lookup('A', this.#resolver.resolve4), this.#lookup('AAAA', this.#resolver.resolve6)])
    if (v4 === undefined && v6 === undefined) return
    const addresses = [...new Set([...(v4 ?? []).map((ip) => `${ip}:${this.#port}`), ...(v6 ?? []).map((ip) => parseAddress(`[${ip}]:${this.#port}`)?.text ?? `[${ip}]:${this.#port}`)])].sort()
    if (addresses.length === 0) {
      this.#options.log.warn({ name: this.#name }, 'memcached discovery found no address; keeping the last known nodes')
      return
    }
    const key = addresses.join(',')
    if (key === this.#current) return
    this.#current = key
    this.#options.log.info({ name: this.#name, nodes: addresses }, 'memcached nodes discovered')
    this.#options.onChange(addresses)
  }

  async #lookup (type: string, resolve: (name: string) => Promise<string[]>): Promise<string[] | undefined> {
    try {
      return await resolve.call(this.#resolver, this.#name)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? ''
      if (NO_RECORDS.has(code)) return []
      this.#options.log.warn({ name: this.#name, type, code }, 'memcached discovery lookup failed; keeping the last known nodes')
      return undefined
    }
  }
}
