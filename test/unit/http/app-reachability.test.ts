import t from 'tap'
import { createServer } from 'node:net'
import { pino } from 'pino'
import { AppReachability } from '../../../src/http/app-reachability.js'
import { freePort, until } from '../../../harness/index.js'
import { LogCapture } from '../../helpers/sidecar.js'

// src/http/app-reachability.ts: what /readyz says of the app. Up until a request is refused at
// its address; then a TCP connect every probeMs until one succeeds.

t.test('up until a request is refused at the app\'s address; then probed until it accepts a connection', async (t) => {
  const port = await freePort()
  const logs = new LogCapture()
  const app = new AppReachability(`http://127.0.0.1:${port}`, pino({ level: 'info' }, logs), 50)
  t.teardown(() => app.close())
  t.ok(app.up, 'up at start')
  app.failed('ECONNRESET')
  app.failed(undefined)
  t.ok(app.up, 'a reset (one connection) or an unknown error says nothing of the app')
  app.failed('ECONNREFUSED')
  t.notOk(app.up, 'refused: down')
  app.failed('ECONNREFUSED')
  t.equal(logs.entries.filter((e) => e.level === 40).length, 1, 'one warn line per outage')
  const server = createServer((socket) => socket.destroy())
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  await until(() => app.up, 5000, 'a probe connects')
  t.match(logs.entries.at(-1), { level: 30, msg: /accepts connections again/ }, 'and says so')
})

t.test('an answer from the app ends the outage at once; a closed one stops probing', async (t) => {
  const app = new AppReachability(`http://127.0.0.1:${await freePort()}`, pino({ level: 'silent' }), 20)
  app.failed('UND_ERR_CONNECT_TIMEOUT')
  t.notOk(app.up)
  app.answered()
  t.ok(app.up, 'answered: up')
  app.answered()
  t.ok(app.up, 'and stays up')
  app.failed('ECONNREFUSED')
  app.close()
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.notOk(app.up, 'closed: no probe ran to bring it up')
})

t.test('the address probed: the origin\'s host and port, 443 or 80 when it names none', async (t) => {
  for (const url of ['https://app.internal', 'http://app.internal', 'http://[::1]:3000']) t.equal(new AppReachability(url, pino({ level: 'silent' })).up, true, url)
})
