import { createHash } from 'node:crypto'
import { existsSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { chromium, type Browser, type BrowserContext, type Cookie } from 'playwright-core'
import { MemcachedProcess } from '../helpers/memcached.js'
import { HAProxyProcess, SidecarProcess, scratch } from '../helpers/processes.js'
import { b64 } from '../helpers/upstream.js'
import { closeServer, listenOnLoopback } from '../../harness/index.js'

// Issue 8: a real browser. Headless Chromium types into an HTML login form and submits it,
// follows the app's 303, uploads a binary file through a multipart form, and reads the pages it
// is shown, through HAProxy (round-robin) -> two sidecars (the built CLI) -> two app instances.
// The app parses its own request bodies, so every byte of them went through the sidecar.

const CHROMIUM = '/usr/bin/chromium'
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium; .ci/run installs it)`

/** What the app saw of one request. */
interface Seen {
  method: string
  path: string
  contentType: string | undefined
  cookie: string | undefined
  sessionId: string | undefined
}

type Session = Record<string, unknown>

const escape = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
const html = (title: string, body: string): string =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`

async function readBody (req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** The part named `file` of a multipart/form-data body, parsed from the raw bytes. */
function filePart (body: Buffer, contentType: string): { filename: string, data: Buffer } | undefined {
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType)
  const boundary = m?.[1] ?? m?.[2]
  if (boundary === undefined) return undefined
  const delimiter = Buffer.from(`\r\n--${boundary}`)
  let start = body.indexOf(`--${boundary}\r\n`)
  while (start !== -1) {
    const headersEnd = body.indexOf('\r\n\r\n', start)
    if (headersEnd === -1) return undefined
    const headers = body.subarray(start, headersEnd).toString('utf8')
    const end = body.indexOf(delimiter, headersEnd + 4)
    if (end === -1) return undefined
    const filename = /;\s*filename="([^"]*)"/i.exec(headers)?.[1]
    if (/;\s*name="file"/i.test(headers) && filename !== undefined) return { filename, data: body.subarray(headersEnd + 4, end) }
    start = end + 2
  }
  return undefined
}

/**
 * A small app an author would write against the header protocol: a home page counting visits,
 * a login form, an upload form.
 */
class FormApp {
  readonly seen: Seen[] = []
  #server: Server | undefined
  port = 0

  get url (): string { return `http://127.0.0.1:${this.port}` }

  async start (): Promise<this> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        res.statusCode = 500
        res.end(err.message)
      })
    })
    this.#server = server
    this.port = await listenOnLoopback(server)
    return this
  }

  async close (): Promise<void> {
    const server = this.#server
    if (server === undefined) return
    await closeServer(server)
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = req.headers['x-session']
    const session = typeof raw === 'string' ? JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Session : {}
    const sessionId = req.headers['x-session-id']
    const path = new URL(req.url ?? '/', 'http://app').pathname
    this.seen.push({ method: req.method ?? '', path, contentType: req.headers['content-type'], cookie: req.headers.cookie, sessionId: typeof sessionId === 'string' ? sessionId : undefined })
    const user = typeof session.user === 'string' ? session.user : undefined
    const uploads = typeof session.uploads === 'number' ? session.uploads : 0
    const greeting = `<h1 id="greeting">Hello ${escape(user ?? 'stranger')}</h1>`
    const send = (status: number, body: string): void => {
      res.statusCode = status
      res.setHeader('content-type', 'text/html; charset=utf-8')
      res.end(body)
    }
    const route = `${req.method ?? ''} ${path}`
    if (route === 'GET /') {
      const visits = (typeof session.visits === 'number' ? session.visits : 0) + 1
      res.setHeader('X-Session-Merge', b64({ visits }))
      send(200, html('Home', `${greeting}<p id="visits">visit ${visits}</p><p id="uploads">uploads ${uploads}</p>`))
    } else if (route === 'GET /login') {
      send(200, html('Log in', '<form method="post" action="/login"><label>User <input type="text" name="user" autocomplete="off"></label> <button type="submit">Log in</button></form>'))
    } else if (route === 'POST /login') {
      const body = await readBody(req)
      const name = new URLSearchParams(body.toString('utf8')).get('user')
      if (req.headers['content-type'] !== 'application/x-www-form-urlencoded' || name === null || name === '') {
        send(400, html('Bad request', '<p>user missing</p>'))
        return
      }
      res.setHeader('X-Session-Set', b64({ user: name }))
      res.setHeader('X-Session-Regenerate', '1')
      res.setHeader('location', '/')
      send(303, html('See other', '<a href="/">home</a>'))
    } else if (route === 'GET /whoami') {
      send(200, html('Who', greeting)) // changes nothing in the session
    } else if (route === 'GET /upload') {
      send(200, html('Upload', '<form method="post" action="/upload" enctype="multipart/form-data"><input type="file" name="file"> <button type="submit">Upload</button></form>'))
    } else if (route === 'POST /upload') {
      const part = filePart(await readBody(req), req.headers['content-type'] ?? '')
      if (part === undefined) {
        send(400, html('Bad request', '<p>no file part</p>'))
        return
      }
      res.setHeader('X-Session-Merge', b64({ uploads: uploads + 1 }))
      const sha = createHash('sha256').update(part.data).digest('hex')
      send(200, html('Uploaded', `${greeting}<p>Received <span id="filename">${escape(part.filename)}</span>: <span id="size">${part.data.length}</span> bytes, sha256 <span id="sha256">${sha}</span></p><p id="uploads">uploads ${uploads + 1}</p>`))
    } else {
      send(404, html('Not found', '<p>not found</p>'))
    }
  }
}

