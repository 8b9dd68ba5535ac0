import type { Scenario } from '../lib/scenario.js'

/** (a) The app alone: the ceiling for everything in front of it. */
export default {
  id: 'upstream',
  ref: '(a)',
  title: 'upstream app directly (node:http)',
  start: async (ctx) => ({ url: `${ctx.upstream}/`, pids: [ctx.upstreamPid], settle: async () => {}, stop: async () => {} })
} satisfies Scenario
