import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { accessSync, closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { parseArgs } from 'node:util'
import { CLI, ROOT, exitOf, freePort, onFreePort, running, sidecarYaml, until } from '../harness/index.js'
import { startDemoApp, type AppAnswer } from './app.js'
import { RoundRobinBalancer } from './balancer.js'
import { EmbeddedMemcached } from './embedded-memcached.js'

// `npm run demo`: two memcached nodes, two app instances, a built sidecar (dist/cli.js) in
// front of each, and a round-robin load balancer, all on loopback; then a scripted walk-through
// that kills the sidecar about to serve a session (the other must load it from memcached),
// restarts it with an empty cache, and kills the session's primary memcached node (the backup
// serves).

const HELP = `Usage: npm run demo [-- --walkthrough-only] [-- --port <n>]

Starts two memcached nodes, two instances of a small app, a session-sidecar (the built
dist/cli.js) beside each, and a round-robin load balancer on 127.0.0.1:8080 (or a free port),
then walks through a sidecar crash, its restart with an empty cache and a memcached node
crash. Stays up until Ctrl-C. The generated configs and every process's log are kept in
the folder it names.

Options:
  --walkthrough-only   exit after the walk-through (also: DEMO_EXIT=1)
  --port <n>           load balancer port (default 8080, a free one if taken; 0: any free port)
  -h, --help           show this help

Environment:
  DEMO_EMBEDDED_MEMCACHED=1   use the demo's embedded memcached-protocol server even when
                              memcached is installed
`

const STEP_TIMEOUT_MS = 15_000
const REQUEST_TIMEOUT_MS = 10_000
const STOP_TIMEOUT_MS = 6_000

class StepFailed extends Error {}
class Interrupted extends Error {}

const abort = new AbortController()
let stopSignal: NodeJS.Signals | undefined

// `npm run demo | head`: once the reader has gone, writing fails with EPIPE. Nobody reads any
// more: stop everything, quietly and cleanly (exit 0), as for Ctrl-C.
let readerGone = false
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (readerGone) return
  readerGone = true
  if (err.code !== 'EPIPE') process.stderr.write(`demo: stdout: ${err.message}\n`)
  abort.abort()
})

/** One line to stdout; `written` is called once it has reached the reader's pipe or terminal. */
function say (line = '', written?: () => void): void {
  if (readerGone) return
  process.stdout.write(`${line}\n`, (err) => { if (err == null) written?.() })
}

/** Polls `check` until it returns true; bounded by `ms` (then StepFailed), and by Ctrl-C (Interrupted). */
async function wait (check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  await until(check, ms, what, {
    signal: abort.signal,
    onAbort: () => new Interrupted(String(stopSignal)),
    onTimeout: (message) => new StepFailed(message)
  })
}

/** True when a memcached-protocol server on `port` answers `version`. */
async function memcachedAnswers (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let reply = ''
    socket.setTimeout(1000, () => { socket.destroy(); resolve(false) })
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1')
      if (reply.includes('\r\n')) { socket.destroy(); resolve(reply.startsWith('VERSION ')) }
    })
    socket.on('error', () => resolve(false))
    socket.write('version\r\n')
  })
}

