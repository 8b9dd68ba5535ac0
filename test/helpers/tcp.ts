import { connect, createServer, type Server, type Socket } from 'node:net'

/** A loopback listener on a free port that tracks its sockets, so `close` ends them all. */
abstract class LoopbackServer {
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined
  port = 0

  get address (): string { return `127.0.0.1:${this.port}` }

  /** Handles one accepted connection. */
  protected abstract accepted (socket: Socket): void

  /** Tracks a socket until it closes (its errors are the test's to see, not to throw). */
  protected track (socket: Socket): void {
    this.#sockets.add(socket)
    socket.on('close', () => this.#sockets.delete(socket))
    socket.on('error', () => {})
  }

  async start (): Promise<this> {
    this.#server = createServer((socket) => {
      this.track(socket)
      this.accepted(socket)
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
 * A loopback TCP listener that counts connections and never answers (or answers garbage):
 * stands in for a hung memcached, and proves that forged addresses are never contacted.
 */
export class SilentServer extends LoopbackServer {
  connections = 0
  /** Bytes received on every connection: what it was asked (and never answered, or answered with garbage). */
  received = 0

  constructor (readonly reply: string | undefined = undefined) {
    super()
  }

  protected accepted (socket: Socket): void {
    this.connections++
    socket.on('data', (chunk: Buffer) => { this.received += chunk.length })
    if (this.reply !== undefined) socket.on('data', () => socket.write(this.reply as string))
  }
}

/**
 * A TCP proxy in front of a real memcached that, once `refuse` is set, answers every meta
 * store (`ms`) itself with that reply (`EX`: the CAS changed; `NS`: not stored), well formed
 * and in order, while every other command (reads, deletes, version) reaches memcached: a node
 * that answers but will not store. Each refused `ms` goes on as a no-op (`mn`) so memcached's
 * replies keep their order, and its `MN` is replaced with the refusal.
 */
export class StoreRefusingProxy extends LoopbackServer {
  refuse: 'EX' | 'NS' | undefined = undefined
  /** Stores refused so far. */
  refused = 0

  constructor (readonly upstreamPort: number) {
    super()
  }

  protected accepted (client: Socket): void {
    const upstream = connect(this.upstreamPort, '127.0.0.1')
    this.track(upstream)
    for (const s of [client, upstream]) s.on('close', () => { client.destroy(); upstream.destroy() })
    const replacements: string[] = []
    const asked = new Frames((line) => line.startsWith('ms ') ? Number(line.split(' ')[2]) : undefined)
    client.on('data', (chunk: Buffer) => {
      const out = asked.push(chunk).map(({ line, frame }) => {
        if (!line.startsWith('ms ') || this.refuse === undefined) return frame
        const opaque = line.split(' ').find((w) => w.startsWith('O'))
        replacements.push(`${this.refuse}${opaque === undefined ? '' : ` ${opaque}`}\r\n`)
        this.refused++
        return Buffer.from('mn\r\n')
      })
      if (out.length > 0) upstream.write(Buffer.concat(out))
    })
    const answered = new Frames((line) => line.startsWith('VA ') ? Number(line.split(' ')[1]) : undefined)
    upstream.on('data', (chunk: Buffer) => {
      const out = answered.push(chunk).map(({ line, frame }) => line === 'MN' ? Buffer.from(replacements.shift() ?? 'MN\r\n') : frame)
      if (out.length > 0) client.write(Buffer.concat(out))
    })
  }
}

/** Splits a meta protocol stream into whole messages: a line, and the data block its line announces. */
class Frames {
  #buffered = Buffer.alloc(0)

  constructor (readonly dataBytes: (line: string) => number | undefined) {}

  push (chunk: Buffer): Array<{ line: string, frame: Buffer }> {
    this.#buffered = Buffer.concat([this.#buffered, chunk])
    const frames: Array<{ line: string, frame: Buffer }> = []
    for (;;) {
      const nl = this.#buffered.indexOf('\r\n')
      if (nl < 0) break
      const line = this.#buffered.toString('latin1', 0, nl)
      const data = this.dataBytes(line)
      const end = nl + 2 + (data === undefined ? 0 : data + 2)
      if (this.#buffered.length < end) break
      frames.push({ line, frame: this.#buffered.subarray(0, end) })
      this.#buffered = this.#buffered.subarray(end)
    }
    return frames
  }
}
