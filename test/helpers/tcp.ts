import { connect, createServer, type Server, type Socket } from 'node:net'

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

/**
 * A TCP proxy in front of a real memcached that, once `refuse` is set, answers every meta
 * store (`ms`) itself with that reply (`EX`: the CAS changed; `NS`: not stored), well formed
 * and in order, while every other command (reads, deletes, version) reaches memcached: a node
 * that answers but will not store. Each refused `ms` goes on as a no-op (`mn`) so memcached's
 * replies keep their order, and its `MN` is replaced with the refusal.
 */
export class StoreRefusingProxy {
  refuse: 'EX' | 'NS' | undefined = undefined
  /** Stores refused so far. */
  refused = 0
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined
  port = 0

  constructor (readonly upstreamPort: number) {}

  get address (): string { return `127.0.0.1:${this.port}` }

  async start (): Promise<this> {
    this.#server = createServer((client) => {
      const upstream = connect(this.upstreamPort, '127.0.0.1')
      for (const s of [client, upstream]) {
        this.#sockets.add(s)
        s.on('close', () => { this.#sockets.delete(s); client.destroy(); upstream.destroy() })
        s.on('error', () => {})
      }
      const replacements: string[] = []
      let asked = Buffer.alloc(0)
      client.on('data', (chunk: Buffer) => {
        asked = Buffer.concat([asked, chunk])
        const out: Buffer[] = []
        for (;;) {
          const nl = asked.indexOf('\r\n')
          if (nl < 0) break
          const words = asked.toString('latin1', 0, nl).split(' ')
          let end = nl + 2
          if (words[0] === 'ms') end += Number(words[2]) + 2
          if (asked.length < end) break
          if (words[0] === 'ms' && this.refuse !== undefined) {
            const opaque = words.find((w) => w.startsWith('O'))
            replacements.push(`${this.refuse}${opaque === undefined ? '' : ` ${opaque}`}\r\n`)
            this.refused++
            out.push(Buffer.from('mn\r\n'))
          } else {
            out.push(asked.subarray(0, end))
          }
          asked = asked.subarray(end)
        }
        if (out.length > 0) upstream.write(Buffer.concat(out))
      })
      let answered = Buffer.alloc(0)
      upstream.on('data', (chunk: Buffer) => {
        answered = Buffer.concat([answered, chunk])
        const out: Buffer[] = []
        for (;;) {
          const nl = answered.indexOf('\r\n')
          if (nl < 0) break
          const line = answered.toString('latin1', 0, nl)
          let end = nl + 2
          if (line.startsWith('VA ')) end += Number(line.split(' ')[1]) + 2
          if (answered.length < end) break
          out.push(line === 'MN' ? Buffer.from(replacements.shift() ?? 'MN\r\n') : answered.subarray(0, end))
          answered = answered.subarray(end)
        }
        if (out.length > 0) client.write(Buffer.concat(out))
      })
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
