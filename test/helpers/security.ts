import { createServer, type Server, type Socket } from 'node:net'

/**
 * A loopback TCP listener on a chosen host (e.g. 127.0.0.2, outside a `127.0.0.1/32` allow
 * list) that counts connections and never answers: proves an address is never contacted.
 */
export class ConnectionTrap {
  connections = 0
  port = 0
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined

  constructor (readonly host = '127.0.0.1') {}

  get address (): string { return `${this.host}:${this.port}` }

  async start (): Promise<this> {
    const server = createServer((socket) => {
      this.connections++
      this.#sockets.add(socket)
      socket.on('close', () => this.#sockets.delete(socket))
      socket.on('error', () => {})
    })
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, this.host, resolve)
    })
    const a = server.address()
    this.port = typeof a === 'object' && a !== null ? a.port : 0
    return this
  }

  async close (): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    await new Promise((resolve) => this.#server?.close(resolve))
  }
}

/**
 * Runs `task` on every item with at most `limit` in flight (a bounded pool, not unbounded
 * Promise.all); results in input order. Rejections are returned, not thrown.
 */
export async function inBatches<T, R> (items: readonly T[], limit: number, task: (item: T, index: number) => Promise<R>): Promise<Array<PromiseSettledResult<R>>> {
  const results = new Array<PromiseSettledResult<R>>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      try {
        results[i] = { status: 'fulfilled', value: await task(items[i] as T, i) }
      } catch (reason) {
        results[i] = { status: 'rejected', reason }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}
