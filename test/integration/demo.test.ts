import { execFileSync, spawn } from 'node:child_process'
import { accessSync, chmodSync, constants, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'

// `npm run demo` (issue 4): the whole topology on loopback and a scripted sidecar crash, run
// as a child process in walk-through-only mode, once on real memcached and once on the demo's
// embedded memcached-protocol server; and once kept running, then stopped with SIGINT.
// `npm test` builds dist/ first; the demo's own build (dist/demo) is made here when missing or
// older than demo/*.ts.

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CLI = join(ROOT, 'dist', 'cli.js')
const DEMO = join(ROOT, 'dist', 'demo', 'run.js')
const RUN_TIMEOUT_MS = 60_000

function buildDemo (): void {
  const sources = readdirSync(join(ROOT, 'demo')).filter((f) => f.endsWith('.ts')).map((f) => join(ROOT, 'demo', f))
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

interface Visit { path: string, instance: string, visits: number | undefined, key: string | undefined }

/** The walk-through's request lines, before and after the SIGKILL announcement. */
function visits (stdout: string): { before: Visit[], after: Visit[], killed: string | undefined } {
  const lines = stdout.split('\n')
  const killAt = lines.findIndex((l) => /^\s*SIGKILL sidecar-\d/.test(l))
  const killed = /SIGKILL sidecar-(\d)/.exec(lines[killAt] ?? '')?.[1]
  const parse = (ls: string[]): Visit[] => ls.flatMap((l) => {
    const m = /^\s*GET (\S+)\s+answered by (instance-\d)\s+(.*)$/.exec(l)
    if (m === null) return []
    const v = /visits=(\d+)/.exec(m[3] ?? '')?.[1]
    return [{ path: m[1] as string, instance: m[2] as string, visits: v === undefined ? undefined : Number(v), key: /cookie key (\S+)/.exec(m[3] ?? '')?.[1] }]
  })
  return { before: parse(lines.slice(0, Math.max(killAt, 0))), after: parse(lines.slice(killAt + 1)), killed: killed === undefined ? undefined : `instance-${killed}` }
}

function assertWalkthrough (t: Test, run: Run): void {
  const where = `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`
  t.equal(run.code, 0, 'the demo exits 0 after the walk-through', { where })
  const { before, after, killed } = visits(run.stdout)
  t.ok(killed, 'it announced the SIGKILL of a sidecar')
  t.same(before.map((v) => v.path), ['/login?user=alice', '/', '/', '/'], 'login, then three visits')
  t.same(before.map((v) => v.visits), [0, 1, 2, 3], 'the visit count goes up')
  t.same(new Set(before.slice(1).map((v) => v.instance)).size, 2, 'round-robin: both instances answered')
  const last = before.at(-1)
  const first = after[0]
  t.equal(last?.instance, killed, 'the sidecar killed is the one that answered the last visit')
  t.equal(first?.path, '/', 'a visit right after the kill')
  t.not(first?.instance, killed, 'answered by the other instance')
  t.equal(first?.visits, 4, 'the session survived the kill: the visit count continues (3 -> 4)')
  t.equal(first?.key, last?.key, 'same session key')
  t.match(run.stdout, /The session survived the crash/)
  t.match(run.stdout, new RegExp(`Restarting sidecar-${String(killed?.slice(-1))}[\\s\\S]*is back \\(pid \\d+\\)`), 'the killed sidecar was restarted')
  const restarted = after.slice(1).filter((v) => v.path === '/')
  t.same(restarted.map((v) => v.visits), restarted.map((_v, i) => 5 + i), 'the count goes on after the restart')
  t.equal(restarted.at(-1)?.instance, killed, 'and the restarted sidecar served the session')
  t.match(run.stdout, /Walk-through complete/)
  t.match(run.stdout, /Stopped\.\n$/, 'it stopped everything before exiting')
  const pids = pidsOf(run.stdout)
  t.ok(pids.length >= 3, 'it announced its child processes by pid')
  t.same(pids.filter(alive), [], 'no child process outlives the demo')
}


t.before(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`)
  buildDemo()
})

t.test('walk-through on real memcached: the session survives kill -9 of its sidecar', { skip: memcachedInstalled() ? false : 'memcached is not installed' }, async (t) => {
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
})

t.test('usage: --help, and a bad --port exits 2 with a message', async (t) => {
  const help = await runDemo(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /--walkthrough-only/)
  const bad = await runDemo(['--port', 'eighty'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /--port must be 0-65535/)
})
