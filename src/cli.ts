#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { isDeepStrictEqual, parseArgs } from 'node:util'
import { lookup } from 'node:dns/promises'
import { loadConfig, type SidecarConfig } from './config/index.js'
import { DnsDiscovery } from './memcached/discovery.js'
import { parseAddress } from './memcached/address.js'
import { ConfigError } from './errors.js'
import { createLogger } from './logger.js'
import { fingerprint, keyring } from './session/secrets.js'
import { startSidecar } from './sidecar.js'

const HELP = `Usage: session-sidecar --config <file.yaml>

Runs a reverse proxy in front of one app instance that owns the session cookie, keeps
sessions in a local cache and backs them up to memcached.

Options:
  -c, --config <file>  YAML config (\${ENV_VAR} and \${ENV_VAR:-default} are substituted
                       from the environment). Required.
      --check          Validate the config and resolve its memcached nodes (and
                       memcached.discovery.dns), print them and the fingerprints of the
                       secret that signs and those that only verify, exit; serves nothing.
  -h, --help           Show this help.
  -v, --version        Print the version.

Signals: SIGTERM/SIGINT drain (readyz 503, finish requests, flush writes) and exit 0,
or 1 when shutdown.timeoutMs ran out with writes pending. SIGHUP re-reads the config
file and applies its memcached.nodes (other changes need a restart).
Exit codes: 0 clean stop or check passed, 1 failed drain or runtime error, 2 bad usage,
bad config or failed check.
`

async function main (argv: string[]): Promise<number> {
  let values
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        check: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' }
      }
    }))
  } catch (err) {
    process.stderr.write(`session-sidecar: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  if (values.help === true) {
    process.stdout.write(HELP)
    return 0
  }
  if (values.version === true) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
    process.stdout.write(`${pkg.version}\n`)
    return 0
  }
  if (values.config === undefined) {
    process.stderr.write(`session-sidecar: --config <file.yaml> is required\n\n${HELP}`)
    return 2
  }
  let config
  try {
    config = loadConfig(values.config)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`session-sidecar: invalid config ${values.config}\n`)
    for (const problem of err.problems) process.stderr.write(`  ${problem}\n`)
    return 2
  }
  if (values.check === true) return await check(values.config, config)
  const file = values.config
  const log = createLogger(config.log.level)
  // Installed before the start, which waits for memcached: a reload asked for meanwhile
  // (systemd's ExecReload, a config watcher) runs once started instead of killing the process
  // (SIGHUP's default action).
  let reload = (): void => { reloadAsked = true }
  let reloadAsked = false
  process.on('SIGHUP', () => { reload() })
  log.info({ config: file }, 'starting')
  const sidecar = await startSidecar(config, log)
  reload = () => {
    try {
      const next = loadConfig(file)
      const { nodes, replicas, allow } = next.memcached
      sidecar.setNodes(nodes, { replicas, allow })
      // Names only, never values (secrets): what the operator changed that this process ignores.
      const notApplied = changedKeys(config, next).filter((key) => !RELOADED.includes(key))
      log.info({ nodes, replicas, notApplied }, 'SIGHUP: config re-read, memcached.nodes applied with the replicas and allow list that go with them (the keys in notApplied take effect on restart)')
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [(err as Error).message]
      log.error({ problems }, 'SIGHUP: config not reloaded, it is invalid; running on as before')
    }
  }
  if (reloadAsked) reload()
  return await new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'draining')
      sidecar.close().then((left) => resolve(left > 0 ? 1 : 0), (err: unknown) => {
        log.error({ err }, 'shutdown failed')
        resolve(1)
      })
    }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  })
}

/** What SIGHUP applies; every other key takes effect on restart. */
const RELOADED = ['memcached.nodes', 'memcached.replicas', 'memcached.allow']

/** The dotted keys whose values differ between two configs (leaves and lists compared whole). */
function changedKeys (a: unknown, b: unknown, path = ''): string[] {
  const isSection = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof RegExp)
  if (!isSection(a) || !isSection(b)) return isDeepStrictEqual(a, b) ? [] : [path]
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])]
  return keys.flatMap((key) => changedKeys(a[key], b[key], path === '' ? key : `${path}.${key}`))
}

/** --check: the config is valid and every memcached name resolves. */
async function check (file: string, config: SidecarConfig): Promise<number> {
  const problems: string[] = []
  const lines: string[] = []
  // Which configured node reaches each address: two names for one memcached (localhost and
  // 127.0.0.1) would put a session's copy and its backup on the same process.
  const reachedBy = new Map<string, number>()
  for (const [i, node] of config.memcached.nodes.entries()) {
    const address = parseAddress(node)
    if (address === undefined) continue
    let hosts = [address.host]
    if (address.family === 0) {
      try {
        hosts = (await lookup(address.host, { all: true })).map((f) => f.address)
        lines.push(`  ${node} -> ${hosts.join(', ')}`)
      } catch (err) {
        problems.push(`memcached.nodes[${i}]: "${node}" does not resolve (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
        continue
      }
    } else {
      lines.push(`  ${node}`)
    }
    for (const host of hosts) {
      const endpoint = `${host.includes(':') ? `[${host}]` : host}:${address.port}`
      const other = reachedBy.get(endpoint)
      if (other !== undefined && other !== i) {
        problems.push(`memcached.nodes[${i}]: "${node}" reaches ${endpoint}, as memcached.nodes[${other}] "${config.memcached.nodes[other] ?? ''}" does: one memcached listed twice would hold a session's copy and its backup`)
        break
      }
      reachedBy.set(endpoint, i)
    }
  }
  const { dns } = config.memcached.discovery
  if (dns !== undefined) {
    let found: string[] = []
    const discovery = new DnsDiscovery({ target: dns, intervalMs: 60_000, log: createLogger('silent'), onChange: (a) => { found = a } })
    await discovery.refresh()
    if (found.length === 0) problems.push(`memcached.discovery.dns: "${dns}" has no address now`)
    else lines.push(`  ${dns} (discovery) -> ${found.join(', ')}`)
  }
  if (problems.length > 0) {
    process.stderr.write(`session-sidecar: check failed for ${file}\n`)
    for (const p of problems) process.stderr.write(`  ${p}\n`)
    return 2
  }
  process.stdout.write(`session-sidecar: ${file} is valid\nmemcached nodes:\n${lines.join('\n')}\n${secretLines(config)}`)
  // Valid, but worth a word: with no allow list, a leaked secret lets a cookie name any address.
  if (config.memcached.allow.length === 0) process.stderr.write('session-sidecar: warning: memcached.allow is empty: a cookie signed with a leaked secret could make this sidecar contact any address; list your memcached networks (CIDRs, *.host globs)\n')
  return 0
}

/**
 * Which secret signs and which only verify, by fingerprint (never the secret): what a rotation
 * step is checked against (README, "Secret rotation").
 */
function secretLines (config: SidecarConfig): string {
  const [signer = '', ...verifyOnly] = keyring(config.session).map(fingerprint)
  return 'session secrets (first 8 hex digits of SHA-256):\n' +
    `  signs:       ${signer}\n` +
    `  verify-only: ${verifyOnly.length === 0 ? 'none' : verifyOnly.join(', ')}\n` +
    `  ${verifyOnly.length + 1} verify cookies and open stored copies\n`
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
  // Timers (metrics, retry) must not keep a finished process alive.
  setTimeout(() => process.exit(code), 100).unref()
}, (err: unknown) => {
  process.stderr.write(`session-sidecar: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
