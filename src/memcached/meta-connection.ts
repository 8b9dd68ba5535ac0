import { connect, type Socket } from 'node:net'

// One connection to memcached speaking its meta commands (protocol.txt, "Meta Commands"): `ms`
// with `c` returns the new CAS on every store, so a session change needs no `gets` first.

export interface MetaConnectionOptions {
  readonly host: string
  readonly port: number
  /** A connect that has not completed after this fails every command waiting for it. */
  readonly connectTimeoutMs: number
  /** A command unanswered after this destroys the connection (the stream can no longer be trusted): every pending command fails. */
  readonly commandTimeoutMs: number
  /**
   * The connection ended without close() being called (server restart or crash, reset,
   * malformed reply, timeout). Called once per connection; not when a connect fails.
   */
  readonly onLost?: (reason: string) => void
}

export interface MetaHit { readonly value: string, readonly cas: string }

export type MetaStore =
  | { readonly stored: true, readonly cas: string }
  | { readonly stored: false, readonly reason: 'exists' | 'not-found' | 'not-stored' }

/** A failure of the connection or the server (not a protocol outcome like a miss or EX): the caller marks the node down. */
export class MetaConnectionError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'MetaConnectionError'
  }
}

type Kind = 'get' | 'store' | 'delete' | 'version'

interface Pending {
  readonly kind: Kind
  /** The `O<n>` token the reply must echo ('' for `version`, which carries none). */
  readonly opaque: string
  /** performance.now() after which the command has timed out. */
  readonly deadline: number
  readonly resolve: (value: unknown) => void
  readonly reject: (err: Error) => void
}

const UNPARSEABLE = 'unparseable reply'
// Our replies are status lines with a few flags; a longer line is a stream we do not understand.
const MAX_LINE = 8192
// memcached's item size limit can be raised to 1 GiB at the most.
const MAX_VALUE = 1024 * 1024 * 1024
const DIGITS = /^[0-9]+$/
// memcached splits commands on spaces and ends them at \r\n: a key holding either would inject a command.
// eslint-disable-next-line no-control-regex -- control characters are what this pattern exists to refuse
const INVALID_KEY_CHAR = /[\s\x00-\x1f\x7f]/
const NOT_STORED: MetaStore = Object.freeze({ stored: false, reason: 'not-stored' })
const EXISTS: MetaStore = Object.freeze({ stored: false, reason: 'exists' })
const NOT_FOUND: MetaStore = Object.freeze({ stored: false, reason: 'not-found' })

/** Thrown inside the reply parser; caught in the data handler, which ends the connection. */
class Desync extends Error {}

/**
 * A lazily opened, pipelined connection: commands are written as they are issued and replies
 * matched first in, first out, each checked against its command's opaque. Anything that leaves
 * the stream in doubt (a reply we cannot place, CLIENT_ERROR, a timeout) ends the connection
 * and fails every pending command; the next command opens a new one.
 */
export class MetaConnection {
  readonly #options: MetaConnectionOptions
  #link: Link | undefined

  constructor (options: MetaConnectionOptions) {
    this.#options = options
  }

  /** Opens the connection now (commands otherwise open it lazily). Resolves when connected, rejects with MetaConnectionError. */
  async connect (): Promise<void> {
    await this.#open().ready()
  }

  /** mg <key> v c [T<touchTtl>]: the value and its CAS, or undefined on a miss. touchTtl (seconds) refreshes the TTL in the same command. */
  async get (key: string, touchTtl?: number): Promise<MetaHit | undefined> {
    checkKey(key)
    if (touchTtl !== undefined) checkTtl(touchTtl, 'touchTtl')
    const link = this.#open()
    const opaque = link.nextOpaque()
    const touch = touchTtl === undefined ? '' : ` T${touchTtl}`
    return await link.send<MetaHit | undefined>('get', opaque, `mg ${key} v c${touch} ${opaque}\r\n`)
  }

