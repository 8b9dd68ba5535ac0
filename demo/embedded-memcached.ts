import { createServer, type Server, type Socket } from 'node:net'

/**
 * A memcached text-protocol server for the demo only, used when no memcached binary is
 * installed. It implements exactly the commands the sidecar sends (through memcache-client)
 * and the demo's readiness probe: get, gets, gat, gats, set, add, cas, touch, delete, version.
 * Not for production: no memory bound, no LRU eviction, no stats, one process.
 */

/** memcached's limits: keys up to 250 bytes, a command line up to 2048, items up to 1 MiB. */
const MAX_KEY_BYTES = 250
const MAX_LINE_BYTES = 2048
const MAX_VALUE_BYTES = 1024 * 1024
/** An exptime above 30 days is an absolute Unix time, as in memcached. */
const RELATIVE_LIMIT_S = 30 * 24 * 3600
const UINT32_MAX = 0xffffffff
const DECIMAL = /^\d{1,20}$/
const SIGNED = /^-?\d{1,20}$/
const SWEEP_MS = 10_000

export const EMBEDDED_VERSION = '1.6.0-session-sidecar-demo'

interface Item {
  readonly flags: number
  readonly value: Buffer
  /** Milliseconds since the epoch; 0 = never expires. */
  expiresAt: number
  readonly cas: bigint
}

export interface EmbeddedMemcachedOptions {
  /** The clock, milliseconds since the epoch. Tests move it to check expiry without waiting. */
  readonly now?: () => number
}

/** A key is 1-250 bytes with no whitespace or control characters (read as latin1: one char per byte). */
export function validKey (key: string): boolean {
  // eslint-disable-next-line no-control-regex
  return key.length > 0 && key.length <= MAX_KEY_BYTES && !/[\x00-\x20\x7f]/.test(key)
}

export class EmbeddedMemcached {
  readonly #items = new Map<string, Item>()
  readonly #now: () => number
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined
  #sweeper: NodeJS.Timeout | undefined
  #nextCas = 1n
  port = 0

  constructor (options: EmbeddedMemcachedOptions = {}) {
    this.#now = options.now ?? Date.now
  }

  get address (): string { return `127.0.0.1:${this.port}` }

  /** Live items (expired ones are dropped lazily and by a periodic sweep). */
  get size (): number {
    this.#sweep()
    return this.#items.size
  }

