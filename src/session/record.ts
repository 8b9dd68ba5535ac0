/** One session as this node knows it. Replaced (never edited) when its data or placement changes. */
export interface SessionRecord {
  readonly key: string
  /** Write counter; +1 on every stored change. */
  readonly version: number
  /** base64url(JSON object): passed to the app as-is, stored in memcached as-is. */
  readonly header: string
  readonly primary: string
  readonly backup: string | undefined
  /** When memcached last confirmed this copy (load, touch or write): performance.now(), a monotonic clock a wall-clock step cannot move. */
  checkedAt: number
  /**
   * Highest cookie version this copy has been accepted for: above `version` only after a stale
   * read, so the same old cookie does not send every request back to memcached.
   */
  acceptedVersion: number
  /** The cookie value last issued or verified for exactly this state: lets a hit skip the HMAC. */
  cookie: string | undefined
  /** When this sidecar last sent this state's cookie (monotonic ms), with `session.cookie.maxAge`: it is sent again before it expires. */
  cookieSentAt?: number
}

/** A copy as memcached holds it, once opened (sealed-copy.ts has the stored form). */
export interface StoredCopy {
  readonly version: number
  readonly header: string
  /**
   * A tombstone: the session was destroyed (or its key regenerated) at this version. It wins
   * over live data whatever the versions, and no write makes it live again.
   */
  readonly ended: boolean
}

export function withState (r: SessionRecord, patch: Partial<SessionRecord>): SessionRecord {
  return { ...r, cookie: undefined, cookieSentAt: undefined, ...patch }
}
