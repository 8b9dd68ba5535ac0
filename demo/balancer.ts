import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'

/**
 * The demo's load balancer: round-robin, not sticky, over the sidecars, so that consecutive
 * requests of one browser land on different instances. Stands in for nginx/HAProxy so that the
 * demo needs nothing installed. Like HAProxy with `option httpchk GET /readyz` it checks each
 * sidecar's admin /readyz, and like `option redispatch` it sends a request whose backend
 * refused the connection to the next one (requests without a body only: those are safe to
 * send again).
 */

export interface Backend {
  readonly name: string
  readonly port: number
  readonly adminPort: number
}

const CHECK_EVERY_MS = 500
const CHECK_TIMEOUT_MS = 400
const UPSTREAM_TIMEOUT_MS = 30_000
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

export interface BalancerOptions {
  /** Longest wait for a sidecar's answer (then 504). Default 30000. */
  readonly timeoutMs?: number
}

export class RoundRobinBalancer {
  readonly #backends: readonly Backend[]
  readonly #timeoutMs: number
  readonly #healthy = new Map<string, boolean>()
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 64 })
  #server: Server | undefined
  #checker: NodeJS.Timeout | undefined
  #next = 0
  port = 0

  constructor (backends: readonly Backend[], options: BalancerOptions = {}) {
    this.#backends = backends
    this.#timeoutMs = options.timeoutMs ?? UPSTREAM_TIMEOUT_MS
    for (const b of backends) this.#healthy.set(b.name, true)
  }

  get url (): string { return `http://127.0.0.1:${this.port}` }

  /** Whether the last health check (or request) found the backend serving. */
  healthy (name: string): boolean {
    return this.#healthy.get(name) === true
  }

  /** Checks every backend's /readyz now. */
  async check (): Promise<void> {
    await Promise.all(this.#backends.map(async (b) => {
      this.#healthy.set(b.name, await readyz(b.adminPort))
    }))
  }

  /**
   * Listens on 127.0.0.1:`port`; when that port is taken and `fallback` is true, on a free
   * port instead. Resolves with the port.
   */
  async listen (port: number, fallback = true): Promise<number> {
    await this.check()
    const server = createServer((req, res) => { this.#forward(req, res) })
    server.keepAliveTimeout = 5000
    this.#server = server
    const bind = async (p: number): Promise<void> => {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(p, '127.0.0.1', () => {
          server.off('error', reject)
          resolve()
        })
      })
    }
    try {
      await bind(port)
    } catch (err) {
      if (!fallback || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
      await bind(0)
    }
    const address = server.address()
    this.port = typeof address === 'object' && address !== null ? address.port : 0
    this.#checker = setInterval(() => { void this.check() }, CHECK_EVERY_MS)
    this.#checker.unref()
    return this.port
  }

  async close (): Promise<void> {
    clearInterval(this.#checker)
    const server = this.#server
    this.#server = undefined
    this.#agent.destroy()
    if (server === undefined) return
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }

  /**
   * The backend the next request will be sent to (as things stand: a health check or a refused
   * connection can change it), without taking its turn.
   */
  peek (): string | undefined {
    return this.#choose(new Set())?.backend.name
  }

  /** The next backend in round-robin order, healthy ones first; takes its turn. */
  #pick (tried: ReadonlySet<string>): Backend | undefined {
    const chosen = this.#choose(tried)
    if (chosen === undefined) return undefined
    this.#next = (chosen.index + 1) % this.#backends.length
    return chosen.backend
  }

  #choose (tried: ReadonlySet<string>): { backend: Backend, index: number } | undefined {
    const n = this.#backends.length
    for (const wantHealthy of [true, false]) {
      for (let i = 0; i < n; i++) {
        const index = (this.#next + i) % n
        const b = this.#backends[index]
        if (b === undefined || tried.has(b.name) || this.healthy(b.name) !== wantHealthy) continue
        return { backend: b, index }
      }
    }
    return undefined
  }

  #forward (req: IncomingMessage, res: ServerResponse, tried = new Set<string>()): void {
    const backend = this.#pick(tried)
    if (backend === undefined) {
      fail(res, 503, 'no sidecar is available\n')
      return
    }
    tried.add(backend.name)
    const headers: Record<string, string | string[]> = {}
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value
    }
    const peer = req.socket.remoteAddress ?? ''
    const forwardedFor = req.headers['x-forwarded-for']
    headers['x-forwarded-for'] = typeof forwardedFor === 'string' ? `${forwardedFor}, ${peer}` : peer
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0
    const upstream = request({
      host: '127.0.0.1',
      port: backend.port,
      method: req.method,
      path: req.url,
      headers,
      agent: this.#agent,
      timeout: this.#timeoutMs
    }, (proxied) => {
      const raw: string[] = []
      for (let i = 0; i + 1 < proxied.rawHeaders.length; i += 2) {
        const name = proxied.rawHeaders[i] as string
        if (!HOP_BY_HOP.has(name.toLowerCase())) raw.push(name, proxied.rawHeaders[i + 1] as string)
      }
      raw.push('X-Demo-Backend', backend.name)
      res.writeHead(proxied.statusCode ?? 502, proxied.statusMessage, raw)
      proxied.pipe(res)
      proxied.on('error', () => res.destroy())
    })
    let answered = false
    upstream.on('response', () => { answered = true })
    upstream.on('timeout', () => upstream.destroy(new Error('upstream timeout')))
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (answered || res.headersSent) {
        res.destroy()
        return
      }
      if (err.message === 'upstream timeout') {
        fail(res, 504, 'the sidecar did not answer in time\n')
        return
      }
      // The sidecar is gone (connection refused or reset before any answer): take it out of the
      // rotation until its /readyz answers again, and redispatch what can be sent again.
      this.#healthy.set(backend.name, false)
      if (!hasBody && tried.size < this.#backends.length) this.#forward(req, res, tried)
      else fail(res, 502, 'the sidecar failed\n')
    })
    res.on('close', () => { if (!res.writableFinished) upstream.destroy() })
    if (hasBody) req.pipe(upstream)
    else upstream.end()
  }
}

function fail (res: ServerResponse, status: number, body: string): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

/** True when the admin listener's /readyz answers 200 within the check timeout. */
async function readyz (adminPort: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: adminPort, path: '/readyz', timeout: CHECK_TIMEOUT_MS, agent: false }, (res) => {
      res.resume()
      resolve(res.statusCode === 200)
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', () => resolve(false))
    req.end()
  })
}
