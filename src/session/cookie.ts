import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto'
import { KEY_PATTERN } from './key.js'

/** The fields of a format-1 cookie: `1~key~primary[~backup]~version~mac`. */
export interface CookieFields {
  readonly key: string
  readonly primary: string
  readonly backup: string | undefined
  readonly version: number
}

export interface VerifiedCookie extends CookieFields {
  /** True when a secret other than the signing one (a verify-only one) signed it: reissue. */
  readonly oldSecret: boolean
}

/** `memcached.allow`: may a cookie's address be contacted? (The pool's list, which SIGHUP may replace.) */
export type AddressCheck = (address: string) => boolean

const SEPARATOR = '~'
const MAC_BYTES = 16
const MAC_CHARS = 22 // base64url of 16 bytes, no padding
const VERSION = /^[1-9][0-9]{0,14}$/
// Addresses as parseAddress prints them; full parsing happens before any contact.
const ADDRESS = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$/
// Anything longer is not ours: 2 addresses of 253+7 chars plus the fixed fields.
const MAX_COOKIE = 600
// Where format 1 keeps the key: after `1~`, 22 characters.
const KEY_START = 2
const KEY_END = KEY_START + 22

const anyAddress: AddressCheck = () => true

/**
 * Format 1 of the session cookie: encode, and verify against every configured secret in
 * constant time; the addresses a verified cookie may name (`memcached.allow`); and the fast
 * path that recognises, without parsing or an HMAC, the exact value this node issued.
 * Anything that does not parse, verify or pass the allow list is "no cookie".
 */
export class CookieCodec {
  // KeyObjects, made once: an HMAC keyed by a raw Buffer re-imports the key on every call.
  readonly #secrets: readonly KeyObject[]
  readonly #allowed: AddressCheck

  /**
   * `secrets[0]` signs, every one verifies: the signer, then the verify-only ones (keyring).
   * `allowed` is `memcached.allow` (any address when left out), applied by `accept`.
   */
  constructor (secrets: readonly string[], allowed: AddressCheck = anyAddress) {
    if (secrets.length === 0) throw new TypeError('at least one secret is required')
    this.#secrets = secrets.map((s) => createSecretKey(Buffer.from(s, 'utf8')))
    this.#allowed = allowed
  }

  encode (fields: CookieFields): string {
    const body = fields.backup === undefined
      ? `1~${fields.key}~${fields.primary}~${fields.version}`
      : `1~${fields.key}~${fields.primary}~${fields.backup}~${fields.version}`
    return `${body}~${this.#mac(this.#secrets[0] as KeyObject, body).toString('base64url')}`
  }

  /** Parses the fields without checking the MAC; undefined when the shape is wrong. */
  static parse (value: string): CookieFields | undefined {
    if (value.length > MAX_COOKIE || value.charCodeAt(0) !== 49 /* 1 */ || value.charCodeAt(1) !== 126 /* ~ */) return undefined
    const parts = value.split(SEPARATOR)
    if (parts.length !== 5 && parts.length !== 6) return undefined
    const key = parts[1] as string
    const primary = parts[2] as string
    const backup = parts.length === 6 ? parts[3] : undefined
    const versionText = parts[parts.length - 2] as string
    const mac = parts[parts.length - 1] as string
    if (!KEY_PATTERN.test(key) || !VERSION.test(versionText) || mac.length !== MAC_CHARS) return undefined
    if (!ADDRESS.test(primary) || (backup !== undefined && (!ADDRESS.test(backup) || backup === primary))) return undefined
    return { key, primary, backup, version: Number(versionText) }
  }

  /** Parses and verifies; undefined for anything forged, truncated or signed by an unknown secret. */
  verify (value: string): VerifiedCookie | undefined {
    const fields = CookieCodec.parse(value)
    if (fields === undefined) return undefined
    const cut = value.lastIndexOf(SEPARATOR)
    const given = Buffer.from(value.slice(cut + 1), 'base64url')
    // base64url decoding is lenient: re-encode to reject non-canonical spellings of a MAC.
    if (given.length !== MAC_BYTES || given.toString('base64url') !== value.slice(cut + 1)) return undefined
    const body = value.slice(0, cut)
    let matched = -1
    // Check every secret, even after a match, so timing does not reveal which one signed it.
    for (let i = 0; i < this.#secrets.length; i++) {
      if (timingSafeEqual(this.#mac(this.#secrets[i] as KeyObject, body), given) && matched < 0) matched = i
    }
    if (matched < 0) return undefined
    return { ...fields, oldSecret: matched > 0 }
  }

  /**
   * A cookie this node may act on: it verifies and names only allowed addresses (a signed
   * cookie naming a disallowed address is treated as forged: no such address is contacted).
   */
  accept (value: string): VerifiedCookie | undefined {
    const verified = this.verify(value)
    if (verified === undefined) return undefined
    if (!this.#allowed(verified.primary) || (verified.backup !== undefined && !this.#allowed(verified.backup))) return undefined
    return verified
  }

  /**
   * The fast path: the record `lookup` holds under the key at its fixed place in a format-1
   * value, when the value is exactly the cookie issued or verified for that record (compared in
   * constant time). No parsing, no HMAC; undefined otherwise, and then `accept` decides.
   */
  static issued<T extends { readonly cookie: string | undefined }> (value: string, lookup: (key: string) => T | undefined): T | undefined {
    if (value.length <= KEY_END) return undefined
    const record = lookup(value.slice(KEY_START, KEY_END))
    return record !== undefined && record.cookie !== undefined && sameText(record.cookie, value) ? record : undefined
  }

  #mac (secret: KeyObject, body: string): Buffer {
    return createHmac('sha256', secret).update(body).digest().subarray(0, MAC_BYTES)
  }
}

/**
 * Constant-time equality of two strings, without allocating: the fast path compares a client's
 * cookie to the one this node issued, and must not reveal how much of a MAC was right.
 */
function sameText (a: string, b: string): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}