/** The key field of a format-1 cookie value: 1~<key>~<primary>[~<backup>]~<version>~<mac>. */
const keyOf = (cookie: Cookie): string | undefined => cookie.value.split('~')[1]

t.test('Chromium logs in through a form, uploads a binary file, and keeps its session', { skip, timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = scratch()
  const apps: FormApp[] = []
  const sidecars: SidecarProcess[] = []
  let memcached: MemcachedProcess | undefined
  let lb: HAProxyProcess | undefined
  let browser: Browser | undefined
  // Registered before anything starts and filled as things come up, so a failed start leaks nothing.
  t.teardown(async () => {
    await browser?.close()
    await lb?.kill('SIGKILL')
    for (const s of sidecars) await s.kill('SIGKILL')
    for (const a of apps) await a.close()
    await memcached?.stop()
    cleanup()
  })

  memcached = await MemcachedProcess.start()
  for (let i = 0; i < 2; i++) {
    const app = await new FormApp().start()
    apps.push(app)
    // SidecarProcess writes session.cookie.secure: false (plain http). write: sync, as a
    // browser follows the 303 at once and round-robin sends it to the other sidecar.
    sidecars.push(new SidecarProcess(dir, `sidecar-${i}`, { upstream: app.url, nodes: [memcached.address], write: 'sync' }))
  }
  // Settled, not Promise.all: teardown must not run while one of them is still spawning.
  for (const r of await Promise.allSettled(sidecars.map(async (s) => await s.start()))) if (r.status === 'rejected') throw r.reason
  lb = await new HAProxyProcess(dir, sidecars).start()
  const site = lb.url

  // ~100 KiB of known binary content: every byte value, NULs, and CRLF-dash runs that look like
  // the start of a multipart delimiter.
  const content = Buffer.alloc(100 * 1024)
  for (let i = 0; i < content.length; i++) content[i] = (i * 31 + (i >> 8)) & 0xff
  for (let i = 1000; i < content.length; i += 7919) content.write('\r\n--\0\0\r\n\r\n', i, 'latin1')
  const sha256 = createHash('sha256').update(content).digest('hex')
  const file = join(dir, 'blob with nuls.bin')
  writeFileSync(file, content)
  t.ok(content.includes(0), 'the upload contains NUL bytes')

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 15_000,
    // Playwright gives every launch a fresh temporary profile (--user-data-dir) and removes it
    // on close. The flags keep Chromium off the network it has no use for here.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync']
  })
  const context: BrowserContext = await browser.newContext()
  const page = await context.newPage()
  page.setDefaultTimeout(10_000)
  page.setDefaultNavigationTimeout(10_000)
  const sid = async (): Promise<Cookie | undefined> => (await context.cookies(site)).find((c) => c.name === 'sid')
  const text = async (selector: string): Promise<string | null> => await page.locator(selector).textContent()

  // Anonymous visits: the app's Merge creates a session; its key stays while the version moves.
  const response = await page.goto(`${site}/`)
  t.equal(response?.status(), 200, 'the home page answers')
  t.equal(await text('#greeting'), 'Hello stranger', 'nobody is logged in yet')
  t.equal(await text('#visits'), 'visit 1', 'first visit')
  const anonymous = await sid()
  if (anonymous === undefined) throw new Error('no sid cookie after the first visit')
  t.match(anonymous, { httpOnly: true, secure: false, sameSite: 'Lax', path: '/' }, 'the session cookie is HttpOnly, not Secure on plain http, SameSite=Lax')
  t.equal(await page.evaluate('document.cookie'), '', 'page scripts cannot read the session cookie')
  await page.goto(`${site}/`)
  t.equal(await text('#visits'), 'visit 2', 'the second visit sees the first')
  const visited = await sid()
  t.equal(visited && keyOf(visited), keyOf(anonymous), 'the key is stable across visits')
  t.not(visited?.value, anonymous.value, 'the cookie was reissued with a new version')

  // Log in by typing into the form and clicking the button; the browser follows the 303.
  await page.goto(`${site}/login`)
  await page.locator('input[name=user]').click()
  await page.keyboard.type('Zoë & <Ångström>')
  await page.locator('button[type=submit]').click()
  await page.waitForURL(`${site}/`)
  t.equal(await text('#greeting'), 'Hello Zoë & <Ångström>', 'the page after the redirect greets the user who logged in')
  t.equal(await text('#visits'), 'visit 1', 'X-Session-Set replaced the anonymous data')
  const loggedIn = await sid()
  if (loggedIn === undefined) throw new Error('no sid cookie after login')
  t.not(keyOf(loggedIn), keyOf(anonymous), 'login regenerated the key')
  t.equal(loggedIn.httpOnly, true, 'the regenerated cookie is HttpOnly')
  const seen = apps.flatMap((a) => a.seen)
  const post = seen.find((s) => s.method === 'POST' && s.path === '/login')
  t.equal(post?.contentType, 'application/x-www-form-urlencoded', 'the app got the form as the browser encoded it')
  t.equal(post?.sessionId, keyOf(anonymous), 'the login request carried the anonymous session')
  await page.goto(`${site}/`)
  t.equal(await text('#greeting'), 'Hello Zoë & <Ångström>', 'still logged in on the next visit')
  t.equal(await text('#visits'), 'visit 2', 'the visit after login sees the one before')
  t.equal(keyOf(await sid() ?? loggedIn), keyOf(loggedIn), 'the new key is stable across visits')

  // Upload a binary file through a multipart form.
  await page.goto(`${site}/upload`)
  await page.locator('input[type=file]').setInputFiles(file)
  const uploaded = page.waitForResponse((r) => r.url() === `${site}/upload` && r.request().method() === 'POST')
  await page.locator('button[type=submit]').click()
  t.equal((await uploaded).status(), 200, 'the upload was accepted')
  t.equal(await text('#size'), String(content.length), 'the app received every byte of the file')
  t.equal(await text('#sha256'), sha256, 'byte for byte')
  t.equal(await text('#filename'), 'blob with nuls.bin', 'the file name as the browser sent it')
  t.equal(await text('#greeting'), 'Hello Zoë & <Ångström>', 'the upload request carried the session')
  t.equal(await text('#uploads'), 'uploads 1', 'the first upload is counted')
  await page.goto(`${site}/`)
  t.equal(await text('#greeting'), 'Hello Zoë & <Ångström>', 'still logged in after the upload')
  t.equal(await text('#visits'), 'visit 3', 'the visit count went on')
  t.equal(await text('#uploads'), 'uploads 1', 'the merge from the upload was kept')
  t.equal(keyOf(await sid() ?? loggedIn), keyOf(loggedIn), 'the key did not change after the upload')

  const all = apps.flatMap((a) => a.seen)
  t.ok(all.every((s) => s.cookie === undefined || !/(^|;\s*)sid=/.test(s.cookie)), 'the app never saw the session cookie')
  t.ok(apps.every((a) => a.seen.length > 0), `both instances served the browser (${apps.map((a) => a.seen.length).join(' / ')} requests)`)
})

