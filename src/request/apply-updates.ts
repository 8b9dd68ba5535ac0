import type { FastifyBaseLogger } from 'fastify'
import { codes, RefusedUpdate } from '../errors.js'
import type { AppUpdates } from '../http/protocol.js'
import type { Metrics } from '../metrics.js'
import { decodeJson, decodeObject, isObject, mergePatch, type SessionObject } from '../session/data.js'
import { keyHash } from '../session/key.js'
import type { Change, SessionStore } from '../session/store.js'
import type { MemcachedBudget, RequestSession } from './state.js'

export interface ApplyUpdatesOptions {
  readonly store: SessionStore
  /** `session.maxBytes`: the largest session, in bytes of compact JSON. */
  readonly maxBytes: number
  /** `memcached.write: sync`: the response waits for the primary to store a change. */
  readonly sync: boolean
  readonly budget: MemcachedBudget
  readonly metrics: Metrics
}

/**
 * headers from the app -> store: decodes the app's session headers, refuses what may not be
 * applied (logged and counted, the previous session kept), and hands the change to the store.
 */
export class UpdateApplier {
  readonly #options: ApplyUpdatesOptions

  constructor (options: ApplyUpdatesOptions) {
    this.#options = options
  }

  /** Applies the app's updates; returns a promise only when the response must wait (sync, destroy). */
  apply (request: { readonly log: FastifyBaseLogger }, state: RequestSession, updates: AppUpdates): Promise<void> | undefined {
    const { store, metrics, budget } = this.#options
    const record = state.record
    if (updates.destroy) {
      // Whatever memcached.write says, a logout is durable when answered: the response waits
      // (within the budget) for the primary to hold the tombstone.
      if (record !== undefined) {
        state.ended = true
        state.record = undefined
        return withTimeout(store.destroy(record, state.cookie), budget.left(state))
      } else if (state.cookie !== undefined) {
        // memcached did not answer when this request began: end it wherever the cookie says.
        state.ended = true
        return withTimeout(store.destroyByCookie(state.cookie), budget.left(state))
      }
      return undefined
    }
    if (record === undefined && state.unavailable && !updates.regenerate) {
      // The user has a session we could not read in time: a Set or Merge now would mint a new
      // key and replace it. Refused; the cookie stays, and the next request tries again. With
      // Regenerate (a login) the app asks for a new key anyway: that goes through.
      metrics.refusedUpdates.labels('session-unavailable').inc()
      request.log.warn({ code: codes.SESSION_UPDATE_REFUSED, reason: 'session-unavailable', session: keyHash(state.cookie?.key ?? '') }, 'session update refused: the session could not be loaded in time; cookie kept')
      return undefined
    }
    let change: Change
    try {
      change = decodeChange(updates, this.#options.maxBytes)
    } catch (err) {
      if (!(err instanceof RefusedUpdate)) throw err
      metrics.refusedUpdates.labels(err.reason).inc()
      request.log.error({ code: codes.SESSION_UPDATE_REFUSED, header: err.header, reason: err.reason, session: record === undefined ? undefined : keyHash(record.key) }, 'session update refused; previous session kept')
      // Regeneration protects against fixation: honour it even when the data was refused.
      if (!updates.regenerate) return undefined
      change = { set: undefined, merge: undefined, regenerate: true }
    }
    // A login while the session could not be loaded: the key the cookie names ends with it.
    const unloaded = record === undefined && state.unavailable ? state.cookie : undefined
    let applied
    try {
      applied = store.apply(record, state.cookie?.version ?? 0, change, unloaded)
    } catch (err) {
      if (!(err instanceof RefusedUpdate)) throw err
      metrics.refusedUpdates.labels(err.reason).inc()
      request.log.error({ code: codes.SESSION_UPDATE_REFUSED, header: err.header, reason: err.reason, session: record === undefined ? undefined : keyHash(record.key) }, 'session update refused; previous session kept')
      return undefined
    }
    if (applied === undefined) {
      // A login with no data while the session could not be loaded leaves no session: the one
      // the cookie names ends, as a logout, rather than outliving the login.
      if (unloaded === undefined || !change.regenerate) return undefined
      state.ended = true
      return withTimeout(store.destroyByCookie(unloaded), budget.left(state))
    }
    if (record === undefined) state.outcome = 'new'
    state.record = applied.record
    if (!this.#options.sync || applied.written === undefined) return undefined
    const written = applied.record
    return withTimeout(applied.written, budget.left(state)).then(() => {
      // Ended while it was stored (a login whose old key a logout elsewhere had ended: the
      // logout wins, and its new key ended too): the cookie goes, as after a destroy.
      if (store.ended(written.key)) {
        state.ended = true
        state.record = undefined
        return
      }
      // A conflict may have given the write a higher version or other nodes: say so.
      const now = store.local(written.key)
      if (now !== undefined && now !== written && now.version >= written.version) state.record = now
    })
  }
}

/** The app's headers as one change: Set, then Merge (applied to the Set when both came), Regenerate. */
function decodeChange (updates: AppUpdates, maxBytes: number): Change {
  if (updates.duplicated !== undefined) throw new RefusedUpdate('duplicate', updates.duplicated)
  let set: SessionObject | undefined
  let merge: SessionObject | undefined
  if (updates.set !== undefined) set = decodeObject(updates.set, 'X-Session-Set', maxBytes)
  if (updates.merge !== undefined) {
    const patch = decodeJson(updates.merge, 'X-Session-Merge', maxBytes)
    if (!isObject(patch)) throw new RefusedUpdate('not-an-object', 'X-Session-Merge')
    if (set !== undefined) set = mergePatch(set, patch) as SessionObject
    else merge = patch
  }
  return { set, merge, regenerate: updates.regenerate }
}

async function withTimeout (work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([work, new Promise((resolve) => { timer = setTimeout(resolve, ms) })])
  clearTimeout(timer)
}
