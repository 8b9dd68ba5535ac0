import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { closeServer, listenOnLoopback } from '../../harness/index.js'

/** What the test app saw of one request. */
export interface Seen {
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly sessionId: string | undefined
  readonly session: Record<string, unknown> | undefined
}

export const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/**
 * A tiny real app behind the sidecar. It answers with what it saw (JSON) and acts on query
 * parameters the way an app author would use the header protocol:
 *   set=<json>       X-Session-Set        merge=<json>   X-Session-Merge
 *   destroy=1        X-Session-Destroy    regenerate=1   X-Session-Regenerate
 *   rawSet=<text>    X-Session-Set verbatim (invalid input tests)
 *   incr=<name>      merge {name: previous + 1}, read from the X-Session it received
 *   header=<n>:<v>   any extra response header       cookie=<set-cookie> a Set-Cookie of its own
 *   delay=<ms>       answer late
 *   pad=<name>:<n>   a response header of n bytes ('a' repeated): oversized response headers
 *   bigSet=<n>       X-Session-Set of a valid object whose string member is n bytes long
 *   deepMerge=<n>    X-Session-Merge of an object nested n levels deep
 *   push=<name>:<v>  merge {name: [...previous, v]}: a list kept in the session
 */
export class TestApp {
  readonly seen: Seen[] = []
  #server: Server | undefined
  port = 0

  get url (): string { return `http://127.0.0.1:${this.port}` }
  get last (): Seen | undefined { return this.seen[this.seen.length - 1] }

  async start (port = 0): Promise<this> {
    this.#server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://app')
      const q = url.searchParams
      const raw = req.headers['x-session']
      const session = typeof raw === 'string' ? JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Record<string, unknown> : undefined
      const sessionId = typeof req.headers['x-session-id'] === 'string' ? req.headers['x-session-id'] : undefined
      const seen: Seen = { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, sessionId, session }
      this.seen.push(seen)
      const set = q.get('set')
      if (set !== null) res.setHeader('X-Session-Set', b64(JSON.parse(set)))
      const merge = q.get('merge')
      if (merge !== null) res.setHeader('X-Session-Merge', b64(JSON.parse(merge)))
      const rawSet = q.get('rawSet')
      if (rawSet !== null) res.setHeader('X-Session-Set', rawSet)
      if (q.get('destroy') !== null) res.setHeader('X-Session-Destroy', '1')
      if (q.get('regenerate') !== null) res.setHeader('X-Session-Regenerate', '1')
      const incr = q.get('incr')
      if (incr !== null) {
        const previous = typeof session?.[incr] === 'number' ? session[incr] : 0
        res.setHeader('X-Session-Merge', b64({ [incr]: previous + 1 }))
      }
      for (const h of q.getAll('header')) {
        const colon = h.indexOf(':')
        res.setHeader(h.slice(0, colon), h.slice(colon + 1))
      }
      for (const p of q.getAll('pad')) {
        const colon = p.indexOf(':')
        res.setHeader(p.slice(0, colon), 'a'.repeat(Number(p.slice(colon + 1))))
      }
      const push = q.get('push')
      if (push !== null) {
        const colon = push.indexOf(':')
        const name = push.slice(0, colon)
        const previous = Array.isArray(session?.[name]) ? session[name] as unknown[] : []
        res.setHeader('X-Session-Merge', b64({ [name]: [...previous, push.slice(colon + 1)] }))
      }
      const deepMerge = q.get('deepMerge')
      if (deepMerge !== null) {
        let deep = '1'
        for (let i = 0; i < Number(deepMerge); i++) deep = `{"x":${deep}}`
        res.setHeader('X-Session-Merge', Buffer.from(deep).toString('base64url'))
      }
      const bigSet = q.get('bigSet')
      if (bigSet !== null) res.setHeader('X-Session-Set', b64({ blob: 'x'.repeat(Number(bigSet)) }))
      const cookies = q.getAll('cookie')
      if (cookies.length > 0) res.setHeader('Set-Cookie', cookies)
      const delay = Number(q.get('delay') ?? 0)
      const body = JSON.stringify({ sessionId, session, headers: req.headers })
      const send = (): void => {
        res.setHeader('content-type', 'application/json')
        res.end(body)
      }
      if (delay > 0) setTimeout(send, delay)
      else send()
    })
    this.#server.keepAliveTimeout = 60_000
    if (port === 0) {
      this.port = await listenOnLoopback(this.#server)
    } else {
      await new Promise<void>((resolve) => this.#server?.listen(port, '127.0.0.1', resolve))
      this.port = port
    }
    return this
  }

  async close (): Promise<void> {
    const server = this.#server
    if (server === undefined) return
    this.#server = undefined
    await closeServer(server)
  }
}

/** The protocol headers (any spelling) the app received on its last request. */
export const prefixedAtApp = (app: TestApp): Record<string, unknown> =>
  Object.fromEntries(Object.entries(app.last?.headers ?? {}).filter(([name]) => /^x[-_]session/i.test(name)))
