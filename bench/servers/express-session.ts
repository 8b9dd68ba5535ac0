/**
 * Baseline (g): the usual Node stack with sessions in memcached, as the app itself (no proxy):
 * express 5 + express-session + connect-memcached on the same memcached nodes. Routes as in
 * upstream.ts: / reads the session, /login creates a 1 KB one, /merge changes one member.
 * argv: <node,node,...>. Prints {"port":N}.
 */
import express from 'express'
import session from 'express-session'
import connectMemcached from 'connect-memcached'
import { exitWithParent } from '../lib/children.js'
import { sessionData } from '../lib/session-data.js'

const nodes = (process.argv[2] ?? '').split(',').filter((n) => n !== '')
if (nodes.length === 0) throw new Error('usage: express-session <memcached node,...>')
const MemcachedStore = connectMemcached(session)
const BODY = Buffer.from('{"ok":true}')
let logins = 0
let merges = 0

const app = express()
app.set('etag', false)
app.set('x-powered-by', false)
// As close to the sidecar's defaults as this stack allows: 1800 s TTL, browser-session cookie,
// no write when unchanged (resave: false; connect-memcached still implements touch as a set).
app.use(session({
  name: 'sid',
  secret: 'bench-secret-0123456789abcdef',
  resave: false,
  saveUninitialized: false,
  cookie: { secure: false, httpOnly: true, sameSite: 'lax' },
  store: new MemcachedStore({ hosts: nodes, prefix: 'bench-express:', ttl: 1800 })
}))
const send = (res: express.Response): void => {
  res.setHeader('content-type', 'application/json')
  res.setHeader('content-length', BODY.length)
  res.end(BODY)
}
app.get('/login', (req, res) => {
  Object.assign(req.session, sessionData(++logins))
  send(res)
})
app.get('/merge', (req, res) => {
  (req.session as unknown as Record<string, unknown>).n = ++merges
  send(res)
})
app.get('/', (req, res) => {
  // Reading the session is what the app would do; it is loaded either way.
  if ((req.session as unknown as Record<string, unknown>).user === undefined) res.setHeader('x-anonymous', '1')
  send(res)
})
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`)
})
server.keepAliveTimeout = 60_000
exitWithParent()
