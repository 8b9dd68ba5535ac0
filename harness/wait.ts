export interface UntilOptions {
  /** The pause between checks; by default it grows from 5 ms to 100 ms. 0: check again as soon as the last check answered. */
  readonly intervalMs?: number
  /** Stops the wait (Ctrl-C in the demo): `onAbort` makes what is thrown. */
  readonly signal?: AbortSignal
  readonly onAbort?: () => Error
  /** Makes the error thrown at the deadline (default: an Error with this message). */
  readonly onTimeout?: (message: string) => Error
}

/**
 * Polls `check` until it returns true, and throws once `ms` pass: every wait of the tests, the
 * bench, chaos and the demo has a deadline. A check may throw to end the wait early (a child
 * process that exited).
 */
export async function until (check: () => boolean | Promise<boolean>, ms = 5000, what = 'condition', options: UntilOptions = {}): Promise<void> {
  const deadline = Date.now() + ms
  for (let wait = options.intervalMs ?? 5; ; wait = options.intervalMs ?? Math.min(wait * 2, 100)) {
    if (options.signal?.aborted === true) throw options.onAbort?.() ?? new Error(`aborted while waiting for ${what}`)
    if (await check()) return
    if (Date.now() > deadline) {
      const message = `timed out after ${ms} ms waiting for ${what}`
      throw options.onTimeout?.(message) ?? new Error(message)
    }
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
  }
}

/** Resolves as `event` does, or throws once `ms` pass without it. */
export async function within<T> (event: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([event, timeout])
  } finally {
    clearTimeout(timer)
  }
}
