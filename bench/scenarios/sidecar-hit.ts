import { oneSidecar, type Scenario } from '../lib/scenario.js'

/** (d) The sidecar serving a cached 1 KB session to the app on every request, no change. */
export default {
  id: 'sidecar-hit',
  ref: '(d)',
  title: 'sidecar, 1 KB session hit',
  start: async (ctx) => await oneSidecar(ctx, { name: 'hit', path: '/', sessions: true })
} satisfies Scenario
