import type { Scenario } from '../lib/scenario.js'
import { startScript } from '../lib/servers.js'

/** (b) fastify + @fastify/http-proxy with no session work: the reference for the ratios. */
export default {
  id: 'bare-proxy',
  ref: '(b)',
  title: 'bare fastify + @fastify/http-proxy',
  start: async (ctx) => {
    const proxy = await startScript(ctx.children, 'bare-proxy', [ctx.upstream], ctx.nodeFlags)
    return { url: `${proxy.url}/`, settle: async () => {}, stop: proxy.stop }
  }
} satisfies Scenario
