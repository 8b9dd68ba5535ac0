import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { pathToFileURL } from 'node:url'

/**
 * The demo's app: plain node:http, unaware of cookies and memcached. It reads the session from
 * the X-Session request header and changes it with X-Session-* response headers:
 *   GET /                 counts visits in the session (X-Session-Merge)
 *   GET /login?user=NAME  X-Session-Set {user, visits: 0} + X-Session-Regenerate
 *   GET /logout           X-Session-Destroy
 *   GET /whoami           shows the session, changes nothing
 * Each answer says which instance answered and what session it saw: JSON, or a small HTML
 * page when the client asks for text/html (a browser).
 */

export type SessionData = Record<string, unknown>

/** What the app answers (the JSON body). */
export interface AppAnswer {
  readonly instance: string
  readonly action: 'visit' | 'login' | 'logout' | 'whoami'
  /** The first characters of the X-Session-Id it received (null: no session). */
  readonly sessionId: string | null
  /** The session as the app received it. */
  readonly saw: SessionData | null
  /** The session after this response's change (null: none or destroyed). */
  readonly session: SessionData | null
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
const USER = /^[A-Za-z0-9_.@-]{1,64}$/

function readSession (req: IncomingMessage): SessionData | null {
  const raw = req.headers['x-session']
  if (typeof raw !== 'string') return null
  try {
    const value: unknown = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'))
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as SessionData : null
  } catch {
    return null
  }
}

function handle (instance: string, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://demo.invalid')
  const saw = readSession(req)
  const id = req.headers['x-session-id']
  const sessionId = typeof id === 'string' ? `${id.slice(0, 6)}…` : null
  let answer: AppAnswer
  switch (url.pathname) {
    case '/':
    case '/visit': {
      const visits = (typeof saw?.visits === 'number' ? saw.visits : 0) + 1
      res.setHeader('X-Session-Merge', b64({ visits }))
      answer = { instance, action: 'visit', sessionId, saw, session: { ...saw, visits } }
      break
    }
    case '/login': {
      const user = url.searchParams.get('user') ?? 'guest'
      if (!USER.test(user)) {
        send(res, 400, 'text/plain; charset=utf-8', 'user: 1-64 characters of A-Z a-z 0-9 _ . @ -\n')
        return
      }
      const session = { user, visits: 0 }
      res.setHeader('X-Session-Set', b64(session))
      // A new session key after login: a key planted before login (session fixation) is useless.
      res.setHeader('X-Session-Regenerate', '1')
      answer = { instance, action: 'login', sessionId, saw, session }
      break
    }
    case '/logout':
      res.setHeader('X-Session-Destroy', '1')
      answer = { instance, action: 'logout', sessionId, saw, session: null }
      break
    case '/whoami':
      answer = { instance, action: 'whoami', sessionId, saw, session: saw }
      break
    default:
      send(res, 404, 'text/plain; charset=utf-8', 'not found\n')
      return
  }
  if ((req.headers.accept ?? '').includes('text/html')) send(res, 200, 'text/html; charset=utf-8', page(answer))
  else send(res, 200, 'application/json', `${JSON.stringify(answer)}\n`)
}

function send (res: ServerResponse, status: number, type: string, body: string): void {
  res.statusCode = status
  res.setHeader('content-type', type)
  res.setHeader('cache-control', 'no-store')
  res.end(body)
}

const escape = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

function page (a: AppAnswer): string {
  const show = (v: SessionData | null): string => escape(v === null ? 'no session' : JSON.stringify(v, null, 2))
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>session-sidecar demo</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:40em}pre{background:#f4f4f4;padding:.6em}</style></head>
<body>
<h1>Answered by ${escape(a.instance)}</h1>
<p>Action: <b>${a.action}</b>. Session id: <code>${escape(a.sessionId ?? 'none')}</code></p>
<p>Session this instance received:</p><pre>${show(a.saw)}</pre>
<p>Session after this response:</p><pre>${show(a.session)}</pre>
<p><a href="/">visit again</a> · <a href="/login?user=alice">log in as alice</a> · <a href="/logout">log out</a> · <a href="/whoami">who am I</a></p>
<p>Reload a few times: the load balancer alternates between the instances and the count goes on.</p>
</body></html>
`
}

/** Starts one app instance on 127.0.0.1 (port 0: a free one). */
export async function startDemoApp (instance: string, port = 0): Promise<{ server: Server, port: number, url: string }> {
  const server = createServer((req, res) => { handle(instance, req, res) })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  const bound = typeof address === 'object' && address !== null ? address.port : 0
  return { server, port: bound, url: `http://127.0.0.1:${bound}` }
}

// Run directly (the compose file does): one instance on 127.0.0.1:$PORT, named $DEMO_INSTANCE.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const instance = process.env.DEMO_INSTANCE ?? 'app'
  const port = Number(process.env.PORT ?? 3000)
  startDemoApp(instance, port).then(({ url }) => {
    process.stdout.write(`demo app ${instance} on ${url}\n`)
  }, (err: unknown) => {
    process.stderr.write(`demo app: ${(err as Error).message}\n`)
    process.exit(1)
  })
}
