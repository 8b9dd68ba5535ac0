import t, { type Test } from 'tap'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { WebSocket, WebSocketServer } from 'ws'
import { Browser } from '../helpers/client.js'
import { b64 } from '../helpers/upstream.js'
import { startStack } from '../helpers/sidecar.js'
import { until } from '../../harness/index.js'

/** An app that answers HTTP with `http` and hands each WebSocket to `connected`; its URL. */
async function wsApp (t: Test, connected: (socket: WebSocket, headers: IncomingHttpHeaders) => void, http: Parameters<typeof createServer>[1] = (_req, res) => res.end('ok')): Promise<string> {
  const server = createServer(http)
  const wss = new WebSocketServer({ server })
  wss.on('connection', (socket, req) => connected(socket, req.headers))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { wss.close(); server.closeAllConnections(); server.close() })
  const address = server.address()
  return `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
}

t.test('a WebSocket upgrade reaches the app with the session headers, and frames flow both ways', async (t) => {
  const stack = await startStack(t)
  // An app that serves HTTP (to create the session) and WebSocket (echo) on one port.
  const upgrades: IncomingHttpHeaders[] = []
  const appUrl = await wsApp(t, (socket, headers) => {
    upgrades.push(headers)
    socket.on('message', (data) => socket.send(`echo:${String(data)}`))
  }, (_req, res) => {
    res.setHeader('X-Session-Set', b64({ user: 'ada' }))
    res.end('ok')
  })
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
  const sidecar = await stack.sidecar(t, {}, { upstreamUrl: await wsApp(t, (socket, headers) => { upgrades.push(headers); socket.send('hi') }) })
  const ws = new WebSocket(`${sidecar.url.replace('http', 'ws')}/live`, { headers: { 'x-session': b64({ admin: true }) } })
  t.teardown(() => ws.close())
  await new Promise((resolve, reject) => { ws.once('message', resolve); ws.once('error', reject) })
  t.equal(upgrades[0]?.['x-session'], undefined)
  t.equal(upgrades[0]?.['x-session-id'], undefined)
})

t.test('closes that no close frame can carry cross as 4005 and 4006; a drain cuts open WebSockets', async (t) => {
  const stack = await startStack(t)
  const appCloses: number[] = []
  const upstreamUrl = await wsApp(t, (socket) => {
    socket.on('close', (code) => appCloses.push(code))
    socket.send('hi')
  })
  const sidecar = await stack.sidecar(t, { shutdown: { delayMs: 200, timeoutMs: 1000 } }, { upstreamUrl })
  const open = async (): Promise<WebSocket> => {
    const ws = new WebSocket(`${sidecar.url.replace('http', 'ws')}/live`)
    await new Promise((resolve, reject) => { ws.once('message', resolve); ws.once('error', reject) })
    return ws
  }
  ;(await open()).close()
  await until(() => appCloses.length === 1, 3000, 'the app to see the close')
  t.equal(appCloses[0], 4005, 'a close with no code (1005) reaches the app as 4005')
  ;(await open()).terminate()
  await until(() => appCloses.length === 2, 3000, 'the app to see the dropped connection')
  t.equal(appCloses[1], 4006, 'a dropped connection (1006) reaches the app as 4006')

  const held = await open()
  const clientClose = new Promise<number>((resolve) => held.once('close', resolve))
  void sidecar.close()
  const code = await clientClose
  t.ok(code === 1005 || code === 1006, `the drain cut the client's WebSocket (${code}), with no 1001`)
})
