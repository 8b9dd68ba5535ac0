#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { loadConfig } from './config.js'
import { ConfigError } from './errors.js'
import { createLogger } from './logger.js'
import { startSidecar } from './sidecar.js'

const HELP = `Usage: session-sidecar --config <file.yaml>

Runs a reverse proxy in front of one app instance that owns the session cookie, keeps
sessions in a local cache and backs them up to memcached.

Options:
  -c, --config <file>  YAML config (\${ENV_VAR} and \${ENV_VAR:-default} are substituted
                       from the environment). Required.
  -h, --help           Show this help.
  -v, --version        Print the version.

Signals: SIGTERM/SIGINT drain (readyz 503, finish requests, flush writes) and exit 0,
or 1 when shutdown.timeoutMs ran out with writes pending.
Exit codes: 0 clean stop, 1 failed drain or runtime error, 2 bad usage or config.
`

async function main (argv: string[]): Promise<number> {
  let values
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
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
  const log = createLogger(config.log.level)
  const sidecar = await startSidecar(config, log)
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

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
  // Timers (metrics, retry) must not keep a finished process alive.
  setTimeout(() => process.exit(code), 100).unref()
}, (err: unknown) => {
  process.stderr.write(`session-sidecar: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
