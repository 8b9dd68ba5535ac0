import type autocannon from 'autocannon'
import { Pool } from 'undici'

/**
 * Sessions the load generator plays, one per connection (50 connections = 50 users). A
 * response's Set-Cookie replaces that user's cookie, as a browser would, so a changing
 * session always sends its latest cookie.
 */
export class CookiePool {
  readonly #cookies: string[]
  #next = 0

  constructor (cookies: readonly string[]) {
    if (cookies.length === 0) throw new Error('CookiePool needs at least one cookie')
    this.#cookies = [...cookies]
  }

  get size (): number { return this.#cookies.length }

  /** Starts a new load run: connections take slots from the first again. */
  rewind (): void { this.#next = 0 }

  /** autocannon `setupClient`: gives this connection its user and keeps its cookie current. */
  readonly setupClient = (client: autocannon.Client): void => {
    const slot = this.#next++ % this.#cookies.length
    client.setHeaders({ cookie: this.#cookies[slot] })
    // autocannon emits the HTTP parser's info: raw headers as [name, value, ...].
    const onHeaders = (info: { headers?: string[] }): void => {
      const raw = info.headers ?? []
      for (let i = 0; i + 1 < raw.length; i += 2) {
        if ((raw[i] as string).toLowerCase() !== 'set-cookie') continue
        const cookie = cookiePair(raw[i + 1] as string)
        if (cookie !== this.#cookies[slot]) {
          this.#cookies[slot] = cookie
          client.setHeaders({ cookie })
        }
      }
    }
    client.on('headers', onHeaders as unknown as (headers: unknown) => void)
  }
}

/** `name=value` of a Set-Cookie header. */
export function cookiePair (setCookie: string): string {
  const semi = setCookie.indexOf(';')
  return semi < 0 ? setCookie : setCookie.slice(0, semi)
}

/**
 * Creates `n` sessions through `url` + `path` (the app answers it with an X-Session-Set),
 * `concurrency` requests in flight on an undici Pool; resolves with their cookies, in order.
 */
export async function login (url: string, n: number, path = '/login', concurrency = 16): Promise<string[]> {
  return (await createSessions(url, n, { path, concurrency })).cookies
}

/** As `login`, timed: the cached-sessions dimension creates up to a million this way. */
export async function createSessions (url: string, n: number, { path = '/login', concurrency = 64 } = {}): Promise<{ cookies: string[], seconds: number }> {
  const pool = new Pool(url, { connections: concurrency, pipelining: 1 })
  const cookies = new Array<string>(n)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      const { statusCode, headers, body } = await pool.request({ path, method: 'GET' })
      await body.dump()
      const set = headers['set-cookie']
      const first = Array.isArray(set) ? set[0] : set
      if (statusCode !== 200 || first === undefined) throw new Error(`login through ${url}${path} gave ${statusCode} and no cookie`)
      cookies[i] = cookiePair(first)
    }
  }
  const started = performance.now()
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
  } finally {
    await pool.destroy()
  }
  return { cookies, seconds: (performance.now() - started) / 1000 }
}

/** A cookie for every request: each of `cookies` in turn (a pass over `cookies.length` requests uses each once). */
export function inTurn (cookies: readonly string[]): () => string {
  let next = 0
  return () => cookies[next++ % cookies.length] as string
}

/** A cookie for every request: any of `cookies`, uniformly at random. */
export function atRandom (cookies: readonly string[]): () => string {
  return () => cookies[Math.floor(Math.random() * cookies.length)] as string
}
