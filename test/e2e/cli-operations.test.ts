import t, { type Test } from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { MemcachedProcess } from '../helpers/memcached.js'
import { TestApp } from '../helpers/upstream.js'
import { Browser } from '../helpers/client.js'
import { until } from '../../harness/index.js'
import { SidecarProcess, scratch } from '../helpers/processes.js'

const CLI = join(process.cwd(), 'dist', 'cli.js')
const env = { ...process.env, SESSION_SECRET: 'x'.repeat(24) }

t.test('--check: a valid config with resolvable nodes passes and lists them', async (t) => {
  const r = spawnSync(process.execPath, [CLI, '--check', '--config', 'config/default.yaml'], { env, encoding: 'utf8' })
  t.equal(r.status, 0)
  t.match(r.stdout, /config\/default\.yaml is valid\nmemcached nodes:\n {2}127\.0\.0\.1:11211\n/)
  t.match(r.stderr, /warning: memcached\.allow is empty/, 'and warns that memcached.allow is empty (the shipped default)')
})

t.test('--check: no warning once memcached.allow lists the networks', async (t) => {
  const { dir, cleanup } = scratch()
  t.teardown(cleanup)
  const file = join(dir, 'allow.yaml')
  writeFileSync(file, 'session: { secrets: ["0123456789abcdef0123"] }\nmemcached: { nodes: ["127.0.0.1:11211"], allow: ["127.0.0.0/8"] }\n')
  const r = spawnSync(process.execPath, [CLI, '--check', '--config', file], { env: { PATH: process.env.PATH }, encoding: 'utf8' })
  t.equal(r.status, 0)
  t.equal(r.stderr, '')
})

t.test('--check: a node that does not resolve fails the check with its key path', async (t) => {
  const r = spawnSync(process.execPath, [CLI, '--check', '--config', 'config/default.yaml'], { env: { ...env, MEMCACHED_NODES: 'no-such-host.invalid:11211' }, encoding: 'utf8' })
  t.equal(r.status, 2)
  t.match(r.stderr, /memcached\.nodes\[0\]: "no-such-host\.invalid:11211" does not resolve \(ENOTFOUND|EAI_AGAIN\)/)
})

t.test('--check: two names for one memcached (localhost and 127.0.0.1) fail the check, naming both', async (t) => {
  const { dir, cleanup } = scratch()
  t.teardown(cleanup)
  const write = (name: string, nodes: string[]): string => {
    const file = join(dir, name)
    writeFileSync(file, `session: { secrets: ["0123456789abcdef0123"] }\nmemcached: { nodes: ${JSON.stringify(nodes)}, allow: ["127.0.0.0/8", "localhost"] }\n`)
    return file
  }
  const twice = spawnSync(process.execPath, [CLI, '--check', '--config', write('twice.yaml', ['localhost:11211', '127.0.0.1:11211'])], { env: { PATH: process.env.PATH }, encoding: 'utf8' })
  t.equal(twice.status, 2)
  t.match(twice.stderr, /memcached\.nodes\[1\]: "127\.0\.0\.1:11211" reaches 127\.0\.0\.1:11211, as memcached\.nodes\[0\] "localhost:11211" does/)
  const ports = spawnSync(process.execPath, [CLI, '--check', '--config', write('ports.yaml', ['localhost:11211', '127.0.0.1:11212'])], { env: { PATH: process.env.PATH }, encoding: 'utf8' })
  t.equal(ports.status, 0, 'one host on two ports is two memcached processes')
})

t.test('--check: an invalid config prints every problem and serves nothing', async (t) => {
  const { dir, cleanup } = scratch()
  t.teardown(cleanup)
  const file = join(dir, 'bad.yaml')
  writeFileSync(file, 'listen: { port: 99999 }\nmemcached: { nodes: ["nope"] }\n')
  const r = spawnSync(process.execPath, [CLI, '--check', '--config', file], { env: { PATH: process.env.PATH }, encoding: 'utf8' })
  t.equal(r.status, 2)
  t.match(r.stderr, /listen\.port: must be between 0 and 65535/)
  t.match(r.stderr, /memcached\.nodes\[0\]: "nope" is not host:port/)
  t.match(r.stderr, /session\.secrets: required/)
})

t.test('--help lists every flag', async (t) => {
  const r = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' })
  t.equal(r.status, 0)
  for (const flag of ['--config', '--check', '--help', '--version']) t.match(r.stdout, flag)
  t.match(r.stdout, /SIGHUP/)
})

/** Two memcached nodes and a sidecar process configured with the first only; `file` is its config, to edit before a SIGHUP. */
async function hupFleet (t: Test, name: string): Promise<{ m1: MemcachedProcess, m2: MemcachedProcess, sidecar: SidecarProcess, file: string }> {
  const m1 = await MemcachedProcess.start()
  const m2 = await MemcachedProcess.start()
  t.teardown(async () => { await m1.stop(); await m2.stop() })
  const app = await new TestApp().start()
  t.teardown(() => app.close())
  const { dir, cleanup } = scratch()
  t.teardown(cleanup)
  const sidecar = await new SidecarProcess(dir, name, { upstream: app.url, nodes: [m1.address] }).start()
  t.teardown(() => sidecar.kill('SIGKILL'))
  return { m1, m2, sidecar, file: join(dir, `${name}.yaml`) }
}

