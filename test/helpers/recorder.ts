import type { Test } from 'tap'
import { createServer, request, type IncomingHttpHeaders } from 'node:http'
import type { MemcachedProcess } from './memcached.js'
import { closeServer, listenOnLoopback } from '../../harness/index.js'

// What an app behind the sidecar sent: a proxy between the sidecar and the app keeps the
// session headers of each app response (the sidecar removes them before the client sees them);
// and what the sidecar stored of it in memcached.

/** The session headers of a response, names in lower case, Set and Merge as their JSON text. */
export function sessionHeaders (headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith('x-session') || typeof value !== 'string') continue
    out[name] = name.endsWith('-set') || name.endsWith('-merge') ? Buffer.from(value, 'base64url').toString('utf8') : value
  }
  return out
}

/** A proxy to `target` on a free loopback port; `sent` holds each app response's session headers, in order. */
export async function recorder (t: Test, target: string): Promise<{ url: string, sent: Array<Record<string, string>> }> {
  const sent: Array<Record<string, string>> = []
  const upstream = new URL(target)
  const server = createServer((req, res) => {
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      sent.push(sessionHeaders(answer.headers))
      res.writeHead(answer.statusCode ?? 502, answer.rawHeaders)
      answer.pipe(res)
    })
    forward.on('error', (err) => { res.statusCode = 502; res.end(err.message) })
    req.pipe(forward)
  })
  const port = await listenOnLoopback(server)
  t.teardown(() => closeServer(server))
  return { url: `http://127.0.0.1:${port}`, sent }
}

/** The data memcached holds for a session key (sealed as the tests' sidecars seal it): `ended` for a tombstone, undefined when none. */
export async function storedData (m: MemcachedProcess, key: string): Promise<unknown> {
  const copy = await m.copy(key)
  if (copy === undefined) return undefined
  const [, header = ''] = copy.split(' ')
  return header === 'ended' ? 'ended' : JSON.parse(Buffer.from(header, 'base64url').toString('utf8'))
}
