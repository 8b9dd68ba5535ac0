import type { Scenario } from '../lib/scenario.js'
import { CookiePool, login } from '../lib/sessions.js'
import { startScript } from '../lib/servers.js'

/** Baseline: express + express-session + connect-memcached, one member changed every request. */
export default {
  id: 'express-session-change',
  ref: '(g)',
  title: 'baseline express-session + connect-memcached, change every request',
  start: async (ctx) => {
    const app = await startScript(ctx.children, 'express-session', [ctx.nodes.join(',')])
    try {
      return { url: `${app.url}/merge`, cookies: new CookiePool(await login(app.url, ctx.users)), pids: [app.pid], settle: async () => {}, stop: app.stop }
    } catch (err) {
      await app.stop()
      throw err
    }
  }
} satisfies Scenario
