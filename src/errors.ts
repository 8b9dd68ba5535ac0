/**
 * Every error the sidecar raises or logs, with a stable code. Codes are never reused:
 * operators grep logs and alert on them.
 */
export class SidecarError extends Error {
  readonly code: string
  readonly statusCode: number | undefined

  constructor (code: string, message: string, statusCode?: number, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'SidecarError'
    this.code = code
    this.statusCode = statusCode
  }
}

/** The config file is missing, unreadable or invalid. `problems` holds one line per problem. */
export class ConfigError extends SidecarError {
  readonly problems: readonly string[]

  constructor (problems: readonly string[], options?: { cause?: unknown }) {
    super('SIDECAR_ERR_CONFIG', problems.join('\n'), undefined, options)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

export const codes = {
  /** Config could not be loaded or validated. */
  CONFIG: 'SIDECAR_ERR_CONFIG',
  /** The upstream app refused the connection or reset it: the client gets 502. */
  UPSTREAM_UNAVAILABLE: 'SIDECAR_ERR_UPSTREAM_UNAVAILABLE',
  /** The upstream app did not answer within upstream.timeoutMs: the client gets 504. */
  UPSTREAM_TIMEOUT: 'SIDECAR_ERR_UPSTREAM_TIMEOUT',
  /** The app's response could not be relayed (headers too large, bad status): 502. */
  UPSTREAM_BAD_RESPONSE: 'SIDECAR_ERR_UPSTREAM_BAD_RESPONSE',
  /** A session update header from the app was refused; the previous session is kept. */
  SESSION_UPDATE_REFUSED: 'SIDECAR_ERR_SESSION_UPDATE_REFUSED',
  /** A memcached operation failed or timed out; the node is marked down. */
  MEMCACHED_UNAVAILABLE: 'SIDECAR_ERR_MEMCACHED_UNAVAILABLE',
  /** A session could not be written to any memcached node; it is kept locally and retried. */
  SESSION_WRITE_FAILED: 'SIDECAR_ERR_SESSION_WRITE_FAILED',
  /** A copy read from memcached did not open (forged, another secret, moved, damaged): treated as missing. */
  STORED_COPY_REJECTED: 'SIDECAR_ERR_STORED_COPY_REJECTED',
  /** Shutdown ran out of time with memcached writes still pending. */
  SHUTDOWN_PENDING_WRITES: 'SIDECAR_ERR_SHUTDOWN_PENDING_WRITES'
} as const

export type ErrorCode = typeof codes[keyof typeof codes]

/** The short bodies sent to clients; they never name internal addresses. */
export const upstreamErrorBodies = {
  502: 'Bad Gateway\n',
  504: 'Gateway Timeout\n'
} as const
