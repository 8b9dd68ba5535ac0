import { createServer, type Server, type Socket } from 'node:net'

/**
 * A loopback TCP listener that counts connections and never answers (or answers garbage):
 * stands in for a hung memcached, and proves that forged addresses are never contacted.
 */
export class SilentServer {
  connections = 0
  /** Bytes received on every connection: what it was asked (and never answered, or answered with garbage). */
  received = 0
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined
  port = 0

  constructor (readonly reply: string | undefined = undefined) {}

  get address (): string { return `127.0.0.1:${this.port}` }

  async start (): Promise<this> {
    this.#server = createServer((socket) => {
      this.connections++
      this.#sockets.add(socket)
      socket.on('close', () => this.#sockets.delete(socket))
      socket.on('error', () => {})
      socket.on('data', (chunk: Buffer) => { this.received += chunk.length })
      if (this.reply !== undefined) socket.on('data', () => socket.write(this.reply as string))
    })
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve))
    const a = this.#server.address()
    this.port = typeof a === 'object' && a !== null ? a.port : 0
    return this
  }

  async close (): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    await new Promise((resolve) => this.#server?.close(resolve))
  }
}
