import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Agent } from 'node:http'
import t, { type Test } from 'tap'
import { MemcachedProcess } from '../helpers/memcached.js'
import { TestApp, b64 } from '../helpers/upstream.js'
import { SECRET } from '../helpers/sidecar.js'
import { Browser, rawRequest } from '../helpers/client.js'
import { freePort, until } from '../../harness/index.js'

// The built CLI, as an operator runs it (SPEC "Operations"). `npm test` builds dist/ first.

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CLI = join(ROOT, 'dist', 'cli.js')
const dir = mkdtempSync(join(tmpdir(), 'sidecar-cli-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

/** The environment without anything a config could pick up by accident. */
const baseEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env }
  for (const name of ['SESSION_SECRET', 'LISTEN_PORT', 'ADMIN_PORT', 'UPSTREAM_URL', 'MEMCACHED_NODES', 'LOG_LEVEL']) delete env[name]
  return env
}

let files = 0
function configFile (text: string): string {
  const file = join(dir, `config-${++files}.yaml`)
  writeFileSync(file, text)
  return file
}

function spawnCli (args: string[], env: NodeJS.ProcessEnv = baseEnv()): { child: ChildProcess, output: { stdout: string, stderr: string } } {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const output = { stdout: '', stderr: '' }
  child.stdout?.on('data', (c: Buffer) => { output.stdout += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { output.stderr += c.toString() })
  return { child, output }
}

/** Resolves with the exit code once the child exits; kills it (and fails) after `ms`. */
async function exited (child: ChildProcess, ms: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`the CLI did not exit within ${ms} ms`))
    }, ms)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })
}

/** Runs the CLI to completion. */
async function run (args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const { child, output } = spawnCli(args, env)
  const code = await exited(child, 15_000)
  return { code, ...output }
}

const lines = (text: string): string[] => text.split('\n').map((l) => l.trim()).filter((l) => l !== '')

/** A config valid in every way but the ones a test changes. */
const validYaml = (extra = ''): string => `listen: { host: 127.0.0.1, port: 18080 }
upstream: { url: "http://127.0.0.1:13000" }
admin: { host: 127.0.0.1, port: 19090 }
session:
  secrets: ["${SECRET}"]
  cookie: { secure: false }
memcached:
  nodes: ["127.0.0.1:11211"]
log: { level: silent }
${extra}`

t.test('--help exits 0 and lists --config, --help and --version', async (t) => {
  for (const flag of ['--help', '-h']) {
    const res = await run([flag])
    t.equal(res.code, 0, `${flag} exits 0`)
    for (const option of ['--config', '--help', '--version']) t.match(res.stdout, option, `${flag} lists ${option}`)
    t.equal(res.stderr, '')
  }
})

t.test('--version prints the package version', async (t) => {
  const res = await run(['--version'])
  t.equal(res.code, 0)
  t.equal(res.stdout, '0.1.0\n')
})

t.test('without --config the CLI exits 2 and says --config is required', async (t) => {
  const res = await run([])
  t.equal(res.code, 2)
  t.ok(lines(res.stderr).some((l) => l.includes('--config')), 'stderr names --config')
})

t.test('an unknown option exits 2', async (t) => {
  const res = await run(['--confg', 'x.yaml'])
  t.equal(res.code, 2)
  t.match(res.stderr, '--confg')
})

t.test('a config without session.secrets refuses to start, naming session.secrets', async (t) => {
  const file = configFile(validYaml().replace(`  secrets: ["${SECRET}"]\n`, ''))
  const res = await run(['--config', file])
  t.not(res.code, 0, 'exits non-zero')
  t.equal(lines(res.stderr).filter((l) => l.startsWith('session.secrets:')).length, 1, 'one line naming session.secrets')
})

t.test('a ${VAR} that is not set is reported with its key path and the variable', async (t) => {
  const file = configFile(validYaml().replace(`["${SECRET}"]`, '["${SESSION_SECRET}"]'))
  const res = await run(['--config', file])
  t.not(res.code, 0)
  t.ok(lines(res.stderr).some((l) => l.startsWith('session.secrets[0]:') && l.includes('SESSION_SECRET')), res.stderr)
})

t.test('a config with several problems prints one line per problem, each with its key path', async (t) => {
  const file = configFile(`listen: { host: 127.0.0.1, port: eighty }
upstream: { url: "http://127.0.0.1:13000", timeout: 5 }
session:
  secrets: ["short"]
  cookie: { sameSite: sideways }
memcached:
  nodes: ["127.0.0.1:11211"]
  write: sometimes
`)
  const res = await run(['--config', file])
  t.not(res.code, 0, 'exits non-zero')
  const expected = ['listen.port', 'upstream.timeout', 'session.secrets[0]', 'session.cookie.sameSite', 'memcached.write']
  const all = lines(res.stderr)
  for (const path of expected) {
    t.equal(all.filter((l) => l.startsWith(`${path}:`)).length, 1, `one line for ${path}`)
  }
  t.ok(all.length <= expected.length + 1, `no more than one line per problem, plus a heading:\n${res.stderr}`)
  t.notMatch(res.stderr, /\n\s+at /, 'no stack trace')
})

