/**
 * Scenario (f) fallback when HAProxy is not installed: a tiny round-robin HTTP proxy
 * (node:http, keep-alive to each backend). argv: <backend url,...>. Prints {"port":N}.
 */
import { Agent, createServer, request } from 'node:http'
import { exitWithParent } from '../lib/children.js'

const backends = (process.argv[2] ?? '').split(',').filter((b) => b !== '').map((b) => new URL(b))
if (backends.length === 0) throw new Error('usage: balancer <backend url,...>')
const agent = new Agent({ keepAlive: true, maxSockets: 128 })
let next = 0

const server = createServer((req, res) => {
  const backend = backends[next++ % backends.length] as URL
  const upstream = request({ host: backend.hostname, port: backend.port, method: req.method, path: req.url, headers: req.headers, agent }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers)
    answer.pipe(res)
  })
  upstream.on('error', () => {
    if (!res.headersSent) res.writeHead(502)
    res.end()
  })
  req.pipe(upstream)
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`)
})
exitWithParent()
