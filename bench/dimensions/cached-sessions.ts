import { count, growthRow, inRounds, withRatios, type Dimension, type GrowthRow, type Rounds } from '../lib/dimension.js'
import { measureRunning } from '../lib/measure.js'
import type { Running } from '../lib/scenario.js'
import { atRandom, createSessions } from '../lib/sessions.js'
import { SidecarChild } from '../lib/sidecar.js'

/** Cached sessions the hits are measured at; the sidecar grows from one to the next. */
const STEPS = [10_000, 100_000, 1_000_000]
const SMOKE_STEPS = [1000, 3000]
/** Creating sessions through HTTP may take this long in all (s); a step that would not fit is scaled down. */
const CREATE_BUDGET_S = 180
/** What a step too large for the budget becomes, the largest that fits: 1M gives 500k, 300k or 200k. */
const SMALLER = [0.5, 0.3, 0.2]
const MB = 1e6

/**
 * One sidecar grown to 10k, 100k and 1M cached 1 KB sessions, created through HTTP (64 logins
 * in flight); at each size, hits on a session drawn at random from all of them for every
 * request. cache.maxBytes 4 GiB (none evicted) and cache.revalidateMs 900 s (the most
 * session.idleTimeout allows: every request is a local hit, whatever its session's age, so
 * the rows differ only in how many sessions the sidecar holds), node --max-old-space-size=6144.
 * The runner gives memcached room for every copy (-m 3072) and this empties it afterwards.
 */
export default {
  id: 'cached-sessions',
  title: 'cached sessions: hit on a random one of them',
  run: async (ctx) => {
    const sidecar = await new SidecarChild(ctx.dir, {
      name: 'cached-sessions',
      upstream: ctx.upstream,
      nodes: ctx.nodes,
      nodeFlags: [...ctx.nodeFlags, '--max-old-space-size=6144'],
      cacheMaxBytes: 4 * 1024 ** 3,
      revalidateMs: 900_000
    }).start(ctx.children)
    try {
      const running: Running = { url: `${sidecar.url}/`, cookieFor: undefined, settle: async () => { await sidecar.flushed(60_000) }, stop: async () => {} }
      let cookies: string[] = []
      let createSeconds = 0
      const rows: GrowthRow[] = []
      const notes: string[] = []
      for (const step of ctx.smoke ? SMOKE_STEPS : STEPS) {
        const target = withinBudget(step, cookies.length, createSeconds)
        if (target === undefined) {
          notes.push(`${count(step)} not measured: creating them would take about ${Math.round(projected(step, cookies.length, createSeconds))} s at the ${rate(cookies.length, createSeconds)} sessions/s so far (budget ${CREATE_BUDGET_S} s)`)
          continue
        }
        if (target !== step) notes.push(`${count(target)} measured instead of ${count(step)}: creating ${count(step)} would take about ${Math.round(projected(step, cookies.length, createSeconds))} s at the ${rate(cookies.length, createSeconds)} sessions/s so far (budget ${CREATE_BUDGET_S} s)`)
        ctx.progress(`  ${count(target)} sessions: creating ${count(target - cookies.length)}...`)
        let made: Awaited<ReturnType<typeof createSessions>>
        let m: Rounds | undefined
        try {
          made = await createSessions(sidecar.url, target - cookies.length)
          cookies = cookies.concat(made.cookies)
          createSeconds += made.seconds
          await running.settle()
          ctx.progress(` ${made.seconds.toFixed(1)} s;${ctx.rounds > 1 ? '\n' : ''}`)
          ;[m] = await inRounds([target], ctx.rounds, async () => {
            ctx.progress(ctx.rounds > 1 ? '   ' : '')
            return await measureRunning({ ...running, cookieFor: atRandom(cookies) }, ctx.memcached, ctx.timing, ctx.progress)
          })
        } catch (err) {
          // The rows so far stand; what the sidecar said and counted is the lead.
          const [pending = 0, cached = 0] = await sidecar.metrics(['sidecar_pending_writes', 'sidecar_cached_sessions']).catch(() => [])
          const said = sidecar.output.trim().split('\n').pop()?.slice(0, 300) ?? ''
          ctx.progress(` FAILED: ${(err as Error).message}\n`)
          notes.push(`${count(target)} FAILED: ${(err as Error).message}; the sidecar then held ${count(cached)} sessions with ${count(pending)} writes pending${said === '' ? '' : `; its last log line: ${said}`}`)
          break
        }
        const [cached = 0, rss = 0, heap = 0] = await sidecar.metrics(['sidecar_cached_sessions', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes'])
        if (cached < target) notes.push(`at ${count(target)} the sidecar held only ${count(cached)}: some hits were loads`)
        rows.push(growthRow(count(target), 'hit, random session', m as Rounds, {
          'create s': Math.round(made.seconds * 10) / 10,
          'created/s': rate(made.cookies.length, made.seconds),
          'sidecar RSS MB': Math.round(rss / MB),
          'heap used MB': Math.round(heap / MB)
        }))
      }
      let evicted = 0
      for (const m of ctx.memcached) evicted += (await m.stats()).evictions ?? 0
      if (evicted > 0) notes.push(`memcached evicted ${count(evicted)} copies`)
      notes.unshift(`one sidecar grown step by step, 1 KB sessions created through HTTP (64 in flight, ${rate(cookies.length, createSeconds)}/s overall); cache.revalidateMs 900 s, so every request is a local hit; memcached -m 3072 (room for every copy); RSS and heap (not collected first) read from /metrics after the step`)
      return { id: 'cached-sessions', title: 'How cost grows with cached sessions', axis: 'cached sessions', rows: withRatios(rows), notes }
    } finally {
      await sidecar.stop()
      // Emptied: a million sessions' copies would leave what runs next (the heap measurement) no room.
      for (const m of ctx.memcached) {
        ctx.children.forget(m.pid)
        await m.stop()
        await m.start()
        ctx.children.adopt('memcached', m.pid)
      }
    }
  }
} satisfies Dimension

const rate = (n: number, seconds: number): number => seconds > 0 ? Math.round(n / seconds) : 0
/** Seconds of creation in all if `have` sessions grew to `step` at the rate so far. */
const projected = (step: number, have: number, seconds: number): number => have === 0 ? 0 : seconds + (step - have) * (seconds / have)

/** `step`, or the largest of its SMALLER fractions above `have` that still fits the budget; undefined when none does. */
function withinBudget (step: number, have: number, seconds: number): number | undefined {
  return [step, ...SMALLER.map((f) => step * f)].find((n) => n > have && projected(n, have, seconds) <= CREATE_BUDGET_S)
}
