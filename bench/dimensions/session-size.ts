import { growthRow, inRounds, kb, withRatios, type Dimension, type Rounds } from '../lib/dimension.js'
import { measure } from '../lib/measure.js'
import { oneSidecar } from '../lib/scenario.js'

const SIZES = [1024, 4096, 8192]
const WORKLOADS = [
  { name: 'hit', path: '/' },
  { name: 'change, write async', path: '/merge' }
] as const

/**
 * Session JSON of 1, 4 and 8 KB: a hit as (d) and a change as (e) async, each size its own
 * sidecar with `users` sessions of that size (session.maxBytes raised to 16 KiB so that an
 * 8 KB session still takes the merge's counter).
 */
export default {
  id: 'session-size',
  title: 'session size: hit as (d), change as (e) write async',
  run: async (ctx) => {
    const points = WORKLOADS.flatMap((workload) => SIZES.map((bytes) => ({ workload, bytes })))
    const measured = await inRounds(points, ctx.rounds, async ({ workload, bytes }) => {
      ctx.progress(`  ${workload.name}, ${kb(bytes)}:`)
      return await measure({
        id: 'session-size',
        ref: '',
        title: `${workload.name}, ${kb(bytes)}`,
        start: async (c) => await oneSidecar(c, { name: `size-${bytes}`, path: workload.path, sessions: true, loginPath: `/login?bytes=${bytes}`, sessionMaxBytes: 16_384 })
      }, ctx, ctx.timing, ctx.progress)
    })
    const rows = points.map(({ workload, bytes }, i) => growthRow(kb(bytes), workload.name, measured[i] as Rounds))
    return {
      id: 'session-size',
      title: 'How cost grows with session size',
      axis: 'session JSON',
      rows: withRatios(rows),
      notes: [`${ctx.users} sessions of each size, one per connection; session.maxBytes 16384; the app gets each as an X-Session header (base64url, 4/3 of the JSON)`]
    }
  }
} satisfies Dimension
