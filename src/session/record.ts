/** One session as this node knows it. Replaced (never edited) when its data or placement changes. */
export interface SessionRecord {
  readonly key: string
  /** Write counter; +1 on every stored change. */
  readonly version: number
  /** base64url(JSON object): passed to the app as-is, stored in memcached as-is. */
  readonly header: string
  readonly primary: string
  readonly backup: string | undefined
  /** When memcached last confirmed this copy (load, touch or write); ms since epoch. */
  checkedAt: number
  /**
   * Highest cookie version this copy has been accepted for: above `version` only after a stale
   * read, so the same old cookie does not send every request back to memcached.
   */
  acceptedVersion: number
  /** The cookie value last issued or verified for exactly this state: lets a hit skip the HMAC. */
  cookie: string | undefined
}

/** A copy as memcached holds it: `<version> <base64url JSON>`. */
export interface StoredCopy {
  readonly version: number
  readonly header: string
}

export function encodeCopy (version: number, header: string): string {
  return `${version} ${header}`
}

// The data is at least `{}` (base64url `e30`): an empty or truncated value is not a session.
const COPY = /^([1-9][0-9]{0,14}) ([A-Za-z0-9_-]{3,})$/

/** Undefined for anything this sidecar did not write (treated like a miss, never served). */
export function decodeCopy (value: string): StoredCopy | undefined {
  const m = COPY.exec(value)
  if (m === null) return undefined
  return { version: Number(m[1]), header: m[2] as string }
}

export function withState (r: SessionRecord, patch: Partial<SessionRecord>): SessionRecord {
  return { ...r, cookie: undefined, ...patch }
}
