import { createServer, type Server } from 'node:net'

// Ports. A server in this process listens on port 0 and reads its port back
// (`listenOnLoopback`); so does a child that reports where it listens (the bench's server
// scripts, the sidecar CLI's "listening" log line). A child that cannot (memcached, php -S,
// flask, Tomcat, HAProxy, nginx), or one restarted on the same address (e2e and demo sidecars,
// which load balancers know by port), gets `freePort()`, and is started through `onFreePort`,
// which tries another port when the one it got was taken meanwhile.

/**
 * A TCP port free on 127.0.0.1 right now, for a server another process will bind (or for a
 * port nobody listens on).
 */
export async function freePort (): Promise<number> {
  // Below Linux's ephemeral range (32768-60999), where the kernel picks the source ports of
  // outgoing connections and the ports of listen(0): a port handed out here and bound a moment
  // later cannot meanwhile become some busy test's client socket, and random picks keep two
  // parallel test files from being handed the same recycled port. Below the range the chaos
  // checker reserves for nodes it restarts (chaos/lib/ports.ts: the 12000 ports under it).
  for (let attempt = 0; ; attempt++) {
    const port = PORT_FLOOR + Math.floor(Math.random() * (PORT_CEILING - PORT_FLOOR))
    if (await bindable(port)) return port
    if (attempt >= 50) throw new Error('no free port found below the ephemeral range')
  }
}

const PORT_FLOOR = 10_000
const PORT_CEILING = 20_000

/** Whether 127.0.0.1:`port` can be bound right now. */
export async function bindable (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const server = createServer()
    server.unref()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** Whether a failed start says its port was taken (EADDRINUSE, "Address already in use"). */
export function portTaken (err: unknown): boolean {
  return /EADDRINUSE|in use/i.test(err instanceof Error ? err.message : String(err))
}

/**
 * Starts something on `freePort()`; when the start fails because that port was taken between
 * the check and the bind (`portTaken`, or the caller's own test), tries again on another, up to
 * `attempts` times. Any other failure is thrown at once.
 */
export async function onFreePort<T> (start: (port: number) => Promise<T>, attempts = 3, taken: (err: unknown) => boolean = portTaken): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    try {
      return await start(port)
    } catch (err) {
      if (attempt >= attempts || !taken(err)) throw err
    }
  }
}

/** Listens on 127.0.0.1 on a port the kernel picks, and resolves with that port. */
export async function listenOnLoopback (server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  return portOf(server)
}

/** The port a listening server is bound to (0 when it is not listening on TCP). */
export function portOf (server: Server): number {
  const address = server.address()
  return typeof address === 'object' && address !== null ? address.port : 0
}

/** Closes a server and every connection it still holds (HTTP servers: keep-alive ones too). */
export async function closeServer (server: Server & { closeAllConnections?: () => void }): Promise<void> {
  server.closeAllConnections?.()
  await new Promise((resolve) => server.close(resolve))
}
