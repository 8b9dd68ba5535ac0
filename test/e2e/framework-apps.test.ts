import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { keyOf, parseSetCookieLine } from '../helpers/client.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { freePort, until } from '../helpers/ports.js'
import { scratch, SidecarProcess } from '../helpers/processes.js'

// Issue 8: the README's app-author examples are real apps. Each one is copied verbatim from
// README.md, started with its own framework exactly as the README says (on a free port instead
// of 3000), and driven through the built sidecar and a real memcached like a browser would:
// login form, login (regenerated key), visits, a binary multipart upload, logout.

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const README = readFileSync(join(ROOT, 'README.md'), 'utf8')

/** The README section the snippets live in: from its heading to the next `## ` heading. */
const SECTION = ((): string => {
  const start = README.indexOf('## For app authors')
  const end = README.indexOf('\n## ', start + 1)
  if (start < 0 || end < 0) throw new Error('README.md: no "## For app authors" section')
  return README.slice(start, end)
})()

/** The fenced block of `lang` in that section whose first line names `file` (the marker). */
function snippet (lang: string, file: string): string {
  for (const m of SECTION.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)) {
    const body = m[2] ?? ''
    if (m[1] === lang && (body.split('\n')[0] ?? '').includes(file)) return body
  }
  throw new Error(`README.md: no \`\`\`${lang} block starting with a line naming ${file}`)
}

interface Framework {
  readonly name: string
  readonly lang: string
  readonly file: string
  /** How the README says to start it (on port 3000). */
  readonly readmeCommand: string
  /** Why it cannot run here, or undefined. */
  readonly missing: () => string | undefined
  /** The README's command on `port`: [command, args, extra env]. */
  readonly command: (port: number) => [string, string[], NodeJS.ProcessEnv]
}

/** Runs a probe command; its output when it fails (undefined when it succeeds). */
function fails (command: string, args: string[]): string | undefined {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 })
  if (r.error !== undefined) return r.error.message
  return r.status === 0 ? undefined : `${command} ${args.join(' ')} exited ${String(r.status)}: ${r.stderr.trim()}`
}

// Debian's python3-flask lives with /usr/bin/python3; a python3 earlier on PATH (pyenv) may lack it.
const PYTHON = '/usr/bin/python3'

const FRAMEWORKS: Framework[] = [
  {
    name: 'express',
    lang: 'js',
    file: 'app.mjs',
    readmeCommand: 'node app.mjs',
    missing: () => undefined,
    command: (port) => [process.execPath, ['app.mjs'], { PORT: String(port) }]
  },
  {
    name: 'Flask',
    lang: 'python',
    file: 'app.py',
    readmeCommand: 'python3 app.py',
    missing: () => fails(PYTHON, ['-c', 'import flask']),
    command: (port) => [PYTHON, ['app.py'], { PORT: String(port) }]
  },
  {
    name: 'PHP',
    lang: 'php',
    file: 'app.php',
    readmeCommand: 'php -S 127.0.0.1:3000 app.php',
    missing: () => fails('php', ['-v']),
    command: (port) => ['php', ['-S', `127.0.0.1:${port}`, 'app.php'], {}]
  }
]

/** An app server started in `dir`; `stop` kills it by pid. */
class AppProcess {
  output = ''
  failed = false

  private constructor (readonly child: ChildProcess, readonly port: number) {
    child.stdout?.on('data', (c: Buffer) => { this.output += c.toString() })
    child.stderr?.on('data', (c: Buffer) => { this.output += c.toString() })
  }

  get url (): string { return `http://127.0.0.1:${this.port}` }
  get running (): boolean { return !this.failed && this.child.exitCode === null && this.child.signalCode === null }

  /** Starts the app on a free port and waits until it answers; a new port if that one was taken. */
  static async start (fw: Framework, dir: string): Promise<AppProcess> {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort()
      const [command, args, env] = fw.command(port)
      const app = new AppProcess(spawn(command, args, { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }), port)
      // A process that could not be spawned emits 'error' and may never emit 'exit'.
      const exited = new Promise<void>((resolve) => {
        app.child.once('exit', () => resolve())
        app.child.once('error', (err) => { app.output += String(err); app.failed = true; resolve() })
      })
      try {
        await until(async () => {
          if (!app.running) throw new Error(`${fw.name} exited: ${app.output}`)
          return await fetch(`${app.url}/login`).then(() => true, () => false)
        }, 15_000, `${fw.name} on port ${port}`)
        return app
      } catch (err) {
        await app.stop()
        await exited
        if (attempt >= 3 || !/in use/i.test(app.output)) throw err
      }
    }
  }

  async stop (): Promise<void> {
    if (!this.running || this.child.pid === undefined) return
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    process.kill(this.child.pid, 'SIGKILL')
    await exited
  }
}

/** A browser's cookie jar on one site; redirects are not followed, so each hop is visible. */
class Jar {
  readonly cookies = new Map<string, string>()

  constructor (readonly base: string) {}

  get sid (): string | undefined { return this.cookies.get('sid') }

