import { pino } from 'pino'
import { buildConfig, type SidecarConfig } from '../../src/config/index.js'
import { createLogger } from '../../src/logger.js'
import { startSidecar, type Sidecar } from '../../src/sidecar.js'

export const SECRET = 'test-secret-0123456789abcdef'

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] }

/** A config for tests: loopback, random ports, plain-http cookies, the given upstream/nodes. */
export function testConfig (upstreamUrl: string, nodes: string[], overrides: Record<string, Record<string, unknown>> = {}): SidecarConfig {
  const raw: Record<string, Record<string, unknown>> = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    upstream: { url: upstreamUrl },
    session: { secrets: [SECRET], cookie: { secure: false } },
    memcached: { nodes, timeoutMs: 250 },
    // No load balancer to wait for: a test that closes a sidecar (teardown) closes it at once.
    shutdown: { delayMs: 0 },
    log: { level: process.env.TEST_LOG_LEVEL ?? 'silent' }
  }
  for (const [section, values] of Object.entries(overrides)) {
    raw[section] = { ...raw[section], ...values }
  }
  return buildConfig(raw)
}

export interface TestSidecarOptions {
  /**
   * Where log lines go. When given, the sidecar logs through the production logger
   * (createLogger, with its redaction) at `config.log.level` into this stream.
   */
  readonly destination?: pino.DestinationStream
}

/** An in-process sidecar; `close` it in t.teardown. */
export async function startTestSidecar (config: SidecarConfig, options: TestSidecarOptions = {}): Promise<Sidecar> {
  const log = options.destination === undefined ? pino({ level: config.log.level }) : createLogger(config.log.level, options.destination)
  return await startSidecar(config, log, { defaultMetrics: false })
}

/** A pino destination that keeps every line written to it, for assertions on logs. */
export class LogCapture implements pino.DestinationStream {
  readonly lines: string[] = []

  write (line: string): void {
    this.lines.push(line)
  }

  get text (): string { return this.lines.join('') }

  /** The parsed JSON lines. */
  get entries (): Array<Record<string, unknown>> {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  }
}

export type { DeepPartial }

interface Teardown { teardown: (fn: () => unknown) => void }

/** One memcached and one app for a test file, and sidecars in front of them on demand. */
export interface Stack {
  readonly m: import('./memcached.js').MemcachedProcess
  readonly app: import('./upstream.js').TestApp
  /** A sidecar closed with `t`; `upstreamUrl` defaults to the stack's app. */
  sidecar: (t: Teardown, overrides?: Record<string, Record<string, unknown>>, options?: { upstreamUrl?: string, logs?: LogCapture }) => Promise<Sidecar>
}

export async function startStack (t: Teardown): Promise<Stack> {
  const { MemcachedProcess } = await import('./memcached.js')
  const { TestApp } = await import('./upstream.js')
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  return {
    m,
    app,
    sidecar: async (tt, overrides = {}, options = {}) => {
      const config = testConfig(options.upstreamUrl ?? app.url, [m.address], overrides)
      const sidecar = await startTestSidecar(config, options.logs === undefined ? {} : { destination: options.logs })
      tt.teardown(() => sidecar.close())
      return sidecar
    }
  }
}