t.test('garbage YAML exits non-zero with a clear line naming the file', async (t) => {
  const file = configFile('listen: { host: 127.0.0.1\nsession: [ : :\n\t- ]]\n')
  const res = await run(['--config', file])
  t.not(res.code, 0)
  t.ok(lines(res.stderr).some((l) => /yaml/i.test(l) && l.includes(file)), res.stderr)
  t.notMatch(res.stderr, /\n\s+at /, 'no stack trace')
})

t.test('a missing config file exits non-zero naming the file', async (t) => {
  const file = join(dir, 'does-not-exist.yaml')
  const res = await run(['--config', file])
  t.not(res.code, 0)
  t.ok(lines(res.stderr).some((l) => l.includes(file)), res.stderr)
})

/** Starts the CLI on a valid config in front of a fresh app and memcached; waits until ready. */
async function startCli (t: Test, shutdownYaml = 'delayMs: 0'): Promise<{ child: ChildProcess, output: { stdout: string, stderr: string }, url: string, admin: string, app: TestApp, m: MemcachedProcess }> {
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const [port, adminPort] = [await freePort(), await freePort()]
  // ${VAR} substitution as in config/default.yaml; quoted, since `{` opens a YAML flow mapping.
  const file = configFile(`listen: { host: 127.0.0.1, port: "\${LISTEN_PORT}" }
upstream: { url: "${app.url}" }
admin: { host: 127.0.0.1, port: ${adminPort} }
session:
  secrets: ["\${SESSION_SECRET}"]
  cookie: { secure: false }
memcached:
  nodes: ["${m.address}"]
log: { level: info }
shutdown: { ${shutdownYaml} }
`)
  const { child, output } = spawnCli(['--config', file], { ...baseEnv(), SESSION_SECRET: SECRET, LISTEN_PORT: String(port) })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const admin = `http://127.0.0.1:${adminPort}`
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`the CLI exited with ${child.exitCode}: ${output.stderr}`)
    return await status(`${admin}/readyz`) === 200
  }, 10_000, 'the CLI to be ready')
  return { child, output, url: `http://127.0.0.1:${port}`, admin, app, m }
}

const status = async (u: string): Promise<number> => await fetch(u).then(async (r) => { await r.arrayBuffer(); return r.status }, () => 0)
const q = (value: unknown): string => encodeURIComponent(JSON.stringify(value))

