/**
 * Peer (j): the floor of what a Node proxy costs. node:http and an undici Pool with the
 * sidecar's upstream settings, no framework: request and response bodies stream through
 * (pipeline), hop-by-hop headers are dropped, nothing else is done. argv: <upstream url>.
 * Prints {"port":N}.
 */
import { createServer, type IncomingMessage } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { Pool } from 'undici'
import { exitWithParent } from '../lib/children.js'

const upstream = process.argv[2]
if (upstream === undefined) throw new Error('usage: minimal-proxy <upstream url>')
const pool = new Pool(new URL(upstream).origin, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 })
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'expect', 'host'])

/** The client's headers as undici's flat [name, value, ...] list, less hop-by-hop ones (and Host: undici sets it). */
function forwarded (req: IncomingMessage): string[] {
  const raw = req.rawHeaders
  const out: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!HOP_BY_HOP.has((raw[i] as string).toLowerCase())) out.push(raw[i] as string, raw[i + 1] as string)
  }
  return out
}

const server = createServer((req, res) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  pool.request({ path: req.url ?? '/', method: req.method as 'GET', headers: forwarded(req), body: hasBody ? req : null }).then(async (answer) => {
    for (const name of ['connection', 'keep-alive', 'transfer-encoding']) delete answer.headers[name]
    res.writeHead(answer.statusCode, answer.headers as Record<string, string | string[]>)
    await pipeline(answer.body, res)
  }).catch(() => {
    if (!res.headersSent) res.writeHead(502).end()
    else res.destroy()
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`)
})
exitWithParent()
