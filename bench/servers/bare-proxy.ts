/**
 * Scenario (b): fastify 5 + @fastify/http-proxy and nothing else, with the sidecar's upstream
 * pool settings (so the difference to the sidecar is its session work and hooks).
 * argv: <upstream url>. Prints {"port":N}.
 */
import Fastify from 'fastify'
import proxy from '@fastify/http-proxy'
import { exitWithParent } from '../lib/children.js'

const upstream = process.argv[2]
if (upstream === undefined) throw new Error('usage: bare-proxy <upstream url>')
const app = Fastify({ logger: false })
await app.register(proxy, {
  upstream,
  undici: { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 }
})
await app.listen({ host: '127.0.0.1', port: 0 })
const address = app.server.address()
process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`)
exitWithParent()
