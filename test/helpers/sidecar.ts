import { pino } from 'pino'
import { buildConfig, type SidecarConfig } from '../../src/config.js'
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
    log: { level: process.env.TEST_LOG_LEVEL ?? 'silent' }
  }
  for (const [section, values] of Object.entries(overrides)) {
    raw[section] = { ...raw[section], ...values }
  }
  return buildConfig(raw)
}

/** An in-process sidecar; `close` it in t.teardown. */
export async function startTestSidecar (config: SidecarConfig): Promise<Sidecar> {
  return await startSidecar(config, pino({ level: config.log.level }), { defaultMetrics: false })
}

export type { DeepPartial }