t.test('with session.cookie.maxAge, a user who keeps browsing stays logged in past maxAge: the sidecar sends the unchanged cookie again', { skip, timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = scratch()
  let memcached: MemcachedProcess | undefined
  let app: FormApp | undefined
  let sidecar: SidecarProcess | undefined
  let browser: Browser | undefined
  t.teardown(async () => {
    await browser?.close()
    await sidecar?.kill('SIGKILL')
    await app?.close()
    await memcached?.stop()
    cleanup()
  })
  memcached = await MemcachedProcess.start()
  app = await new FormApp().start()
  // 4 s: a page every 0.6 s stays well under maxAge / 2 (2 s) apart even on a loaded machine.
  const MAX_AGE = 4
  sidecar = await new SidecarProcess(dir, 'sidecar', { upstream: app.url, nodes: [memcached.address], extra: { session: { cookie: { maxAge: MAX_AGE } } } }).start()
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 15_000, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] })
  const context = await browser.newContext()
  const page = await context.newPage()
  page.setDefaultTimeout(10_000)
  const site = sidecar.url
  await page.goto(`${site}/login`)
  await page.locator('input[name="user"]').fill('ada')
  await Promise.all([page.waitForURL(`${site}/`), page.locator('button[type="submit"]').click()])
  const sid = async (): Promise<Cookie | undefined> => (await context.cookies(site)).find((c) => c.name === 'sid')
  const first = await sid()
  t.ok(first !== undefined && first.expires > 0, 'logged in with a cookie that expires (Max-Age)')
  // Browsing for twice maxAge, a page every 0.6 s that changes nothing in the session: the
  // passing time is what is tested, so the waits are real.
  const started = Date.now()
  let pages = 0
  while (Date.now() - started < MAX_AGE * 2000) {
    await page.waitForTimeout(600)
    await page.goto(`${site}/whoami`)
    pages++
    if (await page.locator('#greeting').textContent() !== 'Hello ada') {
      t.fail(`logged out ${Date.now() - started} ms after the login, on page ${pages}`)
      return
    }
  }
  t.pass(`still logged in after ${pages} pages over ${Date.now() - started} ms (maxAge ${MAX_AGE} s)`)
  const last = await sid()
  t.equal(last?.value, first?.value, 'the same cookie value')
  t.ok((last?.expires ?? 0) > (first?.expires ?? 0) + 1, 'its expiry moved forward')
})
