import { spawn, type ChildProcess } from 'node:child_process'
import t from 'tap'
import { exitOf, listeningPorts, running, stopChild, waitReady } from '../../harness/index.js'

// The harness's child-process helpers, on plain `node -e` children: what the bench, chaos and
// the demo rely on to start the sidecar CLI and to leave nothing running.

const child = (script: string): ChildProcess => {
  const c = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => { if (running(c)) c.kill('SIGKILL') })
  return c
}
const FOREVER = 'setInterval(() => {}, 1000)'

t.test('waitReady kills a child that is not ready in time, and says so', async (t) => {
  const c = child(FOREVER)
  await t.rejects(waitReady(c, 'a child that never answers', async () => false, 200), /a child that never answers/)
  t.not(await exitOf(c, 5000), 0, 'killed, not left running')
  t.equal(c.signalCode, 'SIGKILL')
})

t.test('stopChild sends the signal, and SIGKILL when the child ignores it past the grace time', async (t) => {
  const polite = child(FOREVER)
  await stopChild(polite, 'SIGTERM', 5000)
  t.equal(polite.signalCode, 'SIGTERM', 'a child that exits on SIGTERM')
  const stubborn = child(`process.on('SIGTERM', () => {}); console.log('ready'); ${FOREVER}`)
  // Its handler is in place once it says so.
  await new Promise((resolve) => stubborn.stdout?.once('data', resolve))
  await stopChild(stubborn, 'SIGTERM', 200)
  t.equal(stubborn.signalCode, 'SIGKILL', 'a child that ignores SIGTERM is killed')
  t.equal(await stopChild(stubborn), null, 'stopping a stopped child answers at once')
})

t.test('listeningPorts reads the ports from the sidecar\'s listening line; a child that exits first is an error', async (t) => {
  const line = JSON.stringify({ level: 30, msg: 'session-sidecar listening', url: 'http://127.0.0.1:18080', adminUrl: 'http://127.0.0.1:19090' })
  const talker = child(`console.log('not json'); console.log(${JSON.stringify(JSON.stringify({ msg: 'other' }))}); console.log(${JSON.stringify(line)}); ${FOREVER}`)
  t.same(await listeningPorts(talker, 5000), { port: 18080, adminPort: 19090 })
  const quitter = child('process.exit(3)')
  await t.rejects(listeningPorts(quitter, 5000), /exited with 3 before listening/)
})
