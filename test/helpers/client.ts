import { request, type Agent } from 'node:http'

/**
 * A cookie-keeping HTTP client, like a browser talking to one site: remembers the session
 * cookie from Set-Cookie and sends it back.
 */
export class Browser {
  cookies = new Map<string, string>()
  lastSetCookie: string[] = []

  constructor (readonly cookieName = 'sid') {}

  get sid (): string | undefined { return this.cookies.get(this.cookieName) }

  async get (base: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: any, headers: Headers }> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    const res = await fetch(base + path, { headers: { ...(cookie === '' ? {} : { cookie }), ...headers } })
    this.lastSetCookie = res.headers.getSetCookie()
    for (const line of this.lastSetCookie) {
      const [pair = '', ...attrs] = line.split(';')
      const eq = pair.indexOf('=')
      const name = pair.slice(0, eq).trim()
      const value = pair.slice(eq + 1).trim()
      const expired = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a))
      if (expired || value === '') this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
    const text = await res.text()
    let body: any = text
    try { body = JSON.parse(text) } catch {}
    return { status: res.status, body, headers: res.headers }
  }
}

export interface RawResponse {
  status: number
  /** Header names exactly as the server sent them, in order. */
  rawHeaders: Array<[string, string]>
  body: string
}

/**
 * One request over node:http with headers exactly as given (names keep their case and `_`,
 * duplicates allowed), and the response headers as sent: for header-protocol assertions.
 * `agent`: a keep-alive Agent to hold the connection open afterwards, like a load balancer;
 * by default the connection closes with the response.
 */
export async function rawRequest (url: string, headers: Array<[string, string]> = [], method = 'GET', agent: Agent | false = false): Promise<RawResponse> {
  // Raw (array) headers get no automatic Host: add it, as every HTTP/1.1 client must.
  const all = headers.some(([n]) => n.toLowerCase() === 'host') ? headers : [['Host', new URL(url).host] as [string, string], ...headers]
  return await new Promise((resolve, reject) => {
    const req = request(url, { method, headers: all.flat(), agent, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const raw = res.rawHeaders
        const pairs: Array<[string, string]> = []
        for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i] as string, raw[i + 1] as string])
        resolve({ status: res.statusCode ?? 0, rawHeaders: pairs, body: Buffer.concat(chunks).toString('utf8') })
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url}`)))
    req.on('error', reject)
    req.end()
  })
}

/** Parses one Set-Cookie line into its name, value and attributes (attribute names lower-cased). */
export function parseSetCookieLine (line: string): { name: string, value: string, attributes: Record<string, string | true> } {
  const [pair = '', ...rest] = line.split(';')
  const eq = pair.indexOf('=')
  const attributes: Record<string, string | true> = {}
  for (const part of rest) {
    const a = part.trim()
    if (a === '') continue
    const e = a.indexOf('=')
    if (e < 0) attributes[a.toLowerCase()] = true
    else attributes[a.slice(0, e).trim().toLowerCase()] = a.slice(e + 1).trim()
  }
  return { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim(), attributes }
}

/** The session key inside a format-1 cookie value ('' when there is none). */
export const keyOf = (sid: string | undefined): string => (sid ?? '').split('~')[1] ?? ''

/** The version inside a format-1 cookie value (NaN when there is none). */
export const versionOf = (sid: string | undefined): number => Number((sid ?? '').split('~').at(-2))

/** A query-string value: strings as they are, anything else as JSON. */
export const q = (value: unknown): string => encodeURIComponent(typeof value === 'string' ? value : JSON.stringify(value))

/** Header names of the session protocol in any spelling the sidecar must strip. */
export const PREFIXED = /^x[^a-z0-9]session/i
