import { execFileSync, spawn } from 'node:child_process'
import { accessSync, chmodSync, constants, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'

// `npm run demo` (issues 4 and 11): the whole topology on loopback and a scripted walk-through
// (the sidecar about to serve a session killed, then restarted empty; the session's primary
// memcached node killed), run as a child process in walk-through-only mode, once on real
// memcached and once on the demo's embedded memcached-protocol server; once kept running, then
// stopped with SIGINT; once piped into `head`.
// `npm test` builds dist/ first; the demo's own build (dist/demo) is made here when missing or
// older than demo/*.ts or harness/*.ts (compiled with it into dist/harness).

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CLI = join(ROOT, 'dist', 'cli.js')
const DEMO = join(ROOT, 'dist', 'demo', 'run.js')
const RUN_TIMEOUT_MS = 60_000

function buildDemo (): void {
  const sources = ['demo', 'harness'].flatMap((d) => readdirSync(join(ROOT, d)).filter((f) => f.endsWith('.ts')).map((f) => join(ROOT, d, f)))
  const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs))
  if (existsSync(DEMO) && statSync(DEMO).mtimeMs >= newest) return
  execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.demo.json'], { cwd: ROOT, stdio: 'inherit', timeout: 120_000 })
}

/** The same lookup as the demo's: memcached from PATH, else /usr/bin/memcached. */
function memcachedInstalled (): boolean {
  return [...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== ''), '/usr/bin'].some((d) => {
    try {
      accessSync(join(d, 'memcached'), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/**
 * Starts the demo; `whenOutput` is called on every output chunk with the output so far and
 * the child's pid (to send it a signal). Bounded: SIGTERM, then SIGKILL, at RUN_TIMEOUT_MS.
 */
async function runDemo (args: string[], env: Record<string, string> = {}, whenOutput?: (stdout: string, pid: number) => void): Promise<Run> {
  const base = { ...process.env }
  delete base.DEMO_EXIT
  delete base.DEMO_EMBEDDED_MEMCACHED
  const child = spawn(process.execPath, [DEMO, ...args], { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const run: Run = { code: null, signal: null, stdout: '', stderr: '' }
  child.stdout.on('data', (c: Buffer) => {
    run.stdout += c.toString()
    whenOutput?.(run.stdout, child.pid as number)
  })
  child.stderr.on('data', (c: Buffer) => { run.stderr += c.toString() })
  let killer: NodeJS.Timeout | undefined
  const timer = setTimeout(() => {
    child.kill('SIGTERM')
    killer = setTimeout(() => child.kill('SIGKILL'), 5000)
  }, RUN_TIMEOUT_MS)
  await new Promise<void>((resolve) => child.once('close', (code, signal) => {
    clearTimeout(timer)
    clearTimeout(killer)
    run.code = code
    run.signal = signal
    resolve()
  }))
  return run
}

/** Every process id the demo announced (memcached and sidecars, restarts included). */
const pidsOf = (stdout: string): number[] => [...stdout.matchAll(/\bpid (\d+)/g)].map((m) => Number(m[1]))

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

interface Request { who: string, path: string, instance: string, visits: number | undefined, key: string | undefined, nodes: string[] }

/** The walk-through's request lines (`alice GET / answered by instance-1 ... cookie key ... on a + b`). */
function requests (lines: string[]): Request[] {
  return lines.flatMap((l) => {
    const m = /^\s*(alice|bob)\s+GET (\S+)\s+answered by (instance-\d)\s+(.*)$/.exec(l)
    if (m === null) return []
    const rest = m[4] ?? ''
    const v = /visits=(\d+)/.exec(rest)?.[1]
    const nodes = /\bon (\S+(?: \+ \S+)*)\s*$/.exec(rest)?.[1]?.split(' + ') ?? []
    return [{ who: m[1] as string, path: m[2] as string, instance: m[3] as string, visits: v === undefined ? undefined : Number(v), key: /cookie key (\S+)/.exec(rest)?.[1], nodes }]
  })
}

/** The walk-through's numbered steps (`1. ...` up to the next), each as its lines. */
function steps (stdout: string): Map<number, string[]> {
  const out = new Map<number, string[]>()
  let current: string[] | undefined
  for (const line of stdout.split('\n')) {
    const heading = /^(\d)\. /.exec(line)
    if (heading !== null) out.set(Number(heading[1]), current = [])
    else if (/^Walk-through complete/.test(line)) current = undefined
    current?.push(line)
  }
  return out
}

/** `<series> went? A -> B` in a step's text, as [A, B]. */
function counted (text: string, series: RegExp): [number, number] | undefined {
  const m = new RegExp(`${series.source}\\s+(?:went\\s+)?(\\d+) -> (\\d+)`).exec(text)
  return m === null ? undefined : [Number(m[1]), Number(m[2])]
}

function assertWalkthrough (t: Test, run: Run): void {
  const where = `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`
  t.equal(run.code, 0, 'the demo exits 0 after the walk-through', { where })
  t.match(run.stdout, /memcached\.write: sync, so that each response waits until memcached stored its change/, 'it says which write mode it runs, and why')
  const memcachedAddress = new Map([...run.stdout.matchAll(/^\s+(memcached-\d)\s+(127\.0\.0\.1:\d+)/gm)].map((m) => [m[1] as string, m[2] as string]))
  t.equal(memcachedAddress.size, 2, 'two memcached nodes, by address')
  const s = steps(run.stdout)
  t.same([...s.keys()], [1, 2, 3, 4, 5], 'five steps')
  const text = (n: number): string => (s.get(n) ?? []).join('\n')

  // 1. round-robin
  const first = requests(s.get(1) ?? [])
  t.same(first.map((r) => `${r.who} ${r.path}`), ['alice /login?user=alice', 'alice /', 'alice /', 'alice /'], 'login, then three visits')
  t.same(first.map((r) => r.visits), [0, 1, 2, 3], 'the visit count goes up')
  t.equal(new Set(first.slice(1).map((r) => r.instance)).size, 2, 'round-robin: both instances answered')
  const key = first[0]?.key
  const last = first.at(-1)

  // 2. the sidecar that would serve the next request is killed
  const kill = /SIGKILL sidecar-(\d) \(pid \d+\)/.exec(text(2))
  const victim = `instance-${String(kill?.[1])}`
  t.ok(kill, 'it announced the SIGKILL of a sidecar')
  t.equal(last?.instance, victim, 'the sidecar killed answered alice\'s last visit (it holds her newest session)')
  t.match(text(2), new RegExp(`Next in the load balancer's rotation: sidecar-${String(kill?.[1])}\\.\\n.*SIGKILL`), 'and was next in the rotation when it was killed')
  const afterKill = requests((s.get(2) ?? []).slice((s.get(2) ?? []).findIndex((l) => /SIGKILL/.test(l))))
  t.same(afterKill.map((r) => [r.who, r.path]), [['alice', '/']], 'then alice\'s next visit')
  t.not(afterKill[0]?.instance, victim, 'answered by the other instance')
  t.equal(afterKill[0]?.visits, 4, 'the session survived: the visit count continues (3 -> 4)')
  t.equal(afterKill[0]?.key, key, 'same session key')
  const loaded = counted(text(2), /sidecar_requests_total\{outcome="miss-loaded"\}/)
  t.match(text(2), /loaded her session from memcached/, 'the survivor says it loaded the session from memcached')
  t.ok(loaded !== undefined && loaded[1] > loaded[0], `and its miss-loaded count went up (${JSON.stringify(loaded)})`)

  // 3. restarted with an empty cache
  t.match(text(3), new RegExp(`Restart sidecar-${String(kill?.[1])}[\\s\\S]*is back \\(pid \\d+\\)`), 'the killed sidecar was restarted')
  const restarted = requests(s.get(3) ?? []).filter((r) => r.who === 'alice')
  t.same(restarted.map((r) => [r.instance, r.visits]), [[victim, 5]], 'the restarted sidecar served alice\'s next visit (5)')
  t.equal(restarted[0]?.key, key)
  const fresh = counted(text(3), /sidecar_requests_total\{outcome="miss-loaded"\}/)
  t.match(text(3), /had never seen alice's session: it loaded it from memcached/)
  t.ok(fresh !== undefined && fresh[1] > fresh[0], `its miss-loaded count went up (${JSON.stringify(fresh)})`)

  // 4. alice's primary memcached node is killed
  const node = /Crash alice's primary memcached node, (memcached-\d)/.exec(text(4))?.[1]
  t.ok(node, 'a memcached node is crashed')
  t.equal(restarted[0]?.nodes[0], memcachedAddress.get(String(node)), 'the one alice\'s cookie named as primary')
  t.match(text(4), new RegExp(`(SIGKILL ${String(node)} \\(pid \\d+\\)|Stopped the embedded ${String(node)})`), 'killed')
  const afterNode = requests((s.get(4) ?? []).slice((s.get(4) ?? []).findIndex((l) => /SIGKILL memcached|Stopped the embedded/.test(l))))
  t.same(afterNode.map((r) => [r.who, r.path, r.visits]), [['alice', '/', 6]], 'alice\'s next visit still counts on (6)')
  t.equal(afterNode[0]?.key, key)
  t.not(afterNode[0]?.instance, restarted[0]?.instance, 'on the sidecar with the older copy (it had to read memcached)')
  t.match(text(4), /the backup on memcached-\d served alice's\s+session/, 'the backup served')
  const failovers = counted(text(4), /sidecar_failovers_total/)
  t.ok(failovers !== undefined && failovers[1] > failovers[0], `sidecar_failovers_total went up (${JSON.stringify(failovers)})`)

  // 5. logout
  t.same(requests(s.get(5) ?? []).map((r) => r.path), ['/logout', '/whoami'])
  t.match(run.stdout, /Walk-through complete/)
  t.match(run.stdout, /Stopped\.\n$/, 'it stopped everything before exiting')
  const pids = pidsOf(run.stdout)
  t.ok(pids.length >= 3, 'it announced its child processes by pid')
  t.same(pids.filter(alive), [], 'no child process outlives the demo')
  assertLogsKept(t, run)
}

/** The folder the demo announced is still there after it stopped, with the logs; removed here. */
function assertLogsKept (t: Test, run: Run): void {
  const dir = /Configs and logs kept in (\S+)/.exec(run.stdout)?.[1]
  t.ok(dir !== undefined, 'it says where the configs and logs are kept')
  if (dir === undefined) return
  t.match(run.stdout, new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s+the generated configs and every process's log \\(kept when the demo stops\\)`), 'as it announced at the start')
  t.ok(existsSync(join(dir, 'sidecar-1.log')) && existsSync(join(dir, 'sidecar-1.yaml')), 'the folder is there, with the logs and configs')
  rmSync(dir, { recursive: true, force: true })
}

t.before(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`)
  buildDemo()
})

t.test('walk-through on real memcached: the session survives kill -9 of the sidecar about to serve it, its restart and kill -9 of its primary memcached node', { skip: memcachedInstalled() ? false : 'memcached is not installed' }, async (t) => {
  const run = await runDemo(['--walkthrough-only', '--port', '0'])
  t.match(run.stdout, /\[1\/4\] memcached: starting 2 nodes \(\S*memcached\)/, 'real memcached processes')
  t.notMatch(run.stdout, /embedded/)
  assertWalkthrough(t, run)
})

t.test('walk-through on the embedded memcached-protocol server (DEMO_EMBEDDED_MEMCACHED=1, DEMO_EXIT=1), load balancer port taken', async (t) => {
  // Stands in for a laptop where 8080 is busy: the balancer moves to a free port.
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { taken.close() })
  const port = (taken.address() as { port: number }).port
  const run = await runDemo(['--port', String(port)], { DEMO_EMBEDDED_MEMCACHED: '1', DEMO_EXIT: '1' })
  t.match(run.stdout, /using the demo's embedded memcached-protocol server \(not for production\)/, 'announced as such')
  t.match(run.stdout, new RegExp(`load balancer: .*http://127\\.0\\.0\\.1:(?!${port}\\b)\\d+ \\(port ${port} is taken\\)`), 'the balancer took a free port and said so')
  t.notMatch(run.stdout, /Press Ctrl-C/, 'DEMO_EXIT=1: does not stay up')
  assertWalkthrough(t, run)
})

t.test('a step that fails: exit 1 with a clear message, logs kept, nothing left running', async (t) => {
  // A memcached on PATH that cannot start.
  const bin = mkdtempSync(join(tmpdir(), 'demo-fake-memcached-'))
  t.teardown(() => rmSync(bin, { recursive: true, force: true }))
  writeFileSync(join(bin, 'memcached'), '#!/bin/sh\necho "fake memcached: failed to listen" >&2\nexit 71\n')
  chmodSync(join(bin, 'memcached'), 0o755)
  const run = await runDemo(['--walkthrough-only', '--port', '0'], { PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` })
  t.equal(run.code, 1, 'exit 1', { stdout: run.stdout })
  t.match(run.stderr, /demo failed: memcached-1 exited while starting; its log:\n\s+fake memcached: failed to listen/, 'says which step failed and why')
  const kept = /logs kept in (\S+)/.exec(run.stderr)?.[1]
  t.ok(kept !== undefined && existsSync(kept), 'the logs are kept for a look')
  if (kept !== undefined) rmSync(kept, { recursive: true, force: true })
  t.match(run.stdout, /Stopped\.\n$/)
})

t.test('Ctrl-C during startup: everything stopped, exit 130', async (t) => {
  // One Ctrl-C only: a second one is the demo's "stop now" and skips the message checked below.
  let sent = false
  const run = await runDemo(['--port', '0'], { DEMO_EMBEDDED_MEMCACHED: '1' }, (stdout, pid) => {
    if (!sent && stdout.includes('[3/4]')) {
      sent = true
      try { process.kill(pid, 'SIGINT') } catch {}
    }
  })
  t.equal(run.code, 130, 'exit 130', { stdout: run.stdout, stderr: run.stderr })
  t.match(run.stdout, /Interrupted \(SIGINT\) before the walk-through finished/)
  t.notMatch(run.stdout, /Walk-through complete/)
  t.notMatch(run.stdout + run.stderr, /kept in/, 'the folder, not yet announced, is removed')
  t.same(pidsOf(run.stdout).filter(alive), [], 'no child process outlives the demo')
})

t.test('without --walkthrough-only it stays up and serves until SIGINT, then stops everything', async (t) => {
  let url: string | undefined
  let probe: Promise<unknown> | undefined
  let served: { status: number, instance: string } | undefined
  const run = await runDemo(['--port', '0'], { DEMO_EMBEDDED_MEMCACHED: '1' }, (stdout, pid) => {
    url ??= /load balancer: .*?(http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1]
    if (probe !== undefined || url === undefined || !stdout.includes('Press Ctrl-C')) return
    probe = fetch(`${url}/`, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(5000) })
      .then(async (r) => { served = { status: r.status, instance: ((await r.json()) as { instance: string }).instance } })
      .finally(() => process.kill(pid, 'SIGINT'))
  })
  await probe?.catch(() => {})
  t.same(served?.status, 200, 'the load balancer answers while the demo stays up')
  t.match(served?.instance, /^instance-\d$/)
  t.equal(run.code, 0, 'Ctrl-C after the walk-through: exit 0', { stderr: run.stderr })
  t.match(run.stdout, /Stopping: [\s\S]*Stopped\.\n$/)
  t.same(pidsOf(run.stdout).filter(alive), [], 'no child process outlives the demo')
  assertLogsKept(t, run)
})

t.test('piped into `head -n 5`: once head has gone, the demo stops everything and exits 0, no EPIPE error', async (t) => {
  // What `npm run demo | head -n 5` runs after its build (npm adds its banner lines). Without
  // --walkthrough-only: a demo that ignored the closed pipe would stay up, and the pipeline with it.
  const script = `"${process.execPath}" "${DEMO}" --port 0 | head -n 5; echo "exit statuses: \${PIPESTATUS[*]}"`
  const base = { ...process.env }
  delete base.DEMO_EXIT
  delete base.DEMO_EMBEDDED_MEMCACHED
  const child = spawn('bash', ['-c', script], { cwd: ROOT, env: base, stdio: ['ignore', 'pipe', 'pipe'] })
  const run: Run = { code: null, signal: null, stdout: '', stderr: '' }
  child.stdout.on('data', (c: Buffer) => { run.stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { run.stderr += c.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS)
  await new Promise<void>((resolve) => child.once('close', (code, signal) => {
    clearTimeout(timer)
    run.code = code
    run.signal = signal
    resolve()
  }))
  const lines = run.stdout.split('\n')
  t.equal(lines[0], 'session-sidecar demo', 'head printed the demo\'s first lines', { stdout: run.stdout })
  t.same(lines.slice(5), ['exit statuses: 0 0', ''], 'the demo exited 0, head exited 0')
  t.equal(run.stderr, '', 'nothing on stderr: no EPIPE, no stack trace')
  t.same(pidsOf(run.stdout).filter(alive), [], 'no memcached it announced outlives it')
})

t.test('usage: --help, and a bad --port exits 2 with a message', async (t) => {
  const help = await runDemo(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /--walkthrough-only/)
  const bad = await runDemo(['--port', 'eighty'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /--port must be 0-65535/)
})
