import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseSetCookieLine } from './client.js'
import { ROOT, freePort, until } from '../../harness/index.js'

// Real app servers in other languages and frameworks (the README's examples, the client
// helpers' test apps), started as their authors would, and a browser-like client for them.

export { ROOT }

// Debian's python3-flask lives with /usr/bin/python3; a python3 earlier on PATH (pyenv) may lack it.
export const PYTHON = '/usr/bin/python3'

/** The README section the app-author snippets live in: from its heading to the next `## ` heading. */
export function readmeSection (heading = '## For app authors'): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const start = readme.indexOf(heading)
  const end = readme.indexOf('\n## ', start + 1)
  if (start < 0 || end < 0) throw new Error(`README.md: no "${heading}" section`)
  return readme.slice(start, end)
}

/** The fenced block of `lang` in `section` whose first line is exactly `marker`. */
export function snippet (section: string, lang: string, marker: string): string {
  for (const m of section.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)) {
    const body = m[2] ?? ''
    if (m[1] === lang && (body.split('\n')[0] ?? '').trim() === marker) return body
  }
  throw new Error(`README.md: no \`\`\`${lang} block whose first line is ${marker}`)
}

/** Runs a probe command; its output when it fails (undefined when it succeeds). */
export function fails (command: string, args: string[]): string | undefined {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 })
  if (r.error !== undefined) return r.error.message
  return r.status === 0 ? undefined : `${command} ${args.join(' ')} exited ${String(r.status)}: ${r.stderr.trim()}`
}

/** How to start an app on a port: [command, args, extra env]. */
export type AppCommand = (port: number) => [string, string[], NodeJS.ProcessEnv]

/** An app server started in a folder; `stop` kills it by pid. */
export class AppProcess {
  output = ''
  failed = false

  private constructor (readonly child: ChildProcess, readonly port: number) {
    child.stdout?.on('data', (c: Buffer) => { this.output += c.toString() })
    child.stderr?.on('data', (c: Buffer) => { this.output += c.toString() })
  }

  get url (): string { return `http://127.0.0.1:${this.port}` }
  get running (): boolean { return !this.failed && this.child.exitCode === null && this.child.signalCode === null }

  /** Starts the app on a free port and waits until `probe` answers; a new port if that one was taken. */
  static async start (name: string, dir: string, command: AppCommand, probe = '/login'): Promise<AppProcess> {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort()
      const [cmd, args, env] = command(port)
      const app = new AppProcess(spawn(cmd, args, { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }), port)
      // A process that could not be spawned emits 'error' and may never emit 'exit'.
      const exited = new Promise<void>((resolve) => {
        app.child.once('exit', () => resolve())
        app.child.once('error', (err) => { app.output += String(err); app.failed = true; resolve() })
      })
      try {
        await until(async () => {
          if (!app.running) throw new Error(`${name} exited: ${app.output}`)
          return await fetch(`${app.url}${probe}`).then(() => true, () => false)
        }, 15_000, `${name} on port ${port}`)
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
export class Jar {
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
