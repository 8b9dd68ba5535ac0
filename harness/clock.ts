/**
 * The process's monotonic clock (`performance.now`, which the sidecar's freshness and budgets
 * read) under a test's control. Until `freeze`, it is the real clock; frozen, it moves only by
 * `advance`, so a rule such as "one touch per cache.revalidateMs" is decided by the test's
 * steps, not by how long a busy machine took over them. Install it before the sidecar starts
 * (its store binds the clock at construction); `restore` (in t.teardown) carries on from the
 * frozen time at the real clock's pace, so time never runs backwards for what is still open.
 *
 * Frozen, nothing times out by the monotonic clock (memcached command deadlines, flush
 * deadlines): a test that freezes it must not need a timeout to fire meanwhile.
 */
export interface MonotonicClock {
  freeze: () => void
  advance: (ms: number) => void
  restore: () => void
}

export function monotonicClock (): MonotonicClock {
  const real = performance.now.bind(performance)
  let offset = 0
  let frozenAt: number | undefined
  const now = (): number => frozenAt ?? real() + offset
  Object.defineProperty(performance, 'now', { value: now, configurable: true, writable: true })
  return {
    freeze: () => { frozenAt = now() },
    advance: (ms) => {
      if (frozenAt === undefined) throw new Error('advance: the clock is not frozen')
      frozenAt += ms
    },
    restore: () => {
      if (frozenAt !== undefined) offset = frozenAt - real()
      frozenAt = undefined
      // The sidecar may hold `now` itself (bound at construction): it keeps working, unfrozen.
      Reflect.deleteProperty(performance, 'now')
    }
  }
}
