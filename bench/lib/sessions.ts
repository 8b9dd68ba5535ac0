import type autocannon from 'autocannon'

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

/** Creates `n` sessions through `url` + /login (the app sets a 1 KB session); their cookies. */
export async function login (url: string, n: number): Promise<string[]> {
  const cookies: string[] = []
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${url}/login`)
    await res.arrayBuffer()
    const set = res.headers.getSetCookie()[0]
    if (res.status !== 200 || set === undefined) throw new Error(`login through ${url} gave ${res.status} and no cookie`)
    cookies.push(cookiePair(set))
  }
  return cookies
}
