import { oneSidecar, type Scenario } from '../lib/scenario.js'

/** (e) As merge-async, but the response waits for memcached (memcached.write: sync). */
export default {
  id: 'sidecar-merge-sync',
  ref: '(e)',
  title: 'sidecar, X-Session-Merge every request, write sync',
  start: async (ctx) => await oneSidecar(ctx, { name: 'merge-sync', path: '/merge', write: 'sync', sessions: true })
} satisfies Scenario
