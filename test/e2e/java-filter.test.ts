import t, { type Test } from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fails, Jar, readmeSection, ROOT, snippet } from '../helpers/apps.js'
import { keyOf } from '../helpers/client.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { freePort, until } from '../../harness/index.js'
import { scratch, SidecarProcess } from '../helpers/processes.js'
import { recorder, sessionHeaders, storedData } from '../helpers/recorder.js'

// Issue 11, part 4, Java: clients/java/SessionSidecarFilter.java in a real Tomcat 10 (Debian's,
// started with catalina.sh run on a CATALINA_BASE of its own), mapped by the README's web.xml
// snippet in front of a servlet that uses request.getSession() as any Tomcat app does
// (test/helpers/client-apps/java/SessionApp.java), behind the built sidecar and a real
// memcached. A recording proxy between the sidecar and Tomcat keeps the session headers the
// filter sent, so the test sees each change go out as the smallest merge.

const CATALINA_HOME = '/usr/share/tomcat10'
const CATALINA_SH = join(CATALINA_HOME, 'bin', 'catalina.sh')
const SERVLET_API = join(CATALINA_HOME, 'lib', 'servlet-api.jar')
const JACKSON = ['jackson-databind', 'jackson-core', 'jackson-annotations'].map((name) => `/usr/share/java/${name}.jar`)
const APP = join(ROOT, 'test', 'helpers', 'client-apps', 'java')
// A busy CI machine starts a JVM slowly: generous, but bounded.
const TOMCAT_START_MS = 45_000

function missing (): string | undefined {
  const javac = fails('javac', ['-version'])
  if (javac !== undefined) return javac
  return [CATALINA_SH, SERVLET_API, ...JACKSON].find((file) => !existsSync(file))
}

/** The webapp as an app author lays it out: classes compiled with javac, jackson in WEB-INF/lib, the README's filter in web.xml. */
function buildWebapp (dir: string): void {
  const webInf = join(dir, 'WEB-INF')
  mkdirSync(join(webInf, 'classes'), { recursive: true })
  mkdirSync(join(webInf, 'lib'))
  // Copies, not links: Tomcat does not follow a link out of the webapp (allowLinking is off).
  for (const jar of JACKSON) copyFileSync(jar, join(webInf, 'lib', basename(jar)))
  const javac = spawnSync('javac', ['-cp', [SERVLET_API, ...JACKSON].join(':'), '-d', join(webInf, 'classes'),
    join(ROOT, 'clients', 'java', 'SessionSidecarFilter.java'), join(APP, 'SessionApp.java')], { encoding: 'utf8', timeout: 60_000 })
  if (javac.status !== 0) throw new Error(`javac failed: ${javac.stderr}${javac.error?.message ?? ''}`)
  const filter = snippet(readmeSection(), 'xml', '<!-- WEB-INF/web.xml, with the helper -->')
  const webXml = readFileSync(join(APP, 'web.xml'), 'utf8').replace('<!-- README: the filter -->', filter)
  writeFileSync(join(webInf, 'web.xml'), webXml)
}

/** Tomcat 10 on a free loopback port, no shutdown port; killed by pid at teardown. */
async function startTomcat (t: Test, base: string): Promise<string> {
  for (const sub of ['conf', 'logs', 'temp', 'work']) mkdirSync(join(base, sub), { recursive: true })
  // Tomcat scans jars for TLDs and annotations and starts JSP and WebSocket support: the app
  // needs none of it, and on a busy machine it costs seconds.
  writeFileSync(join(base, 'conf', 'context.xml'), `<Context containerSciFilter="JasperInitializer|WsSci">
  <JarScanner scanClassPath="false" scanManifest="false"><JarScanFilter defaultPluggabilityScan="false" defaultTldScan="false" /></JarScanner>
</Context>
`)
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    writeFileSync(join(base, 'conf', 'server.xml'), `<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector address="127.0.0.1" port="${port}" protocol="HTTP/1.1" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
`)
    let output = ''
    const child: ChildProcess = spawn(CATALINA_SH, ['run'], {
      cwd: base,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        CATALINA_HOME,
        CATALINA_BASE: base,
        // Exit when the connector cannot bind (Tomcat would otherwise run on without it).
        JAVA_OPTS: '-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dorg.apache.catalina.startup.EXIT_ON_INIT_FAILURE=true'
      }
    })
    child.stdout?.on('data', (c: Buffer) => { output += c.toString() })
    child.stderr?.on('data', (c: Buffer) => { output += c.toString() })
    const exited = new Promise<void>((resolve) => { child.once('exit', () => resolve()); child.once('error', (err) => { output += String(err); resolve() }) })
    let done = false
    void exited.then(() => { done = true })
    const stop = async (): Promise<void> => {
      if (done || child.pid === undefined) return
      process.kill(child.pid, 'SIGKILL') // catalina.sh run execs java: this pid is Tomcat's
      await exited
    }
    t.teardown(stop)
    const url = `http://127.0.0.1:${port}`
    try {
      await until(async () => {
        if (done) throw new Error(`Tomcat exited: ${output}`)
        return await fetch(`${url}/show`).then(() => true, () => false)
      }, TOMCAT_START_MS, `Tomcat on port ${port}`)
      return url
    } catch (err) {
      await stop()
      if (attempt >= 3 || !/in use/i.test(output)) throw err
    }
  }
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