async function readyz (adminPort: number): Promise<number> {
  return await fetch(`http://127.0.0.1:${adminPort}/readyz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status, () => 0)
}

/** `memcached` from PATH, else /usr/bin/memcached; undefined when neither is executable. */
function findMemcached (path = process.env.PATH ?? ''): string | undefined {
  const candidates = [...path.split(delimiter).filter((d) => d !== '').map((d) => join(d, 'memcached')), '/usr/bin/memcached']
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK)
      if (statSync(file).isFile()) return file
    } catch {}
  }
  return undefined
}

/** A child process of the demo: output to a log file, stopped by pid. */
class Child {
  #child: ChildProcess | undefined
  readonly logFile: string

  constructor (readonly name: string, readonly dir: string) {
    this.logFile = join(dir, `${name}.log`)
  }

  get pid (): number | undefined { return this.#child?.pid }
  get running (): boolean { return running(this.#child) }

  start (command: string, args: string[], env: NodeJS.ProcessEnv = process.env): void {
    if (abort.signal.aborted) throw new Interrupted(String(stopSignal))
    const fd = openSync(this.logFile, 'a')
    try {
      const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', fd, fd] })
      child.on('error', () => {}) // reported through `running` and the log
      this.#child = child
      children.add(this)
    } finally {
      closeSync(fd)
    }
  }

  /** Sends `signal` and waits (bounded) for the exit; SIGKILL when SIGTERM was not enough. */
  async stop (signal: NodeJS.Signals = 'SIGTERM', ms = STOP_TIMEOUT_MS): Promise<void> {
    const child = this.#child
    if (child === undefined || !this.running) return
    const exited = exitOf(child, ms).then(() => true, () => false)
    process.kill(child.pid as number, signal)
    if (await exited) return
    if (signal !== 'SIGKILL') {
      say(`  ${this.name} (pid ${String(child.pid)}) did not stop within ${ms} ms after ${signal}: SIGKILL`)
      await this.stop('SIGKILL', 2000)
      return
    }
    throw new Error(`${this.name} (pid ${String(child.pid)}) did not exit after SIGKILL`)
  }

  /** Kills at once, synchronously: the last resort on exit. */
  killNow (): void {
    if (this.running && this.pid !== undefined) {
      try { process.kill(this.pid, 'SIGKILL') } catch {}
    }
  }

  /** The last lines of its log, for error messages. */
  tail (lines = 15): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).map((l) => `      ${l}`).join('\n')
    } catch {
      return '      (no log)'
    }
  }
}

const children = new Set<Child>()

interface SidecarSpec {
  readonly name: string
  readonly instance: string
  readonly child: Child
  readonly port: number
  readonly adminPort: number
  readonly config: string
}

/** The YAML an operator would write, with the secret taken from the environment. */
function sidecarConfig (port: number, adminPort: number, upstream: string, nodes: string[]): string {
  return sidecarYaml({
    port,
    adminPort,
    upstream,
    secretEnv: 'SESSION_SECRET',
    nodes,
    write: 'sync',
    timeoutMs: 1000,
    shutdown: { delayMs: 0, timeoutMs: 3000 },
    logLevel: 'info',
    comments: {
      '': 'Generated by the session-sidecar demo.',
      'session.cookie': 'Plain http on localhost: a Secure cookie would never be sent back.',
      'memcached.write': 'sync: the response waits until memcached stored the update, so a kill -9 right after a\nresponse loses nothing (async, the default, is faster and has a window of about a millisecond).',
      'memcached.timeoutMs': 'Above the 250 ms default: every process of the demo shares one machine, and on a busy one a\nslow answer would count as a memcached failure the walk-through does not expect.',
      shutdown: 'delayMs 0: the demo stops its load balancer before its sidecars. In production keep the\ndefault (5000), so that load balancers stop routing to a sidecar before it stops accepting.'
    }
  })
}

async function startSidecar (s: SidecarSpec, secret: string): Promise<void> {
  s.child.start(process.execPath, [CLI, '--config', s.config], { ...process.env, SESSION_SECRET: secret })
  await wait(async () => {
    if (!s.child.running) throw new StepFailed(`${s.name} exited while starting; its log:\n${s.child.tail()}`)
    return await readyz(s.adminPort) === 200
  }, STEP_TIMEOUT_MS, `${s.name} to be ready`)
}

async function startMemcached (bin: string, name: string, dir: string): Promise<{ child: Child, port: number }> {
  // memcached refuses to run as root unless told which user to be.
  const user = process.getuid?.() === 0 ? ['-u', 'root'] : []
  // memcached cannot report a port it picked: a free one, and another if it was taken between
  // the check and memcached's bind (it exits, or never answers: StepFailed), up to 3 tries.
  return await onFreePort(async (port) => {
    const child = new Child(name, dir)
    child.start(bin, [...user, '-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '64', '-t', '1'])
    await wait(async () => {
      if (!child.running) throw new StepFailed(`${name} exited while starting; its log:\n${child.tail()}`)
      return await memcachedAnswers(port)
    }, STEP_TIMEOUT_MS, `${name} on port ${port}`)
    return { child, port }
  }, 3, (err) => err instanceof StepFailed)
}

/** The session cookie's fields (format 1: 1~key~primary[~backup]~version~mac). */
function cookieFields (sid: string | undefined): { key: string, version: string, nodes: string[] } | undefined {
  const parts = sid?.split('~')
  if (parts === undefined || parts.length < 5) return undefined
  return { key: parts[1] ?? '', version: parts.at(-2) ?? '', nodes: parts.slice(2, -2) }
}

/** A browser in miniature: keeps the sidecar's cookie and sends it back. */
class CookieClient {
  readonly cookies = new Map<string, string>()

  constructor (readonly base: string, readonly name: string) {}

  get sid (): string | undefined { return this.cookies.get('sid') }

  async get (path: string): Promise<{ status: number, answer: AppAnswer, backend: string }> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    let res: Response
    try {
      res = await fetch(this.base + path, {
        headers: { accept: 'application/json', ...(cookie === '' ? {} : { cookie }) },
        signal: AbortSignal.any([AbortSignal.timeout(REQUEST_TIMEOUT_MS), abort.signal])
      })
    } catch (err) {
      if (abort.signal.aborted) throw new Interrupted(String(stopSignal))
      throw new StepFailed(`GET ${path}: ${(err as Error).message}`)
    }
    for (const line of res.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';')
      const eq = pair.indexOf('=')
      const name = pair.slice(0, eq).trim()
      const value = pair.slice(eq + 1).trim()
      const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a) || /^\s*expires=thu, 01 jan 1970/i.test(a))
      if (expired || value === '') this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
    const text = await res.text()
    if (res.status !== 200) throw new StepFailed(`GET ${path} answered ${res.status}: ${text.trim()}`)
    return { status: res.status, answer: JSON.parse(text) as AppAnswer, backend: res.headers.get('x-demo-backend') ?? '?' }
  }
}

/** A memcached node of the demo. */
interface MemcachedNode {
  readonly name: string
  readonly address: string
  /** Kills it; resolves with what was done, for the walk-through to say. */
  readonly kill: () => Promise<string>
}

interface Topology {
  readonly dir: string
  readonly secret: string
  readonly memcached: MemcachedNode[]
  readonly sidecars: SidecarSpec[]
  readonly balancer: RoundRobinBalancer
}

/** One request of the walk-through, printed as it happened. */
async function step (client: CookieClient, path: string): Promise<AppAnswer> {
  const { answer } = await client.get(path)
  const c = cookieFields(client.sid)
  const session = answer.session === null
    ? 'no session'
    : Object.entries(answer.session).map(([k, v]) => `${k}=${String(v)}`).join(' ')
  const cookie = c === undefined ? 'no cookie' : `cookie key ${c.key.slice(0, 6)}… v${c.version} on ${c.nodes.join(' + ')}`
  say(`  ${client.name.padEnd(5)} GET ${path.padEnd(17)} answered by ${answer.instance}   ${session.padEnd(20)} ${cookie}`)
  return answer
}

function expect (ok: boolean, message: string): void {
  if (!ok) throw new StepFailed(message)
}

/** Sessions a sidecar had to read from memcached: not in its cache, or older there than the cookie. */
const LOADED = 'sidecar_requests_total{outcome="miss-loaded"}'
/** Sessions served while a memcached node named in the cookie failed. */
const FAILOVERS = 'sidecar_failovers_total'

/** A counter on a sidecar's /metrics (0 until first counted). */
async function counter (s: SidecarSpec, series: string): Promise<number> {
  let text: string
  try {
    const res = await fetch(`http://127.0.0.1:${s.adminPort}/metrics`, { signal: AbortSignal.any([AbortSignal.timeout(REQUEST_TIMEOUT_MS), abort.signal]) })
    text = await res.text()
  } catch (err) {
    if (abort.signal.aborted) throw new Interrupted(String(stopSignal))
    throw new StepFailed(`${s.name} /metrics: ${(err as Error).message}`)
  }
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

/** The counter once it has gone up from `before` (it is counted as the response goes out). */
async function counterAbove (s: SidecarSpec, series: string, before: number): Promise<number> {
  let now = before
  await wait(async () => (now = await counter(s, series)) > before, 5000, `${s.name}'s ${series} to go up from ${before}`)
  return now
}

async function walkthrough (topo: Topology): Promise<void> {
  const { balancer, sidecars } = topo
  const alice = new CookieClient(balancer.url, 'alice')
  const bob = new CookieClient(balancer.url, 'bob')
  const sidecarOf = (instance: string): SidecarSpec => {
    const s = sidecars.find((x) => x.instance === instance)
    if (s === undefined) throw new StepFailed(`unknown instance ${instance}`)
    return s
  }
  const otherThan = (s: SidecarSpec): SidecarSpec => sidecars.find((x) => x !== s) as SidecarSpec
  /** bob's requests take the turns until `target` is next in the load balancer's rotation. */
  const turnTo = async (target: SidecarSpec): Promise<void> => {
    for (let i = 0; balancer.peek() !== target.name; i++) {
      expect(i < sidecars.length, `the load balancer does not route to ${target.name}`)
      await step(bob, bob.sid === undefined ? '/login?user=bob' : '/')
    }
  }

  say()
  say('Walk-through: alice and bob are browsers in miniature (they keep their cookies); every')
  say('request goes through the load balancer, round-robin and not sticky.')
  say()
  say('1. alice logs in and visits: the instances take turns; each reads her session from')
  say('   memcached when its own copy is older than her cookie.')
  const login = await step(alice, '/login?user=alice')
  expect(login.session?.user === 'alice' && alice.sid !== undefined, 'login did not create a session cookie')
  const key = cookieFields(alice.sid)?.key
  let visits = 0
  const visit = async (): Promise<AppAnswer> => {
    const answer = await step(alice, '/')
    visits++
    expect(answer.saw?.user === 'alice' && answer.session?.visits === visits, `visit ${visits}: expected alice with visits=${visits}, got ${JSON.stringify(answer.session)}`)
    expect(cookieFields(alice.sid)?.key === key, 'the session key changed')
    return answer
  }
  let last = login
  for (let i = 0; i < 3; i++) last = await visit()

  // The sidecar that answered alice last holds her newest session; make it the next in turn.
  const victim = sidecarOf(last.instance)
  const survivor = otherThan(victim)
  say()
  say(`2. Crash the sidecar that would serve alice's next request, ${victim.name}: it answered her last`)
  say('   visit and caches her newest session. (bob\'s requests take the turns in between.)')
  await turnTo(victim)
  say(`   Next in the load balancer's rotation: ${victim.name}.`)
  const loadedBefore = await counter(survivor, LOADED)
  say(`   SIGKILL ${victim.name} (pid ${String(victim.child.pid)}): no drain, no flush, its cache is gone.`)
  await victim.child.stop('SIGKILL')
  const after = await visit()
  expect(after.instance === survivor.instance, `${after.instance} answered, expected ${survivor.instance}`)
  const loadedAfter = await counterAbove(survivor, LOADED, loadedBefore)
  say(`   ${victim.name} is dead, so the load balancer sent the request to ${survivor.name}, whose`)
  say('   copy was older than alice\'s cookie: it loaded her session from memcached (its')
  say(`   ${LOADED} went ${loadedBefore} -> ${loadedAfter}). visits=${visits}, same key: nothing lost.`)

  say()
  say(`3. Restart ${victim.name} on the same ports: it comes back with an empty cache.`)
  await startSidecar(victim, topo.secret)
  await wait(() => balancer.healthy(victim.name), STEP_TIMEOUT_MS, `the load balancer to see ${victim.name} ready`)
  say(`   ${victim.name} is back (pid ${String(victim.child.pid)}) and in the load balancer's rotation.`)
  await turnTo(victim)
  const freshBefore = await counter(victim, LOADED)
  last = await visit()
  expect(last.instance === victim.instance, `${last.instance} answered, expected the restarted ${victim.instance}`)
  const freshAfter = await counterAbove(victim, LOADED, freshBefore)
  say(`   ${victim.name} had never seen alice's session: it loaded it from memcached`)
  say(`   (its ${LOADED} went ${freshBefore} -> ${freshAfter}).`)

  const [primaryAddress, backupAddress] = cookieFields(alice.sid)?.nodes ?? []
  const primary = topo.memcached.find((m) => m.address === primaryAddress)
  const backup = topo.memcached.find((m) => m.address === backupAddress)
  if (primary === undefined || backup === undefined) throw new StepFailed(`alice's cookie does not name a primary and a backup node: ${String(alice.sid)}`)
  // The sidecar that did not answer last holds an older copy: it must read memcached.
  const reader = otherThan(sidecarOf(last.instance))
  say()
  say(`4. Crash alice's primary memcached node, ${primary.name}; her backup copy is on ${backup.name}.`)
  await turnTo(reader)
  say(`   Next in the rotation: ${reader.name}, whose copy of alice's session is older than her cookie.`)
  const failoversBefore = await counter(reader, FAILOVERS)
  say(`   ${await primary.kill()}`)
  const failed = await visit()
  expect(failed.instance === reader.instance, `${failed.instance} answered, expected ${reader.instance}`)
  const failoversAfter = await counterAbove(reader, FAILOVERS, failoversBefore)
  say(`   ${reader.name} read memcached: ${primary.name} failed, the backup on ${backup.name} served alice's`)
  say(`   session (${FAILOVERS} ${failoversBefore} -> ${failoversAfter}). visits=${visits}, same key: nothing lost.`)
  const nodes = cookieFields(alice.sid)?.nodes ?? []
  if (!nodes.includes(primary.address)) say(`   The change was stored on the node that answers, and her cookie now names ${nodes.join(' + ')}.`)

  say()
  say('5. alice logs out: the session is destroyed everywhere.')
  const out = await step(alice, '/logout')
  expect(out.saw?.user === 'alice' && alice.sid === undefined, 'logout did not clear the session cookie')
  const anon = await step(alice, '/whoami')
  expect(anon.saw === null, 'the session is still there after logout')
  say()
  say('Walk-through complete: alice\'s session survived kill -9 of the sidecar about to serve her,')
  say('that sidecar\'s restart with an empty cache, and kill -9 of her primary memcached node.')
  say(`(${primary.name} stays down: new sessions go to ${backup.name}.)`)
}

async function main (): Promise<number> {
  let values
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: {
        'walkthrough-only': { type: 'boolean' },
        port: { type: 'string' },
        help: { type: 'boolean', short: 'h' }
      }
    }))
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  if (values.help === true) {
    process.stdout.write(HELP)
    return 0
  }
  const exitAfter = values['walkthrough-only'] === true || process.env.DEMO_EXIT === '1'
  const wantedPort = values.port === undefined ? 8080 : Number(values.port)
  if (!Number.isInteger(wantedPort) || wantedPort < 0 || wantedPort > 65535) {
    process.stderr.write(`demo: --port must be 0-65535, got ${String(values.port)}\n`)
    return 2
  }
  if (!existsSync(CLI)) {
    process.stderr.write(`demo: ${CLI} is missing: run \`npm run build\` first (npm run demo does)\n`)
    return 2
  }

  const dir = mkdtempSync(join(tmpdir(), 'session-sidecar-demo-'))
  const apps: Array<Awaited<ReturnType<typeof startDemoApp>>> = []
  const embedded: EmbeddedMemcached[] = []
  let balancer: RoundRobinBalancer | undefined
  const memcached: MemcachedNode[] = []
  let completed = false
  let keepLogs = false
  // Kept when the demo told the reader where they are, or when it failed.
  let logsAnnounced = false
  try {
    say('session-sidecar demo')
    // memcached
    const forceEmbedded = process.env.DEMO_EMBEDDED_MEMCACHED === '1'
    const bin = forceEmbedded ? undefined : findMemcached()
    const nodes: string[] = []
    if (bin !== undefined) {
      say(`[1/4] memcached: starting 2 nodes (${bin})`)
      for (const name of ['memcached-1', 'memcached-2']) {
        const m = await startMemcached(bin, name, dir)
        const address = `127.0.0.1:${m.port}`
        nodes.push(address)
        memcached.push({
          name,
          address,
          kill: async () => {
            const pid = String(m.child.pid)
            await m.child.stop('SIGKILL')
            return `SIGKILL ${name} (pid ${pid}): its copies are gone.`
          }
        })
        say(`      ${name}  ${address}  pid ${String(m.child.pid)}`)
      }
    } else {
      say(forceEmbedded
        ? '[1/4] DEMO_EMBEDDED_MEMCACHED=1: using the demo\'s embedded memcached-protocol server (not for production)'
        : '[1/4] memcached not found: using the demo\'s embedded memcached-protocol server (not for production)')
      for (const name of ['memcached-1', 'memcached-2']) {
        const m = new EmbeddedMemcached()
        embedded.push(m)
        await m.listen(0)
        nodes.push(m.address)
        memcached.push({
          name,
          address: m.address,
          kill: async () => {
            await m.close()
            return `Stopped the embedded ${name}: its connections are cut, its copies are gone.`
          }
        })
        say(`      ${name}  ${m.address}  (embedded, in the demo's process)`)
      }
    }

    // apps
    say('[2/4] demo app: 2 instances (plain node:http, sessions through X-Session-* headers)')
    for (const instance of ['instance-1', 'instance-2']) {
      const app = await startDemoApp(instance)
      apps.push(app)
      say(`      ${instance}  ${app.url}`)
    }

    // sidecars
    const secret = randomBytes(32).toString('base64url')
    say('[3/4] sidecars: the built CLI, one beside each app instance (node dist/cli.js --config <yaml>)')
    // eslint-disable-next-line no-template-curly-in-string -- prints the config's own ${VAR} syntax
    say('      secret: 32 random bytes in SESSION_SECRET, read by the YAML as secrets: ["${SESSION_SECRET}"]')
    say('      memcached.write: sync, so that each response waits until memcached stored its change: a')
    say('      sidecar killed right after answering loses nothing. (The default, async, answers first')
    say('      and has a window of about a millisecond in which a kill -9 loses that change.)')
    const sidecars: SidecarSpec[] = []
    for (const [i, app] of apps.entries()) {
      const name = `sidecar-${i + 1}`
      // Not port 0: step 3 restarts a sidecar on the ports the load balancer knows. Free ports
      // below the ephemeral range, and others if one was taken before the sidecar bound it.
      const s = await onFreePort(async (port) => {
        const adminPort = await freePort()
        const config = join(dir, `${name}.yaml`)
        writeFileSync(config, sidecarConfig(port, adminPort, app.url, nodes))
        const spec: SidecarSpec = { name, instance: `instance-${i + 1}`, child: new Child(name, dir), port, adminPort, config }
        await startSidecar(spec, secret)
        return spec
      })
      sidecars.push(s)
      say(`      ${name}  http://127.0.0.1:${s.port} -> ${s.instance}, admin http://127.0.0.1:${s.adminPort}  pid ${String(s.child.pid)}`)
    }

    // load balancer
    balancer = new RoundRobinBalancer(sidecars.map((s) => ({ name: s.name, port: s.port, adminPort: s.adminPort })))
    const port = await balancer.listen(wantedPort)
    const moved = port !== wantedPort && wantedPort !== 0 ? ` (port ${wantedPort} is taken)` : ''
    say(`[4/4] load balancer: round-robin, not sticky, in the demo's process: ${balancer.url}${moved}`)

    say()
    say('Open:')
    say(`  ${balancer.url}/                    the app through the load balancer (reload: the instances alternate)`)
    say(`  ${balancer.url}/login?user=alice    log in (new session key)`)
    say(`  ${balancer.url}/logout              log out (session destroyed everywhere)`)
    for (const s of sidecars) say(`  http://127.0.0.1:${s.adminPort}/metrics   ${s.name}'s Prometheus metrics`)
    say(`  ${dir}   the generated configs and every process's log (kept when the demo stops)`, () => { logsAnnounced = true })

    await walkthrough({ dir, secret, memcached, sidecars, balancer })
    completed = true
    if (exitAfter) return 0
    say()
    say(`Running: open ${balancer.url}/ in a browser. Press Ctrl-C to stop.`)
    await new Promise<void>((resolve) => abort.signal.addEventListener('abort', () => resolve(), { once: true }))
    return 0
  } catch (err) {
    if (err instanceof Interrupted || abort.signal.aborted) {
      // Piped into `head` (or the like): it has read what it wanted, nothing went wrong.
      if (completed || readerGone) return 0
      say(`Interrupted (${String(stopSignal)}) before the walk-through finished.`)
      return stopSignal === 'SIGTERM' ? 143 : 130
    }
    keepLogs = true
    const message = err instanceof StepFailed ? err.message : (err as Error).stack ?? String(err)
    process.stderr.write(`\ndemo failed: ${message}\n`)
    for (const c of children) if (c.name.startsWith('sidecar')) process.stderr.write(`    ${c.name} log (last lines):\n${c.tail()}\n`)
    return 1
  } finally {
    say('Stopping: load balancer, sidecars (SIGTERM, by pid), apps, memcached ...')
    await balancer?.close().catch(() => {})
    const sidecars = [...children].filter((c) => c.name.startsWith('sidecar'))
    await Promise.all(sidecars.map(async (c) => await c.stop().catch(() => c.killNow())))
    await Promise.all(apps.map(async ({ server }) => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }))
    await Promise.all([...children].map(async (c) => await c.stop().catch(() => c.killNow())))
    await Promise.all(embedded.map(async (m) => await m.close()))
    if (keepLogs) process.stderr.write(`logs kept in ${dir}\n`)
    else if (logsAnnounced) say(`Configs and logs kept in ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
    say('Stopped.')
  }
}

function onSignal (signal: NodeJS.Signals): void {
  if (stopSignal !== undefined) {
    // A second Ctrl-C: no more waiting.
    for (const c of children) c.killNow()
    process.exit(130)
  }
  stopSignal = signal
  abort.abort()
}
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)
// Whatever happens, no child outlives the demo.
process.on('exit', () => { for (const c of children) c.killNow() })

main().then((code) => {
  process.exitCode = code
  // Everything is closed; a lingering keep-alive timer must not hold the exit.
  setTimeout(() => process.exit(code), 500).unref()
}, (err: unknown) => {
  process.stderr.write(`demo: ${(err as Error).stack ?? String(err)}\n`)
  for (const c of children) c.killNow()
  process.exitCode = 1
})
