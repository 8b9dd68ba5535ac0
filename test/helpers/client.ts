/**
 * A cookie-keeping HTTP client, like a browser talking to one site: remembers the session
 * cookie from Set-Cookie and sends it back.
 */
export class Browser {
  cookies = new Map<string, string>()
  lastSetCookie: string[] = []

  constructor (readonly cookieName = 'sid') {}

  get sid (): string | undefined { return this.cookies.get(this.cookieName) }

  async get (base: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: any, headers: Headers }> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    const res = await fetch(base + path, { headers: { ...(cookie === '' ? {} : { cookie }), ...headers } })
    this.lastSetCookie = res.headers.getSetCookie()
    for (const line of this.lastSetCookie) {
      const [pair = '', ...attrs] = line.split(';')
      const eq = pair.indexOf('=')
      const name = pair.slice(0, eq).trim()
      const value = pair.slice(eq + 1).trim()
      const expired = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a))
      if (expired || value === '') this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
    const text = await res.text()
    let body: any = text
    try { body = JSON.parse(text) } catch {}
    return { status: res.status, body, headers: res.headers }
  }
}
