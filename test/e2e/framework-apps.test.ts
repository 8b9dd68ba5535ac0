import t from 'tap'
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { AppProcess, fails, Jar, PYTHON, readmeSection, ROOT, snippet, type AppCommand } from '../helpers/apps.js'
import { keyOf } from '../helpers/client.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { scratch, SidecarProcess } from '../helpers/processes.js'

// Issue 8: the README's app-author examples are real apps. Each one is copied verbatim from
// README.md, started with its own framework exactly as the README says (on a free port instead
// of 3000), and driven through the built sidecar and a real memcached like a browser would:
// login form, login (regenerated key), visits, a binary multipart upload, logout. Issue 11:
// each comes twice, with the language's helper (session-sidecar/express, clients/python,
// clients/php) and by hand; the pages and what a browser sees are the same.

const SECTION = readmeSection()

interface Framework {
  readonly name: string
  readonly lang: string
  /** The file the README says to save it as. */
  readonly file: string
  /** The snippet's first line, exactly. */
  readonly marker: string
  /** How the README says to start it (on port 3000). */
  readonly readmeCommand: string
  /** Why it cannot run here, or undefined. */
  readonly missing: () => string | undefined
  /** What the README says to put beside the app, besides the framework itself. */
  readonly install: (dir: string) => void
  /** The README's command on `port`. */
  readonly command: AppCommand
}

const node = (helper: boolean) => (dir: string): void => {
  // What `npm install express` (and `session-sidecar`) would give the app: this project's
  // express 5, and this package as built.
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(join(ROOT, 'node_modules', 'express'), join(dir, 'node_modules', 'express'), 'dir')
  if (helper) symlinkSync(ROOT, join(dir, 'node_modules', 'session-sidecar'), 'dir')
}
const copyClient = (path: string) => (dir: string): void => {
  copyFileSync(join(ROOT, 'clients', path), join(dir, path.split('/').pop() as string))
}
const nothing = (): void => {}

const EXPRESS = { lang: 'js', file: 'app.mjs', readmeCommand: 'node app.mjs', missing: () => undefined, command: ((port) => [process.execPath, ['app.mjs'], { PORT: String(port) }]) as AppCommand }
const FLASK = { lang: 'python', file: 'app.py', readmeCommand: 'python3 app.py', missing: () => fails(PYTHON, ['-c', 'import flask']), command: ((port) => [PYTHON, ['app.py'], { PORT: String(port) }]) as AppCommand }
const PHP = { lang: 'php', file: 'app.php', readmeCommand: 'php -S 127.0.0.1:3000 app.php', missing: () => fails('php', ['-v']), command: ((port) => ['php', ['-S', `127.0.0.1:${port}`, 'app.php'], {}]) as AppCommand }

const FRAMEWORKS: Framework[] = [
  { ...EXPRESS, name: 'express with session-sidecar/express', marker: '// app.mjs, with the helper', install: node(true) },
  { ...FLASK, name: 'Flask with session_sidecar.py', marker: '# app.py, with the helper', install: copyClient('python/session_sidecar.py') },
  { ...PHP, name: 'PHP with SessionSidecar.php', marker: '<?php // app.php, with the helper', install: copyClient('php/SessionSidecar.php') },
  { ...EXPRESS, name: 'express by hand', marker: '// app.mjs', install: node(false) },
  { ...FLASK, name: 'Flask by hand', marker: '# app.py', install: nothing },
  { ...PHP, name: 'PHP by hand', marker: '<?php // app.php', install: nothing }
]

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
    const source = snippet(SECTION, fw.lang, fw.marker)
    t.ok(SECTION.includes(fw.readmeCommand), `${fw.name}: the README says to start it with \`${fw.readmeCommand}\``)
    const why = fw.missing()
    const skip = why === undefined ? false : `${fw.name} is not installed here (.ci/run installs it): ${why}`
    t.test(`${fw.name}: ${fw.readmeCommand}`, { skip }, async (t) => {
      const { dir, cleanup } = scratch()
      t.teardown(cleanup)
      writeFileSync(join(dir, fw.file), source)
      fw.install(dir)

      const app = await AppProcess.start(fw.name, dir, fw.command)
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

const noFlask = FLASK.missing()
t.test('a Flask app\'s 64-bit ids and floats come back as it stored them (Python reads JSON numbers exactly; so does the sidecar)', { skip: noFlask === undefined ? false : `Flask is not installed here (.ci/run installs it): ${noFlask}` }, async (t) => {
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  const { dir, cleanup } = scratch()
  t.teardown(cleanup)
  writeFileSync(join(dir, 'app.py'), `import os
from flask import Flask, session
from session_sidecar import SidecarSessionInterface
app = Flask(__name__)
app.session_interface = SidecarSessionInterface()

@app.post("/set")
def set_ids():
    session["user_id"] = 1152921504606846977
    session["price"] = 1.0
    return "ok"

@app.post("/add")
def add():
    session["order_id"] = 18446744073709551615
    return "ok"

@app.get("/")
def show():
    return repr((session.get("user_id"), session.get("price"), session.get("order_id")))

if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", 3000)))
`)
  copyClient('python/session_sidecar.py')(dir)
  const app = await AppProcess.start('Flask', dir, FLASK.command)
  t.teardown(() => app.stop())
  const sidecar = await new SidecarProcess(dir, 'sidecar-numbers', { upstream: app.url, nodes: [m.address] }).start()
  t.teardown(() => sidecar.kill('SIGKILL'))
  const jar = new Jar(sidecar.url)
  t.equal((await jar.send('POST', '/set')).status, 200)
  t.equal((await jar.send('GET', '/')).text, '(1152921504606846977, 1.0, None)', 'a 64-bit id and a float, as stored (Set)')
  t.equal((await jar.send('POST', '/add')).status, 200)
  t.equal((await jar.send('GET', '/')).text, '(1152921504606846977, 1.0, 18446744073709551615)', 'and after a change (Merge)')
})