t.test('a valid config starts, serves sessions through to the app, and exits 0 on SIGTERM', async (t) => {
  const { child, url, admin, app, m } = await startCli(t)
  t.equal(await status(`${admin}/healthz`), 200, '/healthz 200')
  t.equal(await status(`${admin}/readyz`), 200, '/readyz 200')

  const browser = new Browser()
  const login = await browser.get(url, `/login?set=${q({ user: 'ada' })}`)
  t.equal(login.status, 200)
  t.match(browser.sid, /^1~[A-Za-z0-9_-]{22}~127\.0\.0\.1:\d+~1~[A-Za-z0-9_-]{22}$/, 'a session cookie')
  const key = (browser.sid as string).split('~')[1] as string
  const profile = await browser.get(url, '/profile')
  t.same(profile.body.session, { user: 'ada' }, 'the app gets the session through the CLI-run sidecar')
  t.equal(app.last?.sessionId, key)

  const metrics = await fetch(`${admin}/metrics`)
  t.equal(metrics.status, 200)
  t.match(await metrics.text(), /^sidecar_requests_total\{/m, '/metrics serves Prometheus text')

  const exit = exited(child, 10_000)
  child.kill('SIGTERM')
  t.equal(await exit, 0, 'exit 0 after SIGTERM')
  t.equal(await m.copy(key), `1 ${b64({ user: 'ada' })}`, 'the session is in memcached')
  t.equal(await status(`${url}/`), 0, 'nothing listens any more')
})

t.test('SIGTERM drains: readyz 503, the in-flight update on a load balancer\'s keep-alive connection finishes and is flushed, exit 0 within shutdown.timeoutMs', async (t) => {
  const { child, output, url, admin, app, m } = await startCli(t, 'delayMs: 0, timeoutMs: 3000')
  // A load balancer keeps its connections to the sidecar open between requests.
  const lb = new Agent({ keepAlive: true })
  t.teardown(() => lb.destroy())
  const login = await rawRequest(`${url}/login?set=${q({ user: 'ada' })}`, [], 'GET', lb)
  const sid = (login.rawHeaders.find(([n]) => n.toLowerCase() === 'set-cookie')?.[1] ?? '').split(';')[0]?.slice('sid='.length) ?? ''
  const key = sid.split('~')[1] as string
  t.match(key, /^[A-Za-z0-9_-]{22}$/)

  const seen = app.seen.length
  const inFlight = rawRequest(`${url}/cart?delay=800&merge=${q({ cart: [1] })}`, [['Cookie', `sid=${sid}`]], 'GET', lb)
  await until(() => app.seen.length > seen, 5000, 'the slow request to reach the app')
  const exit = exited(child, 8000)
  const signalled = Date.now()
  child.kill('SIGTERM')
  await until(async () => await status(`${admin}/readyz`) === 503, 5000, '/readyz to go 503 while draining')
  t.pass('/readyz is 503 while draining')
  const slow = await inFlight
  t.equal(slow.status, 200, 'the in-flight request finished')
  t.same(JSON.parse(slow.body).session, { user: 'ada' })
  t.match(slow.rawHeaders.find(([n]) => n.toLowerCase() === 'set-cookie')?.[1], new RegExp(`^sid=1~${key}~127\\.0\\.0\\.1:\\d+~2~`), 'with its update')
  const code = await exit.catch((err: Error) => err.message)
  t.equal(code, 0, 'exit 0 after SIGTERM')
  t.ok(Date.now() - signalled < 3000 + 1000, `the drain ends within shutdown.timeoutMs (took ${Date.now() - signalled} ms)`)
  t.equal(await m.copy(key), `2 ${b64({ user: 'ada', cart: [1] })}`, 'the update was flushed to memcached before exit')
  const logged = lines(output.stdout).map((l) => JSON.parse(l) as Record<string, unknown>)
  const draining = logged.findIndex((e) => e.msg === 'draining')
  t.match(logged[draining], { signal: 'SIGTERM' }, 'a draining line names the signal')
  t.match(logged.at(-1), { msg: 'stopped', writesFlushed: Number, writesLeft: 0, durationMs: Number }, 'the last line: stopped, with writes flushed, none left, the duration')
  t.ok(draining >= 0 && draining < logged.length - 1, 'after the draining line')
})

t.test('SIGTERM with shutdown.delayMs: /readyz 503 at once while requests are still served, on kept-alive and new connections, each closing its connection; then the drain, exit 0', async (t) => {
  const { child, output, url, admin, m } = await startCli(t, 'delayMs: 2000, timeoutMs: 3000')
  const lb = new Agent({ keepAlive: true })
  t.teardown(() => lb.destroy())
  const sidOf = (res: { rawHeaders: Array<[string, string]> }): string =>
    (res.rawHeaders.find(([n]) => n.toLowerCase() === 'set-cookie')?.[1] ?? '').split(';')[0]?.slice('sid='.length) ?? ''
  const login = await rawRequest(`${url}/login?set=${q({ user: 'ada' })}`, [], 'GET', lb)
  const key = sidOf(login).split('~')[1] as string

  const exit = exited(child, 10_000)
  child.kill('SIGTERM')
  await until(async () => await status(`${admin}/readyz`) === 503, 5000, '/readyz to go 503')
  t.pass('/readyz is 503: load balancers take the sidecar out of rotation')
  // Within the 2 s delay: served as before the signal (no 503, no refused connection).
  const kept = await rawRequest(`${url}/cart?merge=${q({ cart: [1] })}`, [['Cookie', `sid=${sidOf(login)}`]], 'GET', lb)
  t.equal(kept.status, 200, 'a request on the load balancer\'s kept-alive connection is served')
  t.ok(kept.rawHeaders.some(([n, v]) => n.toLowerCase() === 'connection' && /close/i.test(v)), 'with Connection: close: the next request takes a new connection, which the load balancer sends elsewhere')
  const fresh = await rawRequest(`${url}/cart?merge=${q({ cart: [1, 2] })}`, [['Cookie', `sid=${sidOf(kept)}`]])
  t.equal(fresh.status, 200, 'a new connection is still accepted and served')
  t.same(JSON.parse(fresh.body).session, { user: 'ada', cart: [1] })

  t.equal(await exit, 0, 'then it drains and exits 0')
  t.equal(await m.copy(key), `3 ${b64({ user: 'ada', cart: [1, 2] })}`, 'both updates are in memcached')
  t.equal(await status(`${url}/`), 0, 'nothing listens any more')
  const logged = lines(output.stdout).map((l) => JSON.parse(l) as Record<string, unknown>)
  const order = ['draining', 'not ready: serving on for shutdown.delayMs while load balancers stop routing here', 'stopped'].map((msg) => logged.findIndex((e) => e.msg === msg))
  t.ok(order.every((i, n) => i >= 0 && (n === 0 || i > (order[n - 1] as number))), `draining, then the delay (${JSON.stringify(order)}), then stopped`)
  t.match(logged.find((e) => e.msg === 'stopped'), { writesLeft: 0 })
  t.match(logged.find((e) => typeof e.msg === 'string' && e.msg.startsWith('not ready')), { delayMs: 2000 })
})