  /** ms <key> <bytes> c T<ttl> [ME when mode 'add'] [C<cas> when cas given]. */
  async store (key: string, value: string, options: { readonly mode: 'add' | 'set', readonly ttl: number, readonly cas?: string }): Promise<MetaStore> {
    checkKey(key)
    checkTtl(options.ttl, 'ttl')
    const cas = options.cas
    if (cas !== undefined && !DIGITS.test(cas)) throw new TypeError(`invalid memcached CAS ${JSON.stringify(cas)}: must be digits`)
    const link = this.#open()
    const opaque = link.nextOpaque()
    const flags = (options.mode === 'add' ? ' ME' : '') + (cas === undefined ? '' : ` C${cas}`)
    const bytes = Buffer.byteLength(value)
    // An ASCII command (the sidecar's always are: base64url keys and sealed values) is the same
    // bytes in latin1, which is encoded faster than utf8.
    const encoding = bytes === value.length && Buffer.byteLength(key) === key.length ? 'latin1' : 'utf8'
    return await link.send<MetaStore>('store', opaque, `ms ${key} ${bytes} c T${options.ttl}${flags} ${opaque}\r\n${value}\r\n`, encoding)
  }

  /** md <key>: true when deleted, false when there was none. */
  async delete (key: string): Promise<boolean> {
    checkKey(key)
    const link = this.#open()
    const opaque = link.nextOpaque()
    return await link.send<boolean>('delete', opaque, `md ${key} ${opaque}\r\n`)
  }

  /** version: memcached's version string ('1.6.18'). */
  async version (): Promise<string> {
    return await this.#open().send<string>('version', '', 'version\r\n')
  }

  /** Closes the connection; pending commands fail with MetaConnectionError('connection closed'); onLost is NOT called. Later commands reconnect. */
  close (): void {
    this.#link?.end('connection closed', false)
  }

  #open (): Link {
    if (this.#link === undefined) {
      const link = new Link(this.#options, () => { if (this.#link === link) this.#link = undefined })
      this.#link = link
    }
    return this.#link
  }
}

/** Node reports a failed connect to every address of a name (autoSelectFamily) as an AggregateError without a message. */
function describe (err: Error): string {
  if (err.message !== '') return err.message
  return err instanceof AggregateError ? err.errors.map((e) => describe(e as Error)).join('; ') : String(err)
}

function checkKey (key: string): void {
  if (key.length === 0 || key.length > 250 || INVALID_KEY_CHAR.test(key) || Buffer.byteLength(key) > 250) {
    throw new TypeError(`invalid memcached key ${JSON.stringify(key.slice(0, 40))}: 1 to 250 bytes without whitespace or control characters`)
  }
}

function checkTtl (ttl: number, name: string): void {
  if (!Number.isSafeInteger(ttl) || ttl < 0) throw new TypeError(`invalid memcached ${name} ${ttl}: a whole number of seconds, 0 or more`)
}

/** One socket and what is pending on it; once ended it is never reused. */
class Link {
  readonly #options: MetaConnectionOptions
  readonly #socket: Socket
  readonly #ended: () => void
  #established = false
  #done = false
  #opaque = 0
  /** Pending commands, oldest at #head (no Array.shift on the hot path). */
  #queue: Array<Pending | undefined> = []
  #head = 0
  /** Commands issued before the connect completed, written at once when it does. */
  #unsent: Buffer[] = []
  #corked = false
  /** connect() callers waiting for the connect. */
  #waiters: Array<{ resolve: () => void, reject: (err: Error) => void }> = []
  /** Received bytes not parsed yet; joined only once `#need` bytes are there (a value arriving in many chunks is copied once). */
  #chunks: Buffer[] = []
  #buffered = 0
  #need = 0
  #connectTimer: NodeJS.Timeout | undefined
  /** One timer for the oldest pending command: deadlines are in issue order, so the head's comes first. */
  #timer: NodeJS.Timeout | undefined

