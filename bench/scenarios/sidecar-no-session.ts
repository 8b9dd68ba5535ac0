import { oneSidecar, type Scenario } from '../lib/scenario.js'

/** (c) The sidecar, requests without a cookie: its hooks, no session. */
export default {
  id: 'sidecar-no-session',
  ref: '(c)',
  title: 'sidecar, no session',
  start: async (ctx) => await oneSidecar(ctx, { name: 'no-session', path: '/', sessions: false })
} satisfies Scenario
