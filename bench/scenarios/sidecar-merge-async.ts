import { oneSidecar, type Scenario } from '../lib/scenario.js'

/** (e) Every response changes the 1 KB session (X-Session-Merge); memcached.write: async. */
export default {
  id: 'sidecar-merge-async',
  ref: '(e)',
  title: 'sidecar, X-Session-Merge every request, write async',
  start: async (ctx) => await oneSidecar(ctx, { name: 'merge-async', path: '/merge', write: 'async', sessions: true })
} satisfies Scenario
