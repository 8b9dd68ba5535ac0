import { createHash, type Hash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { Agent, createServer, request, type ClientRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB
export const CHUNK = 64 * KiB

/** 64 KiB of deterministic pseudo-random bytes (xorshift32): the body's repeating block. */
const BLOCK = ((): Buffer => {
  const block = Buffer.allocUnsafe(CHUNK)
  let x = 0x9e3779b9
  for (let i = 0; i < CHUNK; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    block.writeUInt32LE(x >>> 0, i)
  }
  return block
})()

/**
 * `bytes` generated on the fly in 64 KiB chunks, never held whole: each chunk is the fixed
 * block with its index in the first 8 bytes (a lost, repeated or reordered chunk changes the
 * digest). The sha256 of everything pushed so far is kept as it goes; `sha256` is set once the
 * last byte has been pushed.
 */
export class PatternStream extends Readable {
  readonly #hash: Hash = createHash('sha256')
  #sent = 0
  #index = 0n
  sha256: string | undefined = undefined

  constructor (readonly bytes: number) {
    super({ highWaterMark: CHUNK })
  }

  /** Bytes generated (pushed) so far. */
  get bytesSent (): number { return this.#sent }

  override _read (): void {
    const size = Math.min(CHUNK, this.bytes - this.#sent)
    if (size <= 0) {
      this.sha256 ??= this.#hash.digest('hex')
      this.push(null)
      return
    }
    const chunk = Buffer.allocUnsafe(size)
    BLOCK.copy(chunk, 0, 0, size)
    if (size >= 8) chunk.writeBigUInt64BE(this.#index++, 0)
    this.#hash.update(chunk)
    this.#sent += size
    this.push(chunk)
  }
}

/** What a body looked like to whoever read it. */
export interface BodyDigest {
  readonly bytes: number
  readonly sha256: string
}

/** Reads a stream to its end, counting and hashing, keeping nothing. */
export async function digest (stream: NodeJS.ReadableStream): Promise<BodyDigest> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    bytes += chunk.length
    hash.update(chunk)
  }
  return { bytes, sha256: hash.digest('hex') }
}

/**
 * The app behind the proxy for large bodies (node:http):
 *   POST/PUT any path     reads the body, answers {bytes, sha256} of what it received
 *   GET /download?bytes=N streams a PatternStream of N bytes (chunked); GET /sent then answers
 *                         {bytes, sha256} of the last one fully generated
 *   GET anything else     {"ok":true}
 */
export function sinkServer (): Server {
  let sent: BodyDigest | undefined
  const json = (res: ServerResponse, value: unknown): void => {
    const body = Buffer.from(JSON.stringify(value))
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
    res.end(body)
  }
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sink')
    if (req.method === 'POST' || req.method === 'PUT') {
      digest(req).then((seen) => json(res, seen), (err: unknown) => res.destroy(err as Error))
      return
    }
    req.resume()
    if (url.pathname === '/download') {
      const body = new PatternStream(Number(url.searchParams.get('bytes') ?? 0))
      body.once('end', () => { sent = { bytes: body.bytes, sha256: body.sha256 as string } })
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      body.pipe(res)
      return
    }
    json(res, url.pathname === '/sent' ? sent ?? null : { ok: true })
  })
  server.keepAliveTimeout = 60_000
  return server
}

/** Resident set size of a process in bytes, from /proc/<pid>/status (Linux); `field` VmRSS or VmHWM (its peak). */
export function rssOf (pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`no ${field} in /proc/${pid}/status`)
  return Number(m[1]) * 1024
}

/**
 * The RSS of a process once it has settled: sampled every 100 ms until two samples in a row
 * differ by less than 1 MB (a GC just after a transfer can still return memory), at most `ms`.
 */
export async function settledRss (pid: number, ms = 3000): Promise<number> {
  const deadline = Date.now() + ms
  let last = rssOf(pid)
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    const now = rssOf(pid)
    if (Math.abs(now - last) < 1e6 || Date.now() > deadline) return now
    last = now
  }
}

/**
 * Samples a process's RSS every `everyMs` (a plain setInterval: a measurement, not a timing
 * check) and, where the kernel allows (/proc/<pid>/clear_refs, Linux 4.0+), also resets its
 * peak RSS (VmHWM) at the start so `peak` includes spikes between two samples. `start` takes
 * the baseline once the RSS has settled.
 */
export class RssSampler {
  readonly baseline: number
  #peak: number
  #samples = 1
  readonly #timer: NodeJS.Timeout
  readonly #hwm: boolean

