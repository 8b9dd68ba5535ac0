import { spawn } from 'node:child_process'
import { statSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { SECRET } from '../helpers/sidecar.js'
import { freePort, until } from '../../harness/index.js'

// README, Quick start: `SESSION_SECRET=... COOKIE_SECURE=false npm start` runs the built sidecar
// on config/default.yaml. It starts without rebuilding (`npm ci` builds once), and a SIGTERM
// to npm, as a supervisor sends it, stops the sidecar too: no orphan keeps the ports.

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

const refused = async (port: number): Promise<boolean> => await new Promise((resolve) => {
  const socket = connect(port, '127.0.0.1')
  socket.once('connect', () => { socket.destroy(); resolve(false) })
  socket.once('error', () => { resolve(true) })
})

t.test('npm start serves on config/default.yaml without rebuilding, and stops with npm', async (t) => {
  const [port, adminPort] = [await freePort(), await freePort()]
  const built = statSync(join(ROOT, 'dist', 'cli.js')).mtimeMs
  const env = { ...process.env, SESSION_SECRET: SECRET, COOKIE_SECURE: 'false', LISTEN_HOST: '127.0.0.1', LISTEN_PORT: String(port), ADMIN_PORT: String(adminPort), LOG_LEVEL: 'warn' }
  const npm = spawn('npm', ['start', '--silent'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  npm.stdout.on('data', (c: Buffer) => { output += c.toString() })
  npm.stderr.on('data', (c: Buffer) => { output += c.toString() })
  t.teardown(() => { npm.kill('SIGKILL') })
  await until(async () => await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status === 200, () => false), 15_000, 'the sidecar to be ready')
  t.pass('ready on the ports the environment gave')
  t.equal(statSync(join(ROOT, 'dist', 'cli.js')).mtimeMs, built, 'dist was not rebuilt')
  const res = await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined)
  t.equal(res?.status, 502, 'it proxies (no app on 127.0.0.1:3000 here: 502)')

  npm.kill('SIGTERM')
  await until(async () => await refused(port) && await refused(adminPort), 15_000, 'both ports to be closed')
  t.pass('SIGTERM to npm stopped the sidecar: both ports closed')
  t.notMatch(output, /Error|at .*\.js:\d+/, 'no error output')
})