  /** Listens on 127.0.0.1 (port 0: a free one) and resolves with the port. */
  async listen (port = 0, host = '127.0.0.1'): Promise<number> {
    const server = createServer((socket) => { this.#serve(socket) })
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    const address = server.address()
    this.port = typeof address === 'object' && address !== null ? address.port : 0
    this.#sweeper = setInterval(() => { this.#sweep() }, SWEEP_MS)
    this.#sweeper.unref()
    return this.port
  }

  /** Stops listening and drops every connection and item. */
  async close (): Promise<void> {
    clearInterval(this.#sweeper)
    const server = this.#server
    this.#server = undefined
    for (const socket of this.#sockets) socket.destroy()
    this.#items.clear()
    if (server !== undefined) await new Promise((resolve) => server.close(resolve))
  }

  #serve (socket: Socket): void {
    this.#sockets.add(socket)
    socket.setNoDelay(true)
    const connection: Connection = { buffer: Buffer.alloc(0), skip: 0 }
    socket.on('data', (chunk: Buffer) => {
      connection.buffer = connection.buffer.length === 0 ? chunk : Buffer.concat([connection.buffer, chunk])
      this.#consume(connection, socket)
    })
    socket.on('error', () => socket.destroy())
    socket.on('close', () => this.#sockets.delete(socket))
  }

  /** Handles every complete command in the connection's buffer and keeps the rest for the next chunk. */
  #consume (connection: Connection, socket: Socket): void {
    while (connection.buffer.length > 0 && !socket.destroyed) {
      if (connection.skip > 0) {
        // The data block of a refused (too large) item: swallowed, as memcached does.
        const skipped = Math.min(connection.skip, connection.buffer.length)
        connection.skip -= skipped
        connection.buffer = connection.buffer.subarray(skipped)
        continue
      }
      const buffer = connection.buffer
      const eol = buffer.indexOf('\r\n')
      if (eol < 0) {
        if (buffer.length > MAX_LINE_BYTES) {
          socket.end('CLIENT_ERROR line too long\r\n')
          connection.buffer = Buffer.alloc(0)
        }
        return
      }
      const line = buffer.subarray(0, eol).toString('latin1')
      const tokens = line.split(' ').filter((t) => t !== '')
      const command = tokens[0] ?? ''
      if (command === 'set' || command === 'add' || command === 'cas') {
        const header = parseStorage(command, tokens)
        if (typeof header === 'string') {
          socket.write(`${header}\r\n`)
          connection.buffer = buffer.subarray(eol + 2)
          continue
        }
        if (header.bytes > MAX_VALUE_BYTES) {
          socket.write('SERVER_ERROR object too large for cache\r\n')
          connection.buffer = buffer.subarray(eol + 2)
          connection.skip = header.bytes + 2
          continue
        }
        const end = eol + 2 + header.bytes + 2
        if (buffer.length < end) return // wait for the rest of the data block
        const data = Buffer.from(buffer.subarray(eol + 2, eol + 2 + header.bytes))
        const terminated = buffer[end - 2] === 0x0d && buffer[end - 1] === 0x0a
        connection.buffer = buffer.subarray(end)
        if (!terminated) socket.write('CLIENT_ERROR bad data chunk\r\n')
        else {
          const reply = this.#store(header, data)
          if (!header.noreply) socket.write(`${reply}\r\n`)
        }
        continue
      }
      connection.buffer = buffer.subarray(eol + 2)
      const { reply, noreply } = this.#command(command, tokens)
      if (!noreply) socket.write(reply)
    }
  }

  #command (command: string, tokens: string[]): { reply: string | Buffer, noreply: boolean } {
    switch (command) {
      case 'get':
      case 'gets':
        return { reply: this.#retrieve(tokens.slice(1), command === 'gets'), noreply: false }
      case 'gat':
      case 'gats': {
        // Get and touch: `gat <exptime> <key>*`, the TTL refreshed on every key found.
        const [, exptime = '', ...keys] = tokens
        if (!SIGNED.test(exptime) || keys.length === 0 || !keys.every(validKey)) return { reply: 'CLIENT_ERROR bad command line format\r\n', noreply: false }
        for (const key of keys) {
          const item = this.#live(key)
          if (item !== undefined) item.expiresAt = this.#expiry(Number(exptime))
        }
        return { reply: this.#retrieve(keys, command === 'gats'), noreply: false }
      }
      case 'touch': {
        const noreply = tokens.length === 4 && tokens[3] === 'noreply'
        const [, key = '', exptime = ''] = tokens
        if ((tokens.length !== 3 && !noreply) || !validKey(key) || !SIGNED.test(exptime)) return { reply: 'CLIENT_ERROR bad command line format\r\n', noreply: false }
        const item = this.#live(key)
        if (item === undefined) return { reply: 'NOT_FOUND\r\n', noreply }
        item.expiresAt = this.#expiry(Number(exptime))
        if (this.#expired(item)) this.#items.delete(key)
        return { reply: 'TOUCHED\r\n', noreply }
      }
      case 'delete': {
        const noreply = tokens.length === 3 && tokens[2] === 'noreply'
        const [, key = ''] = tokens
        if ((tokens.length !== 2 && !noreply) || !validKey(key)) return { reply: 'CLIENT_ERROR bad command line format\r\n', noreply: false }
        const found = this.#live(key) !== undefined
        this.#items.delete(key)
        return { reply: found ? 'DELETED\r\n' : 'NOT_FOUND\r\n', noreply }
      }
      case 'version':
        return { reply: `VERSION ${EMBEDDED_VERSION}\r\n`, noreply: false }
      default:
        return { reply: 'ERROR\r\n', noreply: false }
    }
  }

  #retrieve (keys: string[], withCas: boolean): string | Buffer {
    if (keys.length === 0 || !keys.every(validKey)) return 'CLIENT_ERROR bad command line format\r\n'
    const parts: Buffer[] = []
    for (const key of keys) {
      const item = this.#live(key)
      if (item === undefined) continue
      const cas = withCas ? ` ${item.cas}` : ''
      parts.push(Buffer.from(`VALUE ${key} ${item.flags} ${item.value.length}${cas}\r\n`, 'latin1'), item.value, Buffer.from('\r\n'))
    }
    parts.push(Buffer.from('END\r\n'))
    return Buffer.concat(parts)
  }

  #store (header: StorageHeader, value: Buffer): string {
    const existing = this.#live(header.key)
    if (header.command === 'add' && existing !== undefined) return 'NOT_STORED'
    if (header.command === 'cas') {
      if (existing === undefined) return 'NOT_FOUND'
      if (existing.cas !== header.cas) return 'EXISTS'
    }
    const item: Item = { flags: header.flags, value, expiresAt: this.#expiry(header.exptime), cas: this.#nextCas++ }
    // A negative or past exptime stores an item that is expired at once, as in memcached.
    if (this.#expired(item)) this.#items.delete(header.key)
    else this.#items.set(header.key, item)
    return 'STORED'
  }

  /** memcached's exptime: 0 never, up to 30 days relative seconds, above that a Unix time, negative already expired. */
  #expiry (exptime: number): number {
    if (exptime === 0) return 0
    if (exptime < 0) return -1
    if (exptime > RELATIVE_LIMIT_S) return exptime * 1000
    return this.#now() + exptime * 1000
  }

  #expired (item: Item): boolean {
    return item.expiresAt !== 0 && item.expiresAt <= this.#now()
  }

  #live (key: string): Item | undefined {
    const item = this.#items.get(key)
    if (item === undefined) return undefined
    if (this.#expired(item)) {
      this.#items.delete(key)
      return undefined
    }
    return item
  }

  #sweep (): void {
    for (const [key, item] of this.#items) if (this.#expired(item)) this.#items.delete(key)
  }
}

interface Connection {
  buffer: Buffer
  /** Bytes still to discard (the data block of a refused item). */
  skip: number
}

interface StorageHeader {
  readonly command: 'set' | 'add' | 'cas'
  readonly key: string
  readonly flags: number
  readonly exptime: number
  readonly bytes: number
  readonly cas: bigint | undefined
  readonly noreply: boolean
}

/** `<command> <key> <flags> <exptime> <bytes> [<cas unique>] [noreply]`, or the error reply. */
function parseStorage (command: 'set' | 'add' | 'cas', tokens: string[]): StorageHeader | string {
  const fixed = command === 'cas' ? 6 : 5
  const noreply = tokens.length === fixed + 1 && tokens[fixed] === 'noreply'
  const [, key = '', flags = '', exptime = '', bytes = '', cas = ''] = tokens
  if ((tokens.length !== fixed && !noreply) || !validKey(key) || !DECIMAL.test(flags) || Number(flags) > UINT32_MAX ||
      !SIGNED.test(exptime) || !DECIMAL.test(bytes) || (command === 'cas' && !DECIMAL.test(cas))) {
    return 'CLIENT_ERROR bad command line format'
  }
  return {
    command,
    key,
    flags: Number(flags),
    exptime: Number(exptime),
    bytes: Number(bytes),
    cas: command === 'cas' ? BigInt(cas) : undefined,
    noreply
  }
}
