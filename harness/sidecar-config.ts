import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { Document, isMap, isScalar } from 'yaml'

type Sections = Record<string, Record<string, unknown>>

export interface SidecarYamlOptions {
  /** listen and admin ports on 127.0.0.1 (0: any, read back with `listeningPorts`). */
  readonly port: number
  readonly adminPort: number
  readonly upstream: string
  /** The environment variable the secret is read from: the YAML says `${NAME}`, as an operator's would. */
  readonly secretEnv: string
  readonly nodes: readonly string[]
  readonly write?: 'async' | 'sync'
  readonly timeoutMs: number
  readonly shutdown: { readonly delayMs: number, readonly timeoutMs: number }
  readonly logLevel: string
  /** More keys, merged into their sections (a key given here wins). */
  readonly extra?: Sections
  /** Comment lines above a section (`memcached`) or a key (`memcached.write`), and above the whole file (`''`). */
  readonly comments?: Readonly<Record<string, string>>
}

/**
 * The sidecar's YAML config for a CLI child on loopback (plain-http cookies, upstream timeout
 * 10 s): one writer for the e2e tests, chaos, the bench and the demo.
 */
export function sidecarYaml (o: SidecarYamlOptions): string {
  const config: Sections = {
    listen: { host: '127.0.0.1', port: o.port },
    admin: { host: '127.0.0.1', port: o.adminPort },
    upstream: { url: o.upstream, timeoutMs: 10_000 },
    session: { secrets: [`\${${o.secretEnv}}`], cookie: { secure: false } },
    memcached: { nodes: [...o.nodes], write: o.write ?? 'async', timeoutMs: o.timeoutMs },
    shutdown: { delayMs: o.shutdown.delayMs, timeoutMs: o.shutdown.timeoutMs },
    log: { level: o.logLevel }
  }
  for (const [section, values] of Object.entries(o.extra ?? {})) {
    config[section] = { ...config[section], ...Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) }
  }
  const doc = new Document(config)
  for (const [path, comment] of Object.entries(o.comments ?? {})) {
    const text = comment.split('\n').map((l) => ` ${l}`).join('\n')
    if (path === '') {
      doc.commentBefore = text
      continue
    }
    const keys = path.split('.')
    const last = keys.pop() as string
    const parent = keys.length === 0 ? doc.contents : doc.getIn(keys, true)
    const pair = isMap(parent) ? parent.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === last) : undefined
    if (pair === undefined) throw new Error(`sidecarYaml: no key ${path} to comment`)
    const key = isScalar(pair.key) ? pair.key : doc.createNode(pair.key)
    key.commentBefore = text
    pair.key = key
  }
  return doc.toString()
}

/**
 * The ports a sidecar CLI child listens on, read from its `session-sidecar listening` log line
 * (JSON on stdout, at log.level info or below): for a sidecar configured on port 0.
 */
export async function listeningPorts (child: ChildProcess, ms = 15_000): Promise<{ port: number, adminPort: number }> {
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the sidecar did not say where it listens within ${ms} ms`)), ms)
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`the sidecar exited with ${String(code)} before listening`)) })
      lines.on('line', (line) => {
        let entry: { msg?: string, url?: string, adminUrl?: string }
        try { entry = JSON.parse(line) as typeof entry } catch { return }
        if (entry.msg !== 'session-sidecar listening') return
        clearTimeout(timer)
        resolve({ port: Number(new URL(String(entry.url)).port), adminPort: Number(new URL(String(entry.adminUrl)).port) })
      })
    })
  } finally {
    lines.close()
    child.stdout?.resume()
  }
}
