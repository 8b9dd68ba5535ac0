import { createServer, type Server } from 'node:net'

/** A TCP port free on 127.0.0.1 right now, for a server another process will bind. */
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

/**
 * Polls `check` until it returns true, and throws once `ms` pass: every wait of the tests has a
 * deadline. The pause between checks grows from 5 ms to 100 ms; `intervalMs` fixes it (0: check
 * again as soon as the last check has answered, for a window measured in milliseconds).
 */
export async function until (check: () => boolean | Promise<boolean>, ms = 5000, what = 'condition', options: { intervalMs?: number } = {}): Promise<void> {
  const deadline = Date.now() + ms
  for (let wait = options.intervalMs ?? 5; ; wait = options.intervalMs ?? Math.min(wait * 2, 100)) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
  }
}

/** Resolves as `event` does, or throws once `ms` pass without it. */
export async function within<T> (event: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([event, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Listens on 127.0.0.1 on a port the kernel picks, and resolves with that port. */
export async function listenOnLoopback (server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return typeof address === 'object' && address !== null ? address.port : 0
}

/** Closes a server and every connection it still holds (HTTP servers: keep-alive ones too). */
export async function closeServer (server: Server & { closeAllConnections?: () => void }): Promise<void> {
  server.closeAllConnections?.()
  await new Promise((resolve) => server.close(resolve))
}
