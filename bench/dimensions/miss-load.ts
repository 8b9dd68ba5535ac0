import { count, growthRow, withRatios, type Dimension } from '../lib/dimension.js'
import { counted } from '../lib/measure.js'
import type { Running } from '../lib/scenario.js'
import { createSessions, inTurn } from '../lib/sessions.js'
import { SidecarChild } from '../lib/sidecar.js'

/**
 * A cold sidecar: sessions are created on one sidecar, which then stops; a second one, started
 * afterwards, gets one request per session (each loads it from memcached), then the same
 * requests again (each now a local hit). A pass over other sessions first warms its code.
 */
export default {
  id: 'miss-load',
  title: 'miss-load: first request per session on a cold sidecar',
  run: async (ctx) => {
    const n = ctx.smoke ? 500 : 20_000
    const warm = ctx.smoke ? 100 : 2000
    const options = { upstream: ctx.upstream, nodes: ctx.nodes, nodeFlags: ctx.nodeFlags }
    const creator = await new SidecarChild(ctx.dir, { ...options, name: 'miss-load-creator' }).start(ctx.children)
    let created: Awaited<ReturnType<typeof createSessions>>
    try {
      ctx.progress(`  creating ${count(n + warm)} sessions on another sidecar...`)
      created = await createSessions(creator.url, n + warm)
      await creator.flushed()
      ctx.progress(` ${created.seconds.toFixed(1)} s\n`)
    } finally {
      await creator.stop()
    }
    const cold = await new SidecarChild(ctx.dir, { ...options, name: 'miss-load-cold' }).start(ctx.children)
    try {
      const running: Running = { url: `${cold.url}/`, settle: async () => { await cold.flushed() }, stop: async () => {} }
      const measured = created.cookies.slice(warm)
      ctx.progress(`  warm-up: ${count(warm)} other sessions loaded once...`)
      await counted(running, ctx.memcached, { url: running.url, seconds: 0, amount: warm, cookieFor: inTurn(created.cookies.slice(0, warm)) }, ctx.progress)
      ctx.progress(`  first request of ${count(n)} sessions:`)
      const first = await counted(running, ctx.memcached, { url: running.url, seconds: 0, amount: n, cookieFor: inTurn(measured) }, ctx.progress)
      ctx.progress('  the same requests again:')
      const again = await counted(running, ctx.memcached, { url: running.url, seconds: 0, amount: n, cookieFor: inTurn(measured) }, ctx.progress)
      const [cached] = await cold.metrics(['sidecar_cached_sessions'])
      return {
        id: 'miss-load',
        title: 'First request on a cold sidecar (miss-load) vs the same request once cached',
        axis: 'sessions',
        rows: withRatios([
          growthRow(count(n), 'first request: loaded from memcached', first),
          growthRow(count(n), 'second request: cached', again)
        ], false),
        notes: [
          `${count(n)} sessions of 1 KB created through another sidecar (${created.seconds.toFixed(1)} s), which then stopped; one request each in turn over ${ctx.users} connections, then the same again`,
          `the cold sidecar held ${count(cached ?? 0)} sessions at the end (${count(warm)} warm-up ones included)`
        ]
      }
    } finally {
      await cold.stop()
    }
  }
} satisfies Dimension
