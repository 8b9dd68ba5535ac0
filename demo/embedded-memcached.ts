import { createServer, type Server, type Socket } from 'node:net'

/**
 * A memcached text-protocol server for the demo and the unit tests, used when no memcached
 * binary is installed. It implements the meta commands the sidecar sends (src/memcached/
 * meta-connection.ts), as memcached 1.6.18 answers them, byte for byte (test/
 * integration/embedded-memcached-conformance compares the two), and the classic commands
 * operators' tools send (get, gets, gat, gats, set, add, cas, touch, delete, version), one CAS
 * counter for both:
 *   ms <key> <datalen> <flags>*  set; M mode E add, S set, R replace, A append, P prepend;
 *                                C compare-and-swap; T TTL; F client flags; q; O opaque; k; c (new CAS)
 *   mg <key> <flags>*            v value, c CAS, t TTL left (-1: none), f flags, s size, k key,
 *                                O opaque, q (no reply on a miss), T touch (CAS kept), u
 *   md <key> <flags>*            C compare-and-swap, q, O, k
 *   mn                           MN
 * memcached's stale-while-revalidate and other meta flags (N, R, I, h, l, b) and the me and ma
 * commands are not implemented: such a flag is refused as memcached refuses an unknown one.
 * Lines end at LF (a CR before it dropped), as in memcached.
 * Not for production: no memory bound, no LRU eviction, no stats, one process.
 */

/** memcached's limits: keys up to 250 bytes, a command line up to 2048. */
const MAX_KEY_BYTES = 250
const MAX_LINE_BYTES = 2048
/**
 * An item (header, key, flags, value with its CR LF, CAS) fits in 1 MiB (memcached's -I 1m):
 * item_size_ok() on 64-bit, measured on memcached 1.6.18.
 */