const why = missing()
t.test('the servlet filter in a real Tomcat 10, behind the built sidecar and memcached', { skip: why === undefined ? false : `not installed here (.ci/run installs it): ${why}` }, async (t) => {
  const { dir, cleanup } = scratch()
  t.teardown(cleanup)
  const m = await MemcachedProcess.start()
  t.teardown(() => m.stop())
  buildWebapp(join(dir, 'tomcat', 'webapps', 'ROOT'))
  const tomcat = await startTomcat(t, join(dir, 'tomcat'))
  const rec = await recorder(t, tomcat)
  const sidecar = await new SidecarProcess(dir, 'sidecar', { upstream: rec.url, nodes: [m.address], write: 'sync' }).start()
  t.teardown(() => sidecar.kill('SIGKILL'))
  const jar = new Jar(sidecar.url)
  const setCookies: string[] = []

  /** A request through a sidecar: what the servlet saw, and the session headers the filter sent. */
  const step = async (path: string, status = 200, via = jar): Promise<{ seen: any, sent: Record<string, string>, location: string | null }> => {
    const before = rec.sent.length
    const res = await via.send('GET', path)
    setCookies.push(...res.setCookie)
    t.equal(res.status, status, `GET ${path}: ${status}`)
    t.equal(rec.sent.length, before + 1, `GET ${path}: one request reached Tomcat`)
    return { seen: status === 200 ? JSON.parse(res.text) : undefined, sent: rec.sent[before] ?? {}, location: res.location }
  }
  /** The data memcached holds for the cookie's session, or `ended`. */
  const stored = async (key = keyOf(jar.sid)): Promise<unknown> => await storedData(m, key)
  const none = { session: {}, id: null, unavailable: false, tomcatSession: false }

  let r = await step('/show')
  t.same(r.seen, none, 'no session: getSession(false) is null')
  t.same(r.sent, {}, 'read only: the filter sent no session header')
  t.equal(jar.sid, undefined, 'and no session was made')

  r = await step('/visit')
  t.same(r.sent, { 'x-session-merge': '{"visits":1}' }, 'a visit: the merge of the one attribute')
  const anonymous = keyOf(jar.sid)
  t.equal(anonymous.length, 22, 'which made a session')
  t.same(await stored(), { visits: 1 }, 'stored in memcached')
  r = await step('/visit')
  t.same(r.seen.session, { visits: 1 }, 'the next request sees the count')
  t.same(r.sent, { 'x-session-merge': '{"visits":2}' }, 'the second visit: only the counter')

  r = await step('/login?user=alice')
  t.same(r.seen, { session: { visits: 2 }, id: anonymous, unavailable: false, tomcatSession: false }, 'login: the servlet saw the session and its key')
  t.same(r.sent, { 'x-session-merge': '{"user":"alice","prefs":{"theme":"light","lang":"en"}}', 'x-session-regenerate': '1' }, 'login: the merge of what it added, and Regenerate for changeSessionId()')
  const loggedIn = keyOf(jar.sid)
  t.not(loggedIn, anonymous, 'a new key')
  t.same(await stored(), { visits: 2, user: 'alice', prefs: { theme: 'light', lang: 'en' } }, 'the new key holds the data, the login merged in')
  t.equal(await stored(anonymous), 'ended', 'the old key has a tombstone')

  // A second sidecar with an empty cache: the login must come from memcached.
  const cold = await new SidecarProcess(dir, 'cold', { upstream: rec.url, nodes: [m.address], write: 'sync' }).start()
  t.teardown(() => cold.kill('SIGKILL'))
  const coldJar = new Jar(cold.url)
  const copyCookies = (from: Jar, to: Jar): void => { to.cookies.clear(); for (const [k, v] of from.cookies) to.cookies.set(k, v) }
  copyCookies(jar, coldJar)
  r = await step('/show', 200, coldJar)
  t.same(r.seen, { session: { visits: 2, user: 'alice', prefs: { theme: 'light', lang: 'en' } }, id: loggedIn, unavailable: false, tomcatSession: false }, 'a cold sidecar loads the login from memcached')

  r = await step('/theme?theme=dark')
  t.same(r.sent, { 'x-session-merge': '{"prefs":{"theme":"dark"}}' }, 'a Map changed in place: only that member')
  t.same(await stored(), { visits: 2, user: 'alice', prefs: { theme: 'dark', lang: 'en' } }, 'stored, the nested sibling kept')

  r = await step('/forget')
  t.same(r.sent, { 'x-session-merge': '{"visits":null}' }, 'removeAttribute: null for it')
  t.same(await stored(), { user: 'alice', prefs: { theme: 'dark', lang: 'en' } }, 'gone from the stored data')

  // Visits through one sidecar, then the other: each loads the other's change (the cookie's version).
  const counts: number[] = []
  for (const via of [jar, coldJar, jar]) {
    if (via === coldJar) copyCookies(jar, coldJar)
    r = await step('/visit', 200, via)
    if (via === coldJar) copyCookies(coldJar, jar)
    counts.push((r.seen.session.visits ?? 0) + 1)
    t.same(r.sent, { 'x-session-merge': `{"visits":${counts.length}}` }, `visit ${counts.length}: only the counter`)
  }
  t.same(counts, [1, 2, 3], 'the count goes on across requests and sidecars')

  r = await step('/cart')
  t.same(JSON.parse(r.sent['x-session-merge'] ?? 'null'), { cart: ['tea', { item: 'cup', n: 2 }] }, 'a List: sent whole')

  r = await step('/refuse')
  t.match(r.seen.refused, /^session attribute "since" is a java\.util\.Date, which the sidecar cannot keep/, 'a value JSON cannot hold: setAttribute refuses it')
  t.same(r.sent, {}, 'and nothing is sent')

  r = await step('/late')
  t.same(r.sent, {}, 'a change after the body was flushed: not sent (the headers were gone)')
  const data = { user: 'alice', prefs: { theme: 'dark', lang: 'en' }, visits: 3, cart: ['tea', { item: 'cup', n: 2 }] }
  t.same(await stored(), data, 'stored data unchanged by the refused and the late changes')

  r = await step('/show')
  t.same(r.seen, { session: data, id: loggedIn, unavailable: false, tomcatSession: false }, 'the next request sees it all')
  t.same(r.sent, {}, 'and, changing nothing, sends nothing')
  t.equal(keyOf(jar.sid), loggedIn, 'same key since the login')

  r = await step('/logout', 302)
  t.equal(r.location, '/show', 'logout: sendRedirect')
  t.same(r.sent, { 'x-session-destroy': '1' }, 'invalidate(): Destroy alone, sent before the redirect')
  t.equal(jar.sid, undefined, 'the cookie is cleared')
  t.equal(await stored(loggedIn), 'ended', 'memcached holds a tombstone')
  r = await step('/show')
  t.same(r.seen, none, 'after logout: no session')

  r = await step('/relogin?user=bob')
  t.same(r.sent, { 'x-session-merge': '{"user":"bob"}' }, 'no session to invalidate: a new one, its merge')
  const bob = keyOf(jar.sid)
  r = await step('/relogin?user=carol')
  t.same(r.sent, { 'x-session-set': '{"user":"carol"}', 'x-session-regenerate': '1' }, 'invalidate then a new session: the new data under a new key')
  t.not(keyOf(jar.sid), bob, 'a new key')
  t.same(await stored(), { user: 'carol' }, 'holding only the new data')
  t.equal(await stored(bob), 'ended', 'the old key has a tombstone')

  t.same(setCookies.filter((c) => /^JSESSIONID=/i.test(c)), [], 'Tomcat never set its own session cookie')
  t.same([...jar.cookies.keys()], ['sid'], 'the browser holds only the sidecar\'s cookie')

  // What the sidecar cannot easily be made to send here: a session memcached could not
  // produce in time; Tomcat is asked directly with the same headers.
  const direct = async (path: string, headers: Record<string, string>): Promise<{ seen: unknown, sent: Record<string, string> }> => {
    const res = await fetch(tomcat + path, { headers })
    return { seen: await res.json(), sent: sessionHeaders(Object.fromEntries(res.headers)) }
  }
  const unavailable = { 'x-session-unavailable': '1' }
  let d = await direct('/show', unavailable)
  t.same(d.seen, { ...none, unavailable: true }, 'X-Session-Unavailable: 1 reaches the servlet (isUnavailable)')
  d = await direct('/login?user=bob', unavailable)
  t.same(d.sent, { 'x-session-set': '{"user":"bob","prefs":{"theme":"light","lang":"en"}}', 'x-session-regenerate': '1' }, 'a login while unavailable: Set of the whole data and Regenerate (a merge would be refused)')
  d = await direct('/reset', unavailable)
  t.same(d.sent, { 'x-session-set': '{}', 'x-session-regenerate': '1' }, 'an empty session is sent as {}')
  d = await direct('/visit', { 'x-session': b64({ prefs: {}, list: [], obj: { 0: 'a', 1: 'b' }, n: 1.5, big: 12345678901234 }), 'x-session-id': 'k'.repeat(22) })
  t.same(d.sent, { 'x-session-merge': '{"visits":1}' }, 'empty maps and lists, decimals and longs are not mistaken for changes')
})
