/**
 * Every error class the sidecar raises and every code it logs, in one place. Codes are stable
 * and never reused: operators grep logs and alert on them. Each means one thing; the README's
 * "Error codes" section gives its meaning and the action to take (a test keeps the two in step).
 */
export const codes = {
  /** Config could not be loaded or validated: the process exits 2. */
  CONFIG: 'SIDECAR_ERR_CONFIG',
  /** The upstream app refused the connection or reset it: the client gets 502. */
  UPSTREAM_UNAVAILABLE: 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE',
  /** The upstream app did not answer within upstream.timeoutMs: the client gets 504. */
  UPSTREAM_TIMEOUT: 'SIDECAR_ERR_UPSTREAM_TIMEOUT',
  /** The app's response could not be relayed (headers too large, bad status, failed before the first byte): 502. */
  UPSTREAM_BAD_RESPONSE: 'SIDECAR_ERR_UPSTREAM_BAD_RESPONSE',
  /** A session header from the app was invalid (encoding, JSON, size, depth): refused, the previous session kept. */
  SESSION_UPDATE_REFUSED: 'SIDECAR_ERR_SESSION_UPDATE_REFUSED',
  /** Applying the app's session headers failed unexpectedly (a bug): the previous session kept. */
  SESSION_UPDATE_FAILED: 'SIDECAR_ERR_SESSION_UPDATE_FAILED',
  /** Loading a session failed unexpectedly (a bug, not memcached being down): served as unavailable. */
  SESSION_LOAD_FAILED: 'SIDECAR_ERR_SESSION_LOAD_FAILED',
  /** A memcached node failed or timed out: it is marked down for a backoff window. */
  MEMCACHED_UNAVAILABLE: 'SIDECAR_ERR_MEMCACHED_UNAVAILABLE',
  /** Session writes reach no memcached node: kept locally (one per session, within cache.maxBytes) and retried. */
  SESSION_WRITE_FAILED: 'SIDECAR_ERR_SESSION_WRITE_FAILED',
  /** A copy read from memcached did not open (forged, another secret, moved, damaged): treated as missing. */
  STORED_COPY_REJECTED: 'SIDECAR_ERR_STORED_COPY_REJECTED',
  /** Shutdown ran out of time with memcached writes still pending. */
  SHUTDOWN_PENDING_WRITES: 'SIDECAR_ERR_SHUTDOWN_PENDING_WRITES',
  /** Shutdown ran out of time with requests in flight: their connections were closed. */
  SHUTDOWN_REQUESTS_CUT: 'SIDECAR_ERR_SHUTDOWN_REQUESTS_CUT',
  /** The app set a cookie named as the sidecar's session cookie: removed from the response. */
  APP_SET_SESSION_COOKIE: 'SIDECAR_ERR_APP_SET_SESSION_COOKIE'
} as const

/** The config file is missing, unreadable or invalid. `problems` holds one line per problem. */
export class ConfigError extends Error {
  readonly code = codes.CONFIG
  readonly problems: readonly string[]

  constructor (problems: readonly string[], options?: { cause?: unknown }) {
    super(problems.join('\n'), options)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

export type MemcachedCommand = 'gets' | 'gats' | 'add' | 'cas' | 'delete' | 'version'

/** A memcached node failed to answer in time or at all (not for NOT_FOUND / EXISTS replies). */
export class NodeUnavailable extends Error {
  readonly code = codes.MEMCACHED_UNAVAILABLE
  constructor (readonly address: string, readonly command: MemcachedCommand, reason: string) {
    super(`memcached ${address} ${command}: ${reason}`)
    this.name = 'NodeUnavailable'
  }
}

/** Why an update was refused; logged and counted by reason. */
export type RefusalReason = 'invalid-base64' | 'invalid-json' | 'not-an-object' | 'too-large' | 'too-deep' | 'duplicate' | 'session-unavailable'

/** A session header from the app that cannot be applied; the previous session stays. */
export class RefusedUpdate extends Error {
  readonly code = codes.SESSION_UPDATE_REFUSED
  constructor (readonly reason: RefusalReason, readonly header: string) {
    super(`${header}: ${reason}`)
    this.name = 'RefusedUpdate'
  }
}

/** The short bodies sent to clients; they never name internal addresses. */
export const upstreamErrorBodies = {
  502: 'Bad Gateway\n',
  504: 'Gateway Timeout\n'
} as const