  static async start (pid: number, everyMs = 50): Promise<RssSampler> {
    await settledRss(pid)
    return new RssSampler(pid, everyMs)
  }

  private constructor (readonly pid: number, everyMs: number) {
    this.#hwm = resetPeak(pid)
    this.baseline = rssOf(pid)
    this.#peak = this.baseline
    this.#timer = setInterval(() => { this.sample() }, everyMs)
  }

  sample (): void {
    try {
      this.#peak = Math.max(this.#peak, rssOf(this.pid))
      this.#samples++
    } catch { /* the process is gone: stop() reports what was seen */ }
  }

  /** Stops sampling; the highest RSS seen (the kernel's peak since the start when it keeps one). */
  stop (): { baseline: number, peak: number, sampledPeak: number, samples: number, kernelPeak: boolean } {
    clearInterval(this.#timer)
    this.sample()
    const sampledPeak = this.#peak
    let peak = sampledPeak
    if (this.#hwm) {
      try { peak = Math.max(peak, rssOf(this.pid, 'VmHWM')) } catch { /* gone */ }
    }
    return { baseline: this.baseline, peak, sampledPeak, samples: this.#samples, kernelPeak: this.#hwm }
  }
}

/** Resets the kernel's peak RSS (VmHWM) of `pid` to its current RSS; false where not allowed. */
function resetPeak (pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

export interface TransferResult {
  readonly status: number
  /** What the far side reported: for an upload, the app's {bytes, sha256} of what it received. */
  readonly seen: BodyDigest
  /** What this side generated (upload) or received (download). */
  readonly local: BodyDigest
  readonly ms: number
}

/** A keep-alive-free agent per transfer, destroyed afterwards: no socket outlives a test. */
async function withAgent<T> (use: (agent: Agent) => Promise<T>): Promise<T> {
  const agent = new Agent({ keepAlive: false })
  try {
    return await use(agent)
  } finally {
    agent.destroy()
  }
}

async function responseOf (req: ClientRequest): Promise<IncomingMessage> {
  return await new Promise((resolve, reject) => {
    req.once('response', resolve)
    req.once('error', reject)
  })
}

/**
 * POSTs a PatternStream of `bytes` to `url`: chunked transfer encoding, or with a
 * Content-Length when `contentLength` is set. Resolves with the app's answer.
 */
export async function upload (url: string, bytes: number, options: { contentLength?: boolean } = {}): Promise<TransferResult> {
  return await withAgent(async (agent) => {
    const started = performance.now()
    const body = new PatternStream(bytes)
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream' }
    if (options.contentLength === true) headers['content-length'] = bytes
    const req = request(url, { method: 'POST', agent, headers })
    // Both settle before judging: a proxy that refuses the body answers early and then
    // breaks the send, and its status says more than the EPIPE.
    const [answered, sent] = await Promise.allSettled([responseOf(req), pipeline(body, req)])
    if (answered.status === 'rejected') throw new Error(`upload to ${url}: no answer after ${body.bytesSent} of ${bytes} bytes: ${String(answered.reason)}`)
    const res = answered.value
    const text = Buffer.concat(await res.toArray() as Buffer[]).toString('utf8')
    if (res.statusCode !== 200) throw new Error(`upload to ${url} answered ${String(res.statusCode)} after ${body.bytesSent} of ${bytes} bytes: ${text.slice(0, 200)}`)
    if (sent.status === 'rejected') throw new Error(`upload to ${url}: sending failed after ${body.bytesSent} of ${bytes} bytes: ${String(sent.reason)}`)
    return { status: res.statusCode, seen: JSON.parse(text) as BodyDigest, local: { bytes, sha256: body.sha256 as string }, ms: performance.now() - started }
  })
}

/** GETs `base`/download?bytes=N and hashes the response as it arrives; `seen` is the app's /sent. */
export async function download (base: string, bytes: number): Promise<TransferResult> {
  return await withAgent(async (agent) => {
    const started = performance.now()
    const req = request(`${base}/download?bytes=${bytes}`, { agent })
    req.end()
    const res = await responseOf(req)
    const local = await digest(res)
    const ms = performance.now() - started
    if (res.statusCode !== 200) throw new Error(`download from ${base} answered ${String(res.statusCode)}`)
    const sentReq = request(`${base}/sent`, { agent })
    sentReq.end()
    const sent = await responseOf(sentReq)
    const seen = JSON.parse(Buffer.concat(await sent.toArray() as Buffer[]).toString('utf8')) as BodyDigest
    return { status: res.statusCode, seen, local, ms }
  })
}
