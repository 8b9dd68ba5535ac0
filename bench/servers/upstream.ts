/**
 * The app behind every proxy scenario: node:http, a small body, nothing heavy.
 *   GET /       200 {"ok":true}
 *   GET /login  the same, plus X-Session-Set with a fresh 1 KB session
 *   GET /login?bytes=N  the same with N bytes of session JSON (the session-size dimension)
 *   GET /merge  the same, plus X-Session-Merge {"n": <a counter>} (always a real change)
 * Prints {"port":N} once listening on 127.0.0.1 (port 0 = any).
 */
import { createServer } from 'node:http'
import { exitWithParent } from '../lib/children.js'
import { b64, sessionData } from '../lib/session-data.js'

const BODY = Buffer.from('{"ok":true}')
let logins = 0
let merges = 0
const SIZED_LOGIN = '/login?bytes='

// An 8 KB session arrives as an 11 KB X-Session header: room for it whatever Node's default.
const server = createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => {
  const url = req.url ?? '/'
  if (url === '/login') res.setHeader('X-Session-Set', b64(sessionData(++logins)))
  else if (url.startsWith(SIZED_LOGIN)) res.setHeader('X-Session-Set', b64(sessionData(++logins, Number(url.slice(SIZED_LOGIN.length)))))
  else if (url === '/merge') res.setHeader('X-Session-Merge', b64({ n: ++merges }))
  res.setHeader('content-type', 'application/json')
  res.setHeader('content-length', BODY.length)
  res.end(BODY)
})
server.keepAliveTimeout = 60_000
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`)
})
exitWithParent()
