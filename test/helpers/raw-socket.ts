import { createServer, type RequestListener, type Server } from 'node:http'
import { connect, type Socket } from 'node:net'
import { closeServer, listenOnLoopback } from '../../harness/index.js'

// The wire under the HTTP clients: raw connections for requests no client sends, small apps of
// a test's own, and bounded waits.

/**
 * One TCP connection to an HTTP listener, for what no HTTP client sends: a head that stops
 * half-way, two Host lines, a body that pauses. Everything received is kept as latin-1 text;
 * waits are event-driven and bounded.
 */
export class RawConnection {
  received = ''
  /** performance.now() when the connection was opened, and when the peer closed it. */
  readonly openedAt = performance.now()
  closedAt: number | undefined = undefined
  readonly #changed = new Set<() => void>()

  private constructor (readonly socket: Socket) {
    socket.setEncoding('latin1')
    socket.on('data', (text: string) => {
      this.received += text
      this.#notify()
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      this.closedAt = performance.now()
      this.#notify()
    })
  }

  static async open (url: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url)
    const socket = connect(Number(port), hostname)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return new RawConnection(socket)
  }

  get closed (): boolean { return this.closedAt !== undefined }

  /** Writes and resolves once the bytes are handed to the kernel. */
  async write (data: string | Buffer): Promise<void> {
    await new Promise<void>((resolve, reject) => this.socket.write(data, (err) => err == null ? resolve() : reject(err)))
  }

  /** Resolves once `check(received)` holds; rejects after `ms`, or when the peer closed first. */
  async until (check: (received: string) => boolean, ms: number, what: string): Promise<void> {
    await this.#wait(() => {
      if (check(this.received)) return true
      if (this.closed) throw new Error(`connection closed before ${what}; received ${JSON.stringify(this.received.slice(0, 300))}`)
      return false
    }, ms, what)
  }

  /** Resolves once the peer has closed the connection; rejects after `ms`. */
  async untilClosed (ms: number): Promise<void> {
    await this.#wait(() => this.closed, ms, 'the peer to close the connection')
  }

  destroy (): void {
    this.socket.destroy()
  }

  async #wait (done: () => boolean, ms: number, what: string): Promise<void> {
    if (done()) return
    await new Promise<void>((resolve, reject) => {
      const settle = (err?: Error): void => {
        clearTimeout(timer)
        this.#changed.delete(check)
        if (err === undefined) resolve()
        else reject(err)
      }
      const check = (): void => {
        try {
          if (done()) settle()
        } catch (err) {
          settle(err as Error)
        }
      }
      const timer = setTimeout(() => settle(new Error(`timed out after ${ms} ms waiting for ${what}; received ${JSON.stringify(this.received.slice(0, 300))}`)), ms)
      this.#changed.add(check)
    })
  }

  #notify (): void {
    for (const check of [...this.#changed]) check()
  }
}

/** The status code of the first response in `text` (NaN before a status line arrived). */
export const statusOf = (text: string): number => Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1])

/** A header of the first response's head in `text` (name case-insensitive), or undefined. */
export function headerOf (text: string, name: string): string | undefined {
  const head = text.slice(0, text.indexOf('\r\n\r\n'))
  const lower = name.toLowerCase()
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':')
    if (line.slice(0, colon).trim().toLowerCase() === lower) return line.slice(colon + 1).trim()
  }
  return undefined
}

/** The body of the first response in `text`, when it was sent with a Content-Length. */
export function bodyOf (text: string): string {
  const start = text.indexOf('\r\n\r\n') + 4
  const length = Number(headerOf(text, 'content-length') ?? 0)
  return text.slice(start, start + length)
}

/** True once `text` holds a complete response head and its Content-Length body. */
export const complete = (text: string): boolean => text.includes('\r\n\r\n') && bodyOf(text).length >= Number(headerOf(text, 'content-length') ?? 0)

/** Resolves or rejects with `work`, or rejects after `ms`. */
export async function within<T> (work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms) })
  try {
    return await Promise.race([work, late])
  } finally {
    clearTimeout(timer)
  }
}

/** A node:http app of a test's own on 127.0.0.1, closed (connections and all) with `t`. */
export async function serveApp (t: { teardown: (fn: () => unknown) => void }, handler: RequestListener): Promise<{ server: Server, port: number, url: string }> {
  const server = createServer(handler)
  const port = await listenOnLoopback(server)
  t.teardown(async () => await closeServer(server))
  return { server, port, url: `http://127.0.0.1:${port}` }
}
