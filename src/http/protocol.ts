import type { IncomingHttpHeaders } from 'node:http'

/** The session headers an app response carried, still encoded. */
export interface AppUpdates {
  set: string | undefined
  merge: string | undefined
  destroy: boolean
  regenerate: boolean
}

/**
 * The header protocol between sidecar and app: names built once from `session.headerPrefix`,
 * and the stripping that keeps clients from forging them and apps from leaking them.
 */
export class HeaderProtocol {
  /** `x-session-id`: the session key, to the app. */
  readonly idHeader: string
  /** `x-session`: base64url JSON, to the app. */
  readonly dataHeader: string
  readonly #prefix: string
  readonly #set: string
  readonly #merge: string
  readonly #destroy: string
  readonly #regenerate: string

  constructor (prefix: string) {
    this.#prefix = prefix.toLowerCase().replaceAll('_', '-')
    this.dataHeader = this.#prefix
    this.idHeader = `${this.#prefix}-id`
    this.#set = `${this.#prefix}-set`
    this.#merge = `${this.#prefix}-merge`
    this.#destroy = `${this.#prefix}-destroy`
    this.#regenerate = `${this.#prefix}-regenerate`
  }

  /** True for a lower-case header name that starts with the prefix, `_` read as `-`. */
  isPrefixed (name: string): boolean {
    const prefix = this.#prefix
    if (name.length < prefix.length) return false
    for (let i = 0; i < prefix.length; i++) {
      const c = name.charCodeAt(i)
      if (c !== prefix.charCodeAt(i) && !(c === 95 /* _ */ && prefix.charCodeAt(i) === 45 /* - */)) return false
    }
    return true
  }

  /** Removes every prefixed header a client sent. Node has already lower-cased the names. */
  stripRequest (headers: IncomingHttpHeaders): void {
    for (const name in headers) if (this.isPrefixed(name)) delete headers[name]
  }

  /**
   * Removes every prefixed header from an app response and returns the session updates among
   * them, or undefined when there were none. Names are compared without regard to case.
   */
  takeUpdates (headers: Record<string, string | string[] | undefined>): AppUpdates | undefined {
    let updates: AppUpdates | undefined
    for (const name in headers) {
      const lower = name.toLowerCase()
      if (!this.isPrefixed(lower)) continue
      const value = headers[name]
      delete headers[name]
      const text = Array.isArray(value) ? value.join(',') : value
      if (text === undefined) continue
      const normal = lower.replaceAll('_', '-')
      updates ??= { set: undefined, merge: undefined, destroy: false, regenerate: false }
      if (normal === this.#set) updates.set = text.trim()
      else if (normal === this.#merge) updates.merge = text.trim()
      else if (normal === this.#destroy) updates.destroy = isOn(text)
      else if (normal === this.#regenerate) updates.regenerate = isOn(text)
    }
    return updates
  }
}

function isOn (value: string): boolean {
  const v = value.trim().toLowerCase()
  return v === '1' || v === 'true' || v === 'yes'
}
