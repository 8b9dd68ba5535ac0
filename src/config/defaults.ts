import { deepFreeze, type Milliseconds, type Seconds, type SidecarConfig } from './schema.js'

/**
 * A key with no default: the config must give it, unless `condition` says otherwise. The
 * README's default column reads `required` followed by the condition.
 */
export class Required {
  constructor (readonly condition: string = '') {}
}

/** What derived defaults are computed from: keys read before them. */
export interface DerivationInputs {
  readonly idleTimeout: Seconds
  /** The valid `memcached.nodes`, each once. */
  readonly nodes: readonly string[]
  readonly discoveryDns: string | undefined
}

/**
 * A default computed from other keys. `rule` is how the README's default column states it
 * (after `derived: `); `derive` is what the builder computes.
 */
export class Derived<I, T> {
  constructor (readonly rule: string, readonly derive: (from: I) => T) {}
}

/** Each key of a section maps to its default: a value (undefined = unset), Required or Derived. */
type DefaultsOf<T> = {
  readonly [K in keyof T]-?: T[K] extends RegExp | null
    ? string
    : T[K] extends string | number | boolean | readonly unknown[] | undefined
      ? T[K] | Required | Derived<never, T[K]>
      : DefaultsOf<T[K]>
}

/** `session.ignore`'s default: static assets, which never need a session. */
export const DEFAULT_IGNORE = '\\.(ico|png|gif|jpe?g|css|js|svg|woff2?)$'

/**
 * Every key's default, in the order the keys are listed (unknown-key messages, README table).
 * Units are in the key names (`...Ms` milliseconds, `...Bytes` bytes) except
 * `session.idleTimeout` and `session.cookie.maxAge`, which are seconds. The builder takes its
 * fallbacks and its known keys from here; config/default.yaml and the README's table are tested
 * against it.
 */
export const DEFAULTS = deepFreeze({
  listen: {
    host: '0.0.0.0',
    port: 8080,
    // Loopback and the private ranges (RFC 1918, RFC 4193). A sidecar sits behind a load
    // balancer on a private network, and only that balancer should reach its port; trusting it
    // keeps the client's address and scheme that the balancer recorded. A peer outside these
    // ranges (a client reaching the sidecar directly) gets its forwarding headers replaced, so
    // it cannot claim another address or https.
    trustProxies: ['127.0.0.0/8', '::1/128', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
    forwarded: false,
    headersTimeoutMs: 60_000,
    bodyIdleTimeoutMs: 60_000,
    keepAliveTimeoutMs: 75_000
  },
  upstream: { url: 'http://127.0.0.1:3000', timeoutMs: 30_000 },
  admin: { host: '127.0.0.1', port: 9090 },
  session: {
    secrets: new Required(),
    verifyOnly: [],
    idleTimeout: 1800,
    maxBytes: 8192,
    headerPrefix: 'x-session',
    ignore: DEFAULT_IGNORE,
    cookie: {
      name: 'sid',
      domain: undefined,
      path: '/',
      secure: true,
      httpOnly: true,
      sameSite: 'lax',
      maxAge: undefined
    }
  },
  cache: {
    maxBytes: 64 * 1024 * 1024,
    revalidateMs: new Derived(
      '`min(30000, session.idleTimeout × 500)`, half the idle timeout but at most 30 s',
      ({ idleTimeout }: Pick<DerivationInputs, 'idleTimeout'>): Milliseconds => Math.min(30_000, idleTimeout * 500))
  },
  memcached: {
    nodes: new Required('unless `memcached.discovery.dns` is set'),
    // With discovery the node count is not known at start: default to a backup copy.
    replicas: new Derived(
      '`2` with 2+ nodes or with `memcached.discovery.dns`, else `1`',
      ({ nodes, discoveryDns }: Pick<DerivationInputs, 'nodes' | 'discoveryDns'>): 1 | 2 => nodes.length >= 2 || discoveryDns !== undefined ? 2 : 1),
    write: 'async',
    timeoutMs: 250,
    keyPrefix: 'sess:',
    allow: [],
    encrypt: true,
    discovery: { dns: undefined, intervalMs: 10_000 }
  },
  cookies: { domain: undefined, names: [] },
  shutdown: {
    // A load balancer needs this long to stop routing to a sidecar whose /readyz went 503:
    // HAProxy's example checks every second and needs 2 failures, Kubernetes takes a few
    // seconds to remove a terminating pod's endpoint everywhere.
    delayMs: 5_000,
    timeoutMs: 10_000
  },
  log: { level: 'info' }
} satisfies DefaultsOf<SidecarConfig>)