t.test('SIGHUP re-reads memcached.nodes: new sessions move, old ones stay; a broken file changes nothing', async (t) => {
  const { m1, m2, sidecar, file } = await hupFleet(t, 'hup')
  const primaryOf = (b: Browser): string => (b.sid ?? '').split('~')[2] ?? ''

  const old = new Browser()
  await old.get(sidecar.url, '/?set={"old":true}')
  t.equal(primaryOf(old), m1.address)

  writeFileSync(file, readFileSync(file, 'utf8').replace(m1.address, m2.address))
  process.kill(sidecar.pid as number, 'SIGHUP')
  await until(async () => {
    const b = new Browser()
    await b.get(sidecar.url, '/?set={"new":true}')
    return primaryOf(b) === m2.address
  }, 5000, 'new sessions on the node from the re-read file')
  t.same((await old.get(sidecar.url, '/')).body.session, { old: true }, 'the session on the dropped node is still served')

  writeFileSync(file, 'this: is: not: yaml: [')
  process.kill(sidecar.pid as number, 'SIGHUP')
  await until(() => /config not reloaded, it is invalid/.test(sidecar.output), 5000, 'the refusal to be logged')
  const b = new Browser()
  const res = await b.get(sidecar.url, '/?set={"still":"up"}')
  t.equal(res.status, 200, 'still serving')
  t.equal(primaryOf(b), m2.address, 'on the last good node list')
})

t.test('SIGHUP from one memcached node to two re-derives replicas: new sessions get a backup at once', async (t) => {
  const { m1, m2, sidecar, file } = await hupFleet(t, 'grow')
  const nodesOf = (b: Browser): string[] => (b.sid ?? '').split('~').slice(2, -2)
  const before = new Browser()
  await before.get(sidecar.url, '/?set={"n":1}')
  t.same(nodesOf(before), [m1.address], 'one node: no backup (replicas derived as 1)')

  const yaml = readFileSync(file, 'utf8')
  t.ok(yaml.includes(`- ${m1.address}\n`), 'the node list is a YAML sequence')
  writeFileSync(file, yaml.replace(`- ${m1.address}\n`, `- ${m1.address}\n    - ${m2.address}\n`))
  process.kill(sidecar.pid as number, 'SIGHUP')
  let after = new Browser()
  await until(async () => {
    after = new Browser()
    await after.get(sidecar.url, '/?set={"n":2}')
    return nodesOf(after).length > 1
  }, 5000, 'a new session with two nodes')
  t.same(new Set(nodesOf(after)), new Set([m1.address, m2.address]), 'two nodes: a new session has a primary and a backup, without a restart')
})

t.test('a SIGHUP while the sidecar is still starting (waiting for a paused memcached) waits for the start instead of killing it; the reload names the keys it did not apply', async (t) => {
  const m = await MemcachedProcess.start()
  t.teardown(async () => { if (m.pid !== undefined) process.kill(m.pid, 'SIGCONT'); await m.stop() })
  const { dir, cleanup } = scratch()
  t.teardown(cleanup)
  const file = join(dir, 'starting.yaml')
  const yaml = (secret: string): string => `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstream: { url: "http://127.0.0.1:9" }
session: { secrets: ["${secret}"], cookie: { secure: false } }
memcached: { nodes: ["${m.address}"], timeoutMs: 1500 }
`
  writeFileSync(file, yaml('s'.repeat(24)))
  // Paused: the start's probe of it waits memcached.timeoutMs.
  process.kill(m.pid as number, 'SIGSTOP')
  const child = spawn(process.execPath, [CLI, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  await until(() => output.includes('"msg":"starting"'), 10_000, 'the start to begin')
  t.notOk(output.includes('session-sidecar listening'), 'not listening yet')
  writeFileSync(file, yaml('t'.repeat(24)))
  child.kill('SIGHUP')
  await until(() => output.includes('SIGHUP: config re-read') || child.exitCode !== null || child.signalCode !== null, 15_000, 'the reload once started, or the process gone')
  t.equal(child.signalCode, null, 'the process was not killed by the SIGHUP')
  t.match(output, /session-sidecar listening[\s\S]*SIGHUP: config re-read/, 'it started, then reloaded')
  const reloaded = output.split('\n').find((l) => l.includes('SIGHUP: config re-read')) ?? ''
  t.same(JSON.parse(reloaded).notApplied, ['session.secrets'], 'naming the changed key it did not apply, never its value')
  t.notOk(output.includes('t'.repeat(24)), 'the secret is not logged')
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'and it drains and exits 0 on SIGTERM')
})
