import t from 'tap'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { WebSocket, WebSocketServer } from 'ws'
import { Browser } from '../helpers/client.js'
import { b64 } from '../helpers/upstream.js'
import { startStack } from '../helpers/sidecar.js'

t.test('a WebSocket upgrade reaches the app with the session headers, and frames flow both ways', async (t) => {
  const stack = await startStack(t)
  // An app that serves HTTP (to create the session) and WebSocket (echo) on one port.
  const upgrades: IncomingHttpHeaders[] = []
  const server = createServer((req, res) => {
    res.setHeader('X-Session-Set', b64({ user: 'ada' }))
    res.end('ok')
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', (socket, req) => {
    upgrades.push(req.headers)
    socket.on('message', (data) => socket.send(`echo:${String(data)}`))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { wss.close(); server.closeAllConnections(); server.close() })
  const address = server.address()
  const appUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  const sidecar = await stack.sidecar(t, {}, { upstreamUrl: appUrl })

  const browser = new Browser()
  await browser.get(sidecar.url, '/login')
  const sid = browser.sid as string
  t.ok(sid, 'a session exists')

  const ws = new WebSocket(`${sidecar.url.replace('http', 'ws')}/live?room=1`, {
    headers: { cookie: `sid=${sid}; theme=dark`, 'x-session': 'forged', 'X-Session-Id': 'forged', 'X.Session': 'forged', host: 'chat.example', 'user-agent': 'ws-client/1', 'x-custom': 'kept' },
    origin: 'https://chat.example'
  })
  t.teardown(() => ws.close())
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  const reply = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))))
  ws.send('hello')
  t.equal(await reply, 'echo:hello', 'frames flow through the sidecar')
  const seen = upgrades[0] ?? {}
  t.equal(seen['x-session-id'], sid.split('~')[1], 'the app\'s upgrade request carries X-Session-Id')
  t.equal(seen['x-session'], b64({ user: 'ada' }), 'and X-Session')
  t.equal(seen.cookie, 'theme=dark', 'the sidecar cookie is removed, other cookies pass')
  t.equal(seen.origin, 'https://chat.example', 'Origin reaches the app, so it can refuse cross-site WebSockets')
  t.equal(seen.host, 'chat.example', 'the app sees the client\'s Host')
  t.equal(seen['user-agent'], 'ws-client/1', 'and the client\'s other headers')
  t.equal(seen['x-custom'], 'kept')
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'forwarding headers are set as for HTTP')
  t.equal(seen['x-forwarded-host'], 'chat.example')
  t.equal(seen['x.session'], undefined, 'no X-Session look-alike from the client')
})

t.test('a WebSocket without a session: no session headers, forged ones dropped', async (t) => {
  const stack = await startStack(t)
  const upgrades: IncomingHttpHeaders[] = []
  const server = createServer((_req, res) => res.end('ok'))
  const wss = new WebSocketServer({ server })
  wss.on('connection', (socket, req) => { upgrades.push(req.headers); socket.send('hi') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { wss.close(); server.closeAllConnections(); server.close() })
  const address = server.address()
  const sidecar = await stack.sidecar(t, {}, { upstreamUrl: `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}` })
  const ws = new WebSocket(`${sidecar.url.replace('http', 'ws')}/live`, { headers: { 'x-session': b64({ admin: true }) } })
  t.teardown(() => ws.close())
  await new Promise((resolve, reject) => { ws.once('message', resolve); ws.once('error', reject) })
  t.equal(upgrades[0]?.['x-session'], undefined)
  t.equal(upgrades[0]?.['x-session-id'], undefined)
})
