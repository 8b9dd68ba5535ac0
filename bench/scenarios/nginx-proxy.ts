import type { Scenario } from '../lib/scenario.js'
import { startNginx } from '../lib/servers.js'

/** Peer (i): nginx `proxy_pass` with upstream keepalive, the production proxy users compare against. */
export default {
  id: 'nginx-proxy',
  ref: '(i)',
  title: 'nginx proxy_pass, upstream keepalive, 1 process',
  peer: true,
  start: async (ctx) => {
    const proxy = await startNginx(ctx.children, ctx.dir, ctx.upstream)
    return { url: `${proxy.url}/`, pids: [proxy.pid], settle: async () => {}, stop: proxy.stop }
  }
} satisfies Scenario
