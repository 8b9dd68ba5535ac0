import { growthRow, inRounds, withRatios, type Dimension, type Rounds } from '../lib/dimension.js'
import { measure } from '../lib/measure.js'
import { oneSidecar } from '../lib/scenario.js'

const NODE_COUNTS = [2, 8]

/**
 * The change path, (e) write async, with the sidecar configured with 2 and with 8 memcached
 * nodes (replicas 2 either way: each session on 2 of them). Commands are counted on all 8.
 */
export default {
  id: 'memcached-nodes',
  title: 'memcached nodes: change as (e) write async',
  run: async (ctx) => {
    const all = [...ctx.memcached, ...ctx.spareMemcached]
    const top = NODE_COUNTS[NODE_COUNTS.length - 1] as number
    if (all.length < top) throw new Error(`needs ${top} memcached processes, the runner started ${all.length}`)
    const measured = await inRounds(NODE_COUNTS, ctx.rounds, async (n) => {
      ctx.progress(`  change, ${n} nodes:`)
      const nodes = all.slice(0, n).map((m) => m.address)
      return await measure({
        id: 'memcached-nodes',
        ref: '',
        title: `change, ${n} nodes`,
        start: async (c) => await oneSidecar({ ...c, nodes }, { name: `nodes-${n}`, path: '/merge', write: 'async', sessions: true })
      }, { ...ctx, memcached: all }, ctx.timing, ctx.progress)
    })
    const rows = NODE_COUNTS.map((n, i) => growthRow(`${n} nodes`, 'change, write async', measured[i] as Rounds))
    return {
      id: 'memcached-nodes',
      title: 'How cost grows with memcached nodes',
      axis: 'memcached',
      rows: withRatios(rows),
      notes: [`${ctx.users} sessions of 1 KB, placed by rendezvous hashing over the configured nodes, 2 copies each; ${top} memcached processes run in both rows`]
    }
  }
} satisfies Dimension
