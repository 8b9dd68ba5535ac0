import t from 'tap'
import { copyFileSync, mkdirSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { AppProcess, fails, Jar, PYTHON, ROOT, type AppCommand } from '../helpers/apps.js'
import { keyOf } from '../helpers/client.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { scratch, SidecarProcess } from '../helpers/processes.js'
import { recorder, sessionHeaders, storedData } from '../helpers/recorder.js'

// Issue 11, part 4: the drop-in helpers (session-sidecar/express; clients/python for Flask
// and for a bare WSGI app; clients/php), each in a real framework process behind the built
// sidecar and a real memcached. A recording proxy between the sidecar and the app keeps the
// session headers the app sent, so the test sees that each change went out as the smallest
// merge; memcached's copy shows what the sidecar stored.

const APPS = join(ROOT, 'test', 'helpers', 'client-apps')

interface Helper {
  readonly name: string
  /** Why it cannot run here, or undefined. */
  readonly missing: () => string | undefined
  /** Puts the app and the helper in `dir`, as an app author would. */
  readonly install: (dir: string) => void
  readonly command: AppCommand
}

/** A Python app (Debian's python3) with session_sidecar.py beside it. */
function python (name: string, app: string, probe: string): Helper {
  return {
    name,
    missing: () => fails(PYTHON, ['-c', probe]),
    install: (dir) => {
      copyFileSync(join(APPS, app), join(dir, 'app.py'))
      copyFileSync(join(ROOT, 'clients', 'python', 'session_sidecar.py'), join(dir, 'session_sidecar.py'))
    },
    command: (port) => [PYTHON, ['app.py'], { PORT: String(port) }]
  }
}

const HELPERS: Helper[] = [
  {
    name: 'express + session-sidecar/express',
    missing: () => undefined,
    install: (dir) => {
      copyFileSync(join(APPS, 'express-app.mjs'), join(dir, 'app.mjs'))
      // What `npm install express session-sidecar` would give the app (session-sidecar built).
      mkdirSync(join(dir, 'node_modules'))
      symlinkSync(join(ROOT, 'node_modules', 'express'), join(dir, 'node_modules', 'express'), 'dir')
      symlinkSync(ROOT, join(dir, 'node_modules', 'session-sidecar'), 'dir')
    },
    command: (port) => [process.execPath, ['app.mjs'], { PORT: String(port) }]
  },
  python('Flask + clients/python/session_sidecar.py', 'flask_app.py', 'import flask'),
  python('WSGI (wsgiref) + clients/python/session_sidecar.py\'s middleware', 'wsgi_app.py', 'import wsgiref'),
  {
    name: 'PHP + clients/php/SessionSidecar.php',
    missing: () => fails('php', ['-v']),
    install: (dir) => {
      copyFileSync(join(APPS, 'php-app.php'), join(dir, 'app.php'))
      copyFileSync(join(ROOT, 'clients', 'php', 'SessionSidecar.php'), join(dir, 'SessionSidecar.php'))
    },
    command: (port) => ['php', ['-S', `127.0.0.1:${port}`, 'app.php'], {}]
  }
]

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** One request to the app itself (no sidecar), with the session headers the sidecar would add. */
async function direct (app: AppProcess, path: string, headers: Record<string, string>): Promise<{ seen: unknown, sent: Record<string, string> }> {
  const res = await fetch(app.url + path, { headers })
  return { seen: await res.json(), sent: sessionHeaders(Object.fromEntries(res.headers)) }
}

t.test('the client helpers in real framework processes, behind the built sidecar and memcached', async (t) => {
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())

  for (const helper of HELPERS) {
    const why = helper.missing()
    const skip = why === undefined ? false : `not installed here (.ci/run installs it): ${why}`
    t.test(helper.name, { skip }, async (t) => {
      const { dir, cleanup } = scratch()
      t.teardown(cleanup)
      helper.install(dir)
      const app = await AppProcess.start(helper.name, dir, helper.command, '/show')
      t.teardown(() => app.stop())
      const rec = await recorder(t, app.url)
      const sidecar = await new SidecarProcess(dir, 'sidecar', { upstream: rec.url, nodes: [m.address], write: 'sync' }).start()
      t.teardown(() => sidecar.kill('SIGKILL'))
      const jar = new Jar(sidecar.url)

      /** A request through the sidecar: what the app saw, and the session headers it sent. */
      const step = async (path: string): Promise<{ seen: any, sent: Record<string, string> }> => {
        const before = rec.sent.length
        const res = await jar.send('GET', path)
        t.equal(res.status, 200, `GET ${path}: 200`)
        t.equal(rec.sent.length, before + 1, `GET ${path}: one request reached the app`)
        return { seen: JSON.parse(res.text), sent: rec.sent[before] ?? {} }
      }
      /** The data memcached holds for the cookie's session, or `ended`. */
      const stored = async (key = keyOf(jar.sid)): Promise<unknown> => await storedData(m, key)

      let r = await step('/show')
      t.same(r.seen, { session: {}, id: null, unavailable: false }, 'no session: an empty one')
      t.same(r.sent, {}, 'read only: the app sent no session header')
      t.equal(jar.sid, undefined, 'and no session was made')

      r = await step('/visit')
      t.same(r.sent, { 'x-session-merge': '{"visits":1}' }, 'a visit: the merge of the one member')
      const anonymous = keyOf(jar.sid)
      t.equal(anonymous.length, 22, 'which made a session')
      t.same(await stored(), { visits: 1 }, 'stored in memcached')
      r = await step('/visit')
      t.same(r.sent, { 'x-session-merge': '{"visits":2}' }, 'the second visit: only the counter')

      r = await step('/login?user=alice')
      t.same(r.seen, { session: { visits: 2 }, id: anonymous, unavailable: false }, 'login: the app saw the session and its key')
      t.same(r.sent, { 'x-session-merge': '{"user":"alice","prefs":{"theme":"light","lang":"en"}}', 'x-session-regenerate': '1' }, 'login: the merge of what it added, and Regenerate')
      const loggedIn = keyOf(jar.sid)
      t.not(loggedIn, anonymous, 'a new key')
      t.same(await stored(), { visits: 2, user: 'alice', prefs: { theme: 'light', lang: 'en' } }, 'the new key holds the data, the login merged in')
      t.equal(await stored(anonymous), 'ended', 'the old key has a tombstone')

      r = await step('/theme?theme=dark')
      t.same(r.sent, { 'x-session-merge': '{"prefs":{"theme":"dark"}}' }, 'a nested change: only that member')
      t.same(await stored(), { visits: 2, user: 'alice', prefs: { theme: 'dark', lang: 'en' } }, 'stored, the nested sibling kept')

      r = await step('/forget')
      t.same(r.sent, { 'x-session-merge': '{"visits":null}' }, 'a member deleted: null for it')
      t.same(await stored(), { user: 'alice', prefs: { theme: 'dark', lang: 'en' } }, 'gone from the stored data')

      r = await step('/note')
      t.same(r.sent, { 'x-session-set': '{"user":"alice","prefs":{"theme":"dark","lang":"en"},"note":null}' }, 'a member set to null: a merge cannot say it, the whole data as a Set')
      t.same(await stored(), { user: 'alice', prefs: { theme: 'dark', lang: 'en' }, note: null }, 'stored with the null')

      r = await step('/show')
      t.same(r.seen, { session: { user: 'alice', prefs: { theme: 'dark', lang: 'en' }, note: null }, id: loggedIn, unavailable: false }, 'the next request sees it all')
      t.same(r.sent, {}, 'and, changing nothing, sends nothing')
      t.equal(keyOf(jar.sid), loggedIn, 'same key throughout')

      r = await step('/logout')
      t.same(r.sent, { 'x-session-destroy': '1' }, 'logout: Destroy alone')
      t.equal(jar.sid, undefined, 'the cookie is cleared')
      t.equal(await stored(loggedIn), 'ended', 'memcached holds a tombstone')
      r = await step('/show')
      t.same(r.seen, { session: {}, id: null, unavailable: false }, 'after logout: no session')

      // What the sidecar cannot easily be made to send here: a session memcached could not
      // produce in time, and a stored `{}`; the app is asked directly with the same headers.
      const unavailable = { 'x-session-unavailable': '1' }
      let d = await direct(app, '/show', unavailable)
      t.same(d.seen, { session: {}, id: null, unavailable: true }, 'X-Session-Unavailable: 1 reaches the app')
      d = await direct(app, '/login?user=bob', unavailable)
      t.same(d.sent, { 'x-session-set': '{"user":"bob","prefs":{"theme":"light","lang":"en"}}', 'x-session-regenerate': '1' }, 'a login while unavailable: Set of the whole data and Regenerate (a merge would be refused)')
      d = await direct(app, '/reset', unavailable)
      t.same(d.sent, { 'x-session-set': '{}', 'x-session-regenerate': '1' }, 'an empty session is sent as {}, never []')
      d = await direct(app, '/visit', { 'x-session': b64({ prefs: {}, list: [], obj: { 0: 'a', 1: 'b' }, n: 1.5 }), 'x-session-id': 'k'.repeat(22) })
      t.same(d.sent, { 'x-session-merge': '{"visits":1}' }, 'empty objects, empty arrays and {"0": ...} objects are not mistaken for changes')

      t.equal(app.running, true, `${helper.name}: still running`)
    })
  }
})