  constructor (options: MetaConnectionOptions, ended: () => void) {
    this.#options = options
    this.#ended = ended
    const socket = connect({ host: options.host, port: options.port })
    this.#socket = socket
    socket.setNoDelay(true)
    socket.unref()
    this.#connectTimer = setTimeout(() => {
      this.end(`connect to ${options.host}:${options.port} timed out after ${options.connectTimeoutMs} ms`, false)
    }, options.connectTimeoutMs)
    this.#connectTimer.unref()
    socket.once('connect', () => { this.#connected() })
    socket.on('data', (chunk: Buffer) => { this.#data(chunk) })
    socket.on('error', (err) => { this.end(describe(err), this.#established) })
    socket.once('end', () => { this.end('connection closed by memcached', true) })
    socket.once('close', () => { this.end('connection closed', this.#established) })
  }

  nextOpaque (): string {
    return `O${++this.#opaque}`
  }

  async ready (): Promise<void> {
    if (this.#established) return
    return await new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject })
      this.#socket.ref()
    })
  }

  async send<T> (kind: Kind, opaque: string, command: string, encoding: 'utf8' | 'latin1' = 'utf8'): Promise<T> {
    return await new Promise<T>((resolve, reject) => {
      const pending: Pending = { kind, opaque, deadline: performance.now() + this.#options.commandTimeoutMs, resolve: resolve as (value: unknown) => void, reject }
      if (this.#head === this.#queue.length) this.#socket.ref()
      this.#queue.push(pending)
      this.#timer ??= this.#arm(this.#options.commandTimeoutMs)
      if (!this.#established) {
        this.#unsent.push(Buffer.from(command, encoding))
        return
      }
      // Commands issued in the same tick leave in one write (one syscall for a burst).
      if (!this.#corked) {
        this.#corked = true
        this.#socket.cork()
        process.nextTick(() => {
          this.#corked = false
          this.#socket.uncork()
        })
      }
      this.#socket.write(command, encoding)
    })
  }

  /** Ends the link once: fails what is pending, and tells onLost when an established connection was lost. */
  end (reason: string, lost: boolean): void {
    if (this.#done) return
    this.#done = true
    this.#ended()
    clearTimeout(this.#connectTimer)
    clearTimeout(this.#timer)
    this.#socket.destroy()
    for (let i = this.#head; i < this.#queue.length; i++) this.#queue[i]?.reject(new MetaConnectionError(reason))
    for (const waiter of this.#waiters) waiter.reject(new MetaConnectionError(reason))
    this.#queue = []
    this.#waiters = []
    this.#unsent = []
    this.#chunks = []
    if (lost && this.#established && this.#options.onLost !== undefined) {
      // Called from socket handlers: a throwing listener must not become an uncaught exception.
      try { this.#options.onLost(reason) } catch {}
    }
  }

  #connected (): void {
    if (this.#done) return
    this.#established = true
    clearTimeout(this.#connectTimer)
    if (this.#unsent.length > 0) this.#socket.write(Buffer.concat(this.#unsent))
    this.#unsent = []
    for (const waiter of this.#waiters) waiter.resolve()
    this.#waiters = []
    if (this.#head === this.#queue.length) this.#socket.unref()
  }

  #arm (ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => { this.#expired() }, Math.max(1, Math.ceil(ms)))
    timer.unref()
    return timer
  }

  #expired (): void {
    this.#timer = undefined
    const head = this.#queue[this.#head]
    if (head === undefined) return
    const left = head.deadline - performance.now()
    if (left > 0) this.#timer = this.#arm(left)
    else this.end(`timed out after ${this.#options.commandTimeoutMs} ms`, true)
  }

  #data (chunk: Buffer): void {
    this.#chunks.push(chunk)
    this.#buffered += chunk.length
    if (this.#buffered < this.#need || this.#done) return
    const buffer = this.#chunks.length === 1 ? chunk : Buffer.concat(this.#chunks, this.#buffered)
    let parsed: number
    try {
      parsed = this.#parse(buffer)
    } catch (err) {
      // Never out of a socket handler: that would crash the process.
      this.end(err instanceof Desync ? UNPARSEABLE : `${UNPARSEABLE}: ${String(err)}`, true)
      return
    }
    if (this.#done) return
    const rest = buffer.subarray(parsed)
    this.#chunks = rest.length > 0 ? [rest] : []
    this.#buffered = rest.length
  }

  /** Handles every complete reply in `buffer`; returns how many bytes it used. */
  #parse (buffer: Buffer): number {
    let at = 0
    this.#need = 0
    while (at < buffer.length && !this.#done) {
      const nl = buffer.indexOf(10, at)
      if (nl < 0) {
        if (buffer.length - at > MAX_LINE) throw new Desync()
        return at
      }
      if (nl === at || buffer[nl - 1] !== 13) throw new Desync()
      const line = buffer.toString('latin1', at, nl - 1)
      if (line.startsWith('VA ')) {
        const tokens = line.split(' ')
        const size = tokens[1] ?? ''
        if (!DIGITS.test(size) || Number(size) > MAX_VALUE) throw new Desync()
        const start = nl + 1
        const end = start + Number(size)
        if (end + 2 > buffer.length) {
          // The line is parsed again once the whole value is there: cheaper than keeping state.
          this.#need = end + 2 - at
          return at
        }
        if (buffer[end] !== 13 || buffer[end + 1] !== 10) throw new Desync()
        this.#reply(tokens, buffer.toString('utf8', start, end))
        at = end + 2
      } else {
        this.#reply(line.split(' '), undefined)
        at = nl + 1
      }
    }
    return at
  }

  /** Settles the oldest pending command with one reply (`value` for VA). */
  #reply (tokens: string[], value: string | undefined): void {
    const status = tokens[0]
    if (status === 'CLIENT_ERROR' || status === 'ERROR') {
      // memcached may now read our data as commands (a key it refused, a bad chunk): trust nothing after.
      this.end(tokens.join(' '), true)
      return
    }
    const head = this.#queue[this.#head]
    if (head === undefined) throw new Desync()
    // The server failed this command (out of memory, too large) and consumed its data: the stream goes on.
    const result = status === 'SERVER_ERROR' ? new MetaConnectionError(tokens.join(' ')) : outcome(head, tokens, value)
    this.#queue[this.#head] = undefined
    this.#head++
    if (this.#head === this.#queue.length) {
      this.#queue.length = 0
      this.#head = 0
      this.#socket.unref()
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head)
      this.#head = 0
    }
    if (result instanceof MetaConnectionError) head.reject(result)
    else head.resolve(result)
  }
}

/** What a reply means for the command it answers; a reply that does not fit it is a desync. */
function outcome (head: Pending, tokens: string[], value: string | undefined): unknown {
  const status = tokens[0]
  if (head.kind === 'version') {
    if (status === 'VERSION' && tokens.length === 2) return tokens[1]
    throw new Desync()
  }
  let opaque = ''
  let cas = ''
  for (let i = value === undefined ? 1 : 2; i < tokens.length; i++) {
    const flag = tokens[i] as string
    const first = flag.charCodeAt(0)
    if (first === 79 /* O */) opaque = flag
    else if (first === 99 /* c */) cas = flag.slice(1)
  }
  if (opaque !== head.opaque) throw new Desync()
  const hasCas = DIGITS.test(cas)
  switch (head.kind) {
    case 'get':
      if (status === 'VA' && value !== undefined && hasCas) return { value, cas }
      if (status === 'EN') return undefined
      break
    case 'store':
      if (status === 'HD' && hasCas) return { stored: true, cas }
      if (status === 'NS') return NOT_STORED
      if (status === 'EX') return EXISTS
      if (status === 'NF') return NOT_FOUND
      break
    case 'delete':
      if (status === 'HD') return true
      if (status === 'NF') return false
      break
  }
  throw new Desync()
}
