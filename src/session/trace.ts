import type { Logger } from 'pino'
import { keyHash } from './key.js'
import type { ReadResult } from './reader.js'

/**
 * One session followed through memcached at `log.level: debug`: what each node answered to a
 * read or a check, what was decided, what was written, moved or ended. Each line carries the
 * key's hash (`session`) and an `event`, never the key, the cookie or the data. Nothing is built
 * above debug: the fields come from a function called only when the line is written.
 */
export class SessionTrace {
  readonly #log: Logger

  constructor (log: Logger) {
    this.#log = log
  }

  line (key: string, event: TraceEvent, fields: () => Record<string, unknown>): void {
    if (!this.#log.isLevelEnabled('debug')) return
    this.#log.debug({ session: keyHash(key), event, ...fields() }, MESSAGES[event])
  }
}

const MESSAGES = {
  answers: 'session: what its memcached nodes answered',
  loaded: 'session: found for a request',
  'tombstone-found': 'session: a tombstone was found; it ends here and is copied to the nodes that lack it',
  restored: 'session: its local copy is stored again where memcached lost it or holds an older one',
  written: 'session: a write landed',
  moved: 'session: now held on other memcached nodes',
  ended: 'session: destroyed or regenerated here; tombstones written',
  'ended-elsewhere': 'session: a write found it ended elsewhere'
} as const

export type TraceEvent = keyof typeof MESSAGES

/** What each node answered, as `address: v3 | v3 ended | miss | error` (no data). */
export function answersOf (addresses: readonly string[], results: readonly ReadResult[]): string[] {
  return addresses.map((address, i) => `${address}: ${describe(results[i])}`)
}

function describe (result: ReadResult | undefined): string {
  if (result === undefined) return 'not asked'
  if (result === null) return 'miss'
  if (result === 'error') return 'error'
  return result.ended ? `v${result.version} ended` : `v${result.version}`
}