const ITEM_SIZE_MAX = 1024 * 1024
const ITEM_HEADER_BYTES = 48
/** memcached's meta limits: at most 20 tokens in a command (with its terminal token), opaques up to 32 bytes. */
const META_MAX_TOKENS = 20
const META_MAX_OPAQUE = 32
const BAD_FORMAT = 'CLIENT_ERROR bad command line format'
const BAD_TOKEN = 'CLIENT_ERROR bad token in command line format'
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
  /** One counter for every store, classic or meta, as memcached's: a fresh server's first item gets 1. */
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
        // The data block of a refused item: swallowed, as memcached does.
        const skipped = Math.min(connection.skip, connection.buffer.length)
        connection.skip -= skipped
        connection.buffer = connection.buffer.subarray(skipped)
        continue
      }
      const buffer = connection.buffer
      // As memcached: a line ends at LF, a CR before it is dropped (unless it is the line's only byte).
      const lf = buffer.indexOf(0x0a)
      if (lf < 0) {
        if (buffer.length > MAX_LINE_BYTES) {
          socket.end('CLIENT_ERROR line too long\r\n')
          connection.buffer = Buffer.alloc(0)
        }
        return
      }
      const eol = lf > 1 && buffer[lf - 1] === 0x0d ? lf - 1 : lf
      const line = buffer.subarray(0, eol).toString('latin1')
      const next = lf + 1
      const tokens = line.split(' ').filter((t) => t !== '')
      const command = tokens[0] ?? ''
      if (command === 'set' || command === 'add' || command === 'cas' || command === 'ms') {
        const request = command === 'ms' ? parseMetaSet(tokens) : parseStorage(command, tokens)
        if ('error' in request) {
          socket.write(`${request.error}\r\n`, 'latin1')
          connection.buffer = buffer.subarray(next)
          connection.skip = request.skip
          continue
        }
        if (!fits(request.key, request.flags, request.bytes)) {
          socket.write('SERVER_ERROR object too large for cache\r\n')
          connection.buffer = buffer.subarray(next)
          connection.skip = request.bytes + 2
          // memcached drops the stale copy rather than keep it: on set, and on every ms.
          if (command === 'set' || command === 'ms') this.#items.delete(request.key)
          continue
        }
        const end = next + request.bytes + 2
        if (buffer.length < end) return // wait for the rest of the data block
        const data = Buffer.from(buffer.subarray(next, next + request.bytes))
        const terminated = buffer[end - 2] === 0x0d && buffer[end - 1] === 0x0a
        connection.buffer = buffer.subarray(end)
        if (!terminated) socket.write('CLIENT_ERROR bad data chunk\r\n')
        else {
          const { outcome, cas } = this.#store(request, data)
          const reply = request.answer(outcome, cas)
          if (reply !== undefined) socket.write(reply, 'latin1')
        }
        continue
      }
      connection.buffer = buffer.subarray(next)
      const { reply, noreply } = this.#command(command, tokens)
      if (!noreply) socket.write(reply, 'latin1')
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
      case 'mg':
        return this.#metaGet(tokens)
      case 'md':
        return this.#metaDelete(tokens)
      case 'mn':
        return { reply: 'MN\r\n', noreply: false }
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

  /**
   * `mg <key> <flags>*`: `VA <size> <flags>` and the value (with v), else `HD <flags>`; the
   * returned flags in the order asked. A miss: `EN`, with O and k only; nothing at all with q.
   */
  #metaGet (tokens: string[]): { reply: string | Buffer, noreply: boolean } {
    const checked = metaCommand(tokens, 'CLIENT_ERROR options flags are too long')
    if ('error' in checked) return { reply: `${checked.error}\r\n`, noreply: false }
    const { key } = checked
    const flags = parseMetaFlags(tokens, 2)
    if (typeof flags === 'string') return { reply: `${flags}\r\n`, noreply: false }
    const item = this.#live(key)
    if (item === undefined) {
      const echoed = echoAll(tokens.slice(2), key)
      return echoed === undefined ? { reply: `${OPAQUE_TOO_LONG}\r\n`, noreply: false } : { reply: `EN${echoed}\r\n`, noreply: flags.quiet }
    }
    let line = flags.value ? `VA ${item.value.length}` : 'HD'
    for (const token of tokens.slice(2)) {
      switch (token[0]) {
        case 'T':
          // Touch: the TTL changes, the CAS does not.
          item.expiresAt = this.#expiry(flags.exptime)
          break
        case 't':
          // Seconds left (as memcached's unsigned arithmetic has it), -1 for none.
          line += ` t${item.expiresAt === 0 ? -1 : Math.ceil((item.expiresAt - this.#now()) / 1000) >>> 0}`
          break
        case 'c':
          line += ` c${item.cas}`
          break
        case 'f':
          line += ` f${item.flags}`
          break
        case 's':
          line += ` s${item.value.length}`
          break
        default: {
          const echoed = echo(token, key)
          if (echoed === undefined) return { reply: `${OPAQUE_TOO_LONG}\r\n`, noreply: false }
          line += echoed
        }
      }
    }
    if (this.#expired(item)) this.#items.delete(key)
    const head = Buffer.from(`${line}\r\n`, 'latin1')
    // q hides misses only: a hit is answered.
    return { reply: flags.value ? Buffer.concat([head, item.value, Buffer.from('\r\n')]) : head, noreply: false }
  }

  /** `md <key> <flags>*`: HD (nothing with q), NF when there is no such item, EX when C names another CAS. */
  #metaDelete (tokens: string[]): { reply: string, noreply: boolean } {
    const checked = metaCommand(tokens, 'CLIENT_ERROR options flags too long')
    if ('error' in checked) return { reply: `${checked.error}\r\n`, noreply: false }
    const { key } = checked
    const flags = parseMetaFlags(tokens, 2)
    if (typeof flags === 'string') return { reply: 'CLIENT_ERROR invalid or duplicate flag\r\n', noreply: false }
    const echoed = echoAll(tokens.slice(2), key)
    if (echoed === undefined) return { reply: `${OPAQUE_TOO_LONG}\r\n`, noreply: false }
    const item = this.#live(key)
    if (item === undefined) return { reply: `NF${echoed}\r\n`, noreply: false }
    if (flags.cas !== undefined && flags.cas !== item.cas) return { reply: `EX${echoed}\r\n`, noreply: false }
    this.#items.delete(key)
    return { reply: `HD${echoed}\r\n`, noreply: flags.quiet }
  }

  /** memcached's do_store_item(): the outcome, and the item's new CAS when it was stored (else 0). */
  #store (request: StoreRequest, data: Buffer): { outcome: Outcome, cas: bigint } {
    const { mode, key, cas } = request
    const existing = this.#live(key)
    let value = data
    let flags = request.flags
    let expiresAt = this.#expiry(request.exptime)
    if (existing === undefined) {
      if (mode === 'cas') return { outcome: 'NOT_FOUND', cas: 0n }
      // replace, append and prepend need an item.
      if (mode !== 'set' && mode !== 'add') return { outcome: 'NOT_STORED', cas: 0n }
    } else if (mode === 'add') {
      return { outcome: 'NOT_STORED', cas: 0n }
    } else if (mode === 'cas') {
      // CAS uniques start at 1: a cas with 0 never matches.
      if (cas !== existing.cas) return { outcome: 'EXISTS', cas: 0n }
    } else if (mode === 'append' || mode === 'prepend') {
      // A CAS (other than 0) must match; the joined item keeps the old one's flags and TTL.
      if (cas !== undefined && cas !== 0n && cas !== existing.cas) return { outcome: 'EXISTS', cas: 0n }
      value = Buffer.concat(mode === 'append' ? [existing.value, data] : [data, existing.value])
      flags = existing.flags
      expiresAt = existing.expiresAt
      if (!fits(key, flags, value.length)) return { outcome: 'NOT_STORED', cas: 0n }
    }
    const item: Item = { flags, value, expiresAt, cas: this.#nextCas++ }
    // A negative or past exptime stores an item that is expired at once, as in memcached.
    if (this.#expired(item)) this.#items.delete(key)
    else this.#items.set(key, item)
    return { outcome: 'STORED', cas: item.cas }
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

type Outcome = 'STORED' | 'NOT_STORED' | 'EXISTS' | 'NOT_FOUND'

/** A storage command (set, add, cas, ms) whose data block is to be read. */
interface StoreRequest {
  readonly mode: 'set' | 'add' | 'cas' | 'replace' | 'append' | 'prepend'
  readonly key: string
  readonly flags: number
  readonly exptime: number
  readonly bytes: number
  /** The CAS unique to compare (cas; ms with C), else undefined. */
  readonly cas: bigint | undefined
  /** The reply to the outcome, undefined for none (noreply; q on success). */
  readonly answer: (outcome: Outcome, cas: bigint) => string | undefined
}

/** A refused storage command: its reply, and the bytes of data block to swallow (0: the next line is a command). */
interface Refusal {
  readonly error: string
  readonly skip: number
}

/** `<command> <key> <flags> <exptime> <bytes> [<cas unique>] [noreply]`, or the error reply. */
function parseStorage (command: 'set' | 'add' | 'cas', tokens: string[]): StoreRequest | Refusal {
  const fixed = command === 'cas' ? 6 : 5
  const noreply = tokens.length === fixed + 1 && tokens[fixed] === 'noreply'
  const [, key = '', flags = '', exptime = '', bytes = '', cas = ''] = tokens
  if ((tokens.length !== fixed && !noreply) || !validKey(key) || !DECIMAL.test(flags) || Number(flags) > UINT32_MAX ||
      !SIGNED.test(exptime) || !DECIMAL.test(bytes) || (command === 'cas' && !DECIMAL.test(cas))) {
    return { error: BAD_FORMAT, skip: 0 }
  }
  return {
    mode: command,
    key,
    flags: Number(flags),
    exptime: Number(exptime),
    bytes: Number(bytes),
    cas: command === 'cas' ? BigInt(cas) : undefined,
    answer: (outcome) => noreply ? undefined : `${outcome}\r\n`
  }
}

const META_MODES: Partial<Record<string, StoreRequest['mode']>> = { E: 'add', S: 'set', R: 'replace', A: 'append', P: 'prepend' }
const META_CODES: Record<Outcome, string> = { STORED: 'HD', NOT_STORED: 'NS', EXISTS: 'EX', NOT_FOUND: 'NF' }

/**
 * `ms <key> <datalen> <flags>*` in memcached's order of checks: errors found before the flags
 * are read leave the data block to be read as a command; later ones swallow it.
 */
function parseMetaSet (tokens: string[]): StoreRequest | Refusal {
  const checked = metaCommand(tokens, 'CLIENT_ERROR options flags too long', 3)
  if ('error' in checked) return { error: checked.error, skip: 0 }
  const { key } = checked
  const datalen = cInteger(tokens[2] ?? '', 'int32')
  if (datalen === undefined || datalen < 0n || datalen > 0x7fffffffn - 2n) return { error: BAD_FORMAT, skip: 0 }
  const bytes = Number(datalen)
  const flags = parseMetaFlags(tokens, 3)
  if (typeof flags === 'string') return { error: flags, skip: bytes + 2 }
  const mode = flags.mode === undefined ? 'set' : META_MODES[flags.mode]
  if (mode === undefined) return { error: 'CLIENT_ERROR invalid mode for ms M token', skip: bytes + 2 }
  const returned = tokens.slice(3)
  if (echoAll(returned, key) === undefined) return { error: OPAQUE_TOO_LONG, skip: bytes + 2 }
  return {
    // A CAS turns set and replace into cas (append and prepend compare it too; add ignores it).
    mode: flags.cas !== undefined && (mode === 'set' || mode === 'replace') ? 'cas' : mode,
    key,
    flags: flags.clientFlags,
    exptime: flags.exptime,
    bytes,
    cas: flags.cas,
    answer: (outcome, cas) => {
      if (outcome === 'STORED' && flags.quiet) return undefined
      // The flags in the order asked: c is the new item's CAS (0 when nothing was stored).
      const returns = returned.map((token) => token[0] === 'c' ? ` c${cas}` : echo(token, key) ?? '')
      return `${META_CODES[outcome]}${returns.join('')}\r\n`
    }
  }
}

/**
 * The checks every meta command starts with, in memcached's order: its key, or the error.
 * `tooMany` is the command's wording for 20 tokens or more; ms needs `least` 3 tokens.
 */
function metaCommand (tokens: string[], tooMany: string, least = 2): { key: string } | { error: string } {
  const key = tokens[1]
  if (key === undefined) return { error: 'ERROR' }
  // memcached takes any byte but space in a key; this server keeps refusing control characters.
  if (!validKey(key) || tokens.length < least) return { error: BAD_FORMAT }
  if (tokens.length + 1 > META_MAX_TOKENS) return { error: tooMany }
  return { key }
}

interface MetaFlags {
  /** q: no reply to the nominal outcome (a miss for mg, HD for ms and md). */
  readonly quiet: boolean
  /** v: mg returns the value. */
  readonly value: boolean
  /** T: the TTL (exptime) to set; 0 when absent. */
  readonly exptime: number
  /** F: ms's client flags. */
  readonly clientFlags: number
  /** C: the CAS unique to compare. */
  readonly cas: bigint | undefined
  /** M: ms's mode letter. */
  readonly mode: string | undefined
}

/**
 * memcached's _meta_flag_preparse(): each flag once, numbers read as C reads them; the error
 * reply is the last one noted (a flag it does not know, or a repeated one, stops at once).
 */
function parseMetaFlags (tokens: string[], start: number): MetaFlags | string {
  const flags = { quiet: false, value: false, exptime: 0, clientFlags: 0, cas: undefined as bigint | undefined, mode: undefined as string | undefined }
  const seen = new Set<string>()
  let error: string | undefined
  // A refused number notes its message; null: none of its own (memcached's default stands).
  const number = (text: string, type: CInteger, message: string | null = BAD_TOKEN): bigint | undefined => {
    const n = cInteger(text, type)
    if (n === undefined) error = message ?? error ?? BAD_FORMAT
    return n
  }
  for (const token of tokens.slice(start)) {
    const flag = token.charAt(0)
    if (token.charCodeAt(0) >= 127 || seen.has(flag)) return 'CLIENT_ERROR duplicate flag'
    seen.add(flag)
    const rest = token.slice(1)
    switch (flag) {
      case 'T':
        flags.exptime = Number(number(rest, 'int32') ?? 0)
        break
      case 'F':
        flags.clientFlags = Number(number(rest, 'uint32', null) ?? 0)
        break
      case 'C':
        flags.cas = number(rest, 'uint64')
        break
      case 'M':
        if (token.length === 2) flags.mode = rest
        else error = 'CLIENT_ERROR incorrect length for M token'
        break
      case 'J':
        number(rest, 'uint64', 'CLIENT_ERROR invalid numeric initial value')
        break
      case 'D':
        number(rest, 'uint64', 'CLIENT_ERROR invalid numeric delta value')
        break
      case 'v':
        flags.value = true
        break
      case 'q':
        flags.quiet = true
        break
      case 'O': case 'P': case 'L': case 'k': case 's': case 't': case 'c': case 'f': case 'u':
        break
      default:
        return 'CLIENT_ERROR invalid flag'
    }
  }
  return error ?? flags
}

/** What a reply echoes for an O or k flag (` O<opaque>`, ` k<key>`), '' for other flags; undefined for an opaque over 32 bytes. */
function echo (token: string, key: string): string | undefined {
  if (token[0] === 'k') return ` k${key}`
  if (token[0] !== 'O') return ''
  return token.length > META_MAX_OPAQUE ? undefined : ` ${token}`
}

const OPAQUE_TOO_LONG = 'CLIENT_ERROR opaque token too long'

/** The echoes of all `tokens` in order, or undefined when an opaque is too long. */
function echoAll (tokens: string[], key: string): string | undefined {
  let out = ''
  for (const token of tokens) {
    const part = echo(token, key)
    if (part === undefined) return undefined
    out += part
  }
  return out
}

/** An item of this key, flags and value fits in memcached's 1 MiB (item_size_ok()). */
function fits (key: string, flags: number, bytes: number): boolean {
  return ITEM_HEADER_BYTES + key.length + 1 + (flags === 0 ? 0 : 4) + bytes + 2 + 8 <= ITEM_SIZE_MAX
}

type CInteger = 'int32' | 'uint32' | 'uint64'

/**
 * A number as memcached's safe_strtol/strtoul/strtoull (util.c) read it on 64-bit Linux:
 * leading white space and a sign allowed, nothing but white space after the digits, 64-bit
 * range, then stored in the type's width (so T4294967396 is T100), and a negative unsigned
 * refused only when it wraps past 2^63. undefined where memcached refuses it.
 */
function cInteger (text: string, type: CInteger): bigint | undefined {
  const m = /^[\t\n\v\f\r ]*([+-]?)(\d+)(?:[\t\n\v\f\r ][^]*)?$/.exec(text)
  if (m === null) return undefined
  const negative = m[1] === '-'
  const magnitude = BigInt(m[2] as string)
  if (type === 'int32') {
    const value = negative ? -magnitude : magnitude
    if (value < -(2n ** 63n) || value >= 2n ** 63n) return undefined
    return BigInt.asIntN(32, value)
  }
  if (magnitude >= 2n ** 64n) return undefined
  const value = BigInt.asUintN(64, negative ? -magnitude : magnitude)
  if (value >= 2n ** 63n && text.includes('-')) return undefined
  return type === 'uint32' ? BigInt.asUintN(32, value) : value
}