  async send (method: string, path: string, body?: FormData | URLSearchParams): Promise<{ status: number, text: string, location: string | null, setCookie: string[] }> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    const res = await fetch(this.base + path, { method, body, redirect: 'manual', headers: cookie === '' ? {} : { cookie } })
    const setCookie = res.headers.getSetCookie()
    for (const c of setCookie.map(parseSetCookieLine)) {
      const expires = c.attributes.expires
      const gone = c.value === '' || c.attributes['max-age'] === '0' || (typeof expires === 'string' && Date.parse(expires) <= Date.now())
      if (gone) this.cookies.delete(c.name)
      else this.cookies.set(c.name, c.value)
    }
    return { status: res.status, text: await res.text(), location: res.headers.get('location'), setCookie }
  }

  async visit (): Promise<{ who: string, visits: number }> {
    const res = await this.send('GET', '/')
    const m = /<p>(Logged in as (\S+)|Not logged in)\. Visits: (\d+)<\/p>/.exec(res.text)
    if (res.status !== 200 || m === null) throw new Error(`GET / answered ${res.status}: ${res.text}`)
    return { who: m[2] ?? '', visits: Number(m[3]) }
  }
}

/** Some binary content: every byte value, NUL bytes in a row, and a CRLF boundary look-alike. */
const FILE = Buffer.concat([
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
  Buffer.alloc(1000),
  Buffer.from('\r\n--not-a-boundary\r\n\0\0'),
  Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 256))
])

t.test('the README\'s app-author examples run as written behind the built sidecar', async (t) => {
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())

  for (const fw of FRAMEWORKS) {
    const source = snippet(fw.lang, fw.file)
    t.ok(SECTION.includes(fw.readmeCommand), `${fw.name}: the README says to start it with \`${fw.readmeCommand}\``)
    const why = fw.missing()
    const skip = why === undefined ? false : `${fw.name} is not installed here (.ci/run installs it): ${why}`
    t.test(`${fw.name}: ${fw.readmeCommand}`, { skip }, async (t) => {
      const { dir, cleanup } = scratch()
      t.teardown(cleanup)
      writeFileSync(join(dir, fw.file), source)
      // What `npm install express` would give the app: this project's node_modules (express 5).
      if (fw.lang === 'js') symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')

      const app = await AppProcess.start(fw, dir)
      t.teardown(() => app.stop())
      const sidecar = await new SidecarProcess(dir, `sidecar-${fw.lang}`, { upstream: app.url, nodes: [m.address] }).start()
      t.teardown(() => sidecar.kill('SIGKILL'))
      const jar = new Jar(sidecar.url)

      t.same(await jar.visit(), { who: '', visits: 1 }, 'first visit: not logged in, visit 1')
      const anonymous = keyOf(jar.sid)
      t.equal(anonymous.length, 22, 'the visit counter created a session')
      t.same(await jar.visit(), { who: '', visits: 2 }, 'the counter goes up before login too')

      const form = await jar.send('GET', '/login')
      t.equal(form.status, 200, 'GET /login')
      t.match(form.text, /<form method=post action=\/login><input name=user>/, 'is a login form posting a user field')

      const login = await jar.send('POST', '/login', new URLSearchParams({ user: 'alice' }))
      t.equal(login.status, 303, 'POST /login redirects (303)')
      t.equal(login.location, '/', 'to /')
      t.equal(login.setCookie.length, 1, 'with one Set-Cookie')
      const loggedIn = keyOf(jar.sid)
      t.equal(loggedIn.length, 22, 'holding a session key')
      t.not(loggedIn, anonymous, 'a new one (X-Session-Regenerate)')

      t.same(await jar.visit(), { who: 'alice', visits: 1 }, 'following the redirect: logged in, the counter restarts (X-Session-Set replaced the data)')
      t.same(await jar.visit(), { who: 'alice', visits: 2 }, 'visit 2')
      t.same(await jar.visit(), { who: 'alice', visits: 3 }, 'visit 3')

      for (const n of [1, 2]) {
        const body = new FormData()
        body.append('file', new Blob([FILE]), `data-${n}.bin`)
        const upload = await jar.send('POST', '/upload', body)
        t.equal(upload.status, 200, `upload ${n}: 200`)
        t.equal(upload.text, `data-${n}.bin: ${FILE.length} bytes, upload ${n}`, `upload ${n}: the app got the whole file, NUL bytes and all, and counted it in the session`)
      }
      t.equal(keyOf(jar.sid), loggedIn, 'uploads keep the session key')
      t.same(await jar.visit(), { who: 'alice', visits: 4 }, 'still logged in after the uploads, the counter kept')

      const before = jar.sid
      const logout = await jar.send('POST', '/logout')
      t.equal(logout.status, 303, 'POST /logout redirects (303)')
      t.equal(logout.location, '/', 'to /')
      t.equal(logout.setCookie.length, 1, 'with one Set-Cookie')
      t.equal(jar.sid, undefined, 'which clears the session cookie')
      t.same(await jar.visit(), { who: '', visits: 1 }, 'next visit: not logged in, a fresh counter')
      t.not(keyOf(jar.sid), loggedIn, 'in a new session')

      const replay = new Jar(sidecar.url)
      replay.cookies.set('sid', before ?? '')
      t.same(await replay.visit(), { who: '', visits: 1 }, 'the logged-out cookie, sent again, is no session')

      t.equal(app.running, true, `${fw.name} still running`)
    })
  }
})
