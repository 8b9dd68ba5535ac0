import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomFillSync, timingSafeEqual } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { StoredCopy } from './record.js'

/** An opened copy; `current` is false when a secret other than the signing one sealed it. */
export interface OpenedCopy extends StoredCopy {
  readonly current: boolean
}

/**
 * The copies in memcached, sealed: anyone who can reach a memcached port can read and write
 * its items (no auth by default; `lru_crawler metadump` lists the keys), so a copy is
 * authenticated and, by default, encrypted, with the memcached key bound in (a copy moved to
 * another key does not open). Keys come from the session secrets by HKDF; a copy names the
 * secret that sealed it (a 48-bit id derived from it), and opens with any configured one,
 * signing or verify-only (rotation), to be resealed with the signing one when read or written.
 *
 *   encrypted:     s2.<secret id>.<base64url(iv | AES-256-GCM(`<version> <state> <data>`) | tag)>
 *   authenticated: a2.<secret id>.<version>.<state>.<data>.<base64url(HMAC-SHA256, 128 bits)>
 *
 * `<data>` is the session's base64url JSON, as the app receives it; `<state>` is L (live) or
 * E (ended: a tombstone). Format 1 (s1/a1, no state: live) is still opened, and resealed in
 * format 2 at the next write. (No separate digest: revalidation reads the whole copy with
 * `gats`, so it compares the data itself.)
 */
export class CopySeal {
  readonly #keys: readonly SealKeys[]
  readonly #byId: ReadonlyMap<string, SealKeys>
  readonly #encrypt: boolean
  readonly #onRejected: () => void

  /**
   * `secrets[0]` seals, every one opens: the signer, then the verify-only ones (keyring).
   * `onRejected` hears of every copy that did not open (to count and log it).
   */
  constructor (secrets: readonly string[], encrypt: boolean, onRejected: () => void = () => {}) {
    if (secrets.length === 0) throw new TypeError('at least one secret is required')
    this.#keys = secrets.map(deriveKeys)
    this.#byId = new Map(this.#keys.map((k) => [k.id, k]))
    this.#encrypt = encrypt
    this.#onRejected = onRejected
  }

  seal (mkey: string, copy: StoredCopy): string {
    const keys = this.#keys[0] as SealKeys
    const state = copy.ended ? 'E' : 'L'
    if (!this.#encrypt) {
      const body = `a2.${keys.id}.${copy.version}.${state}.${copy.header}`
      return `${body}.${mac(keys.authentication, body, mkey).toString('base64url')}`
    }
    const iv = nextIv()
    const cipher = createCipheriv('aes-256-gcm', itemKey(keys, mkey), iv)
    cipher.setAAD(Buffer.from(mkey, 'latin1'))
    const sealed = Buffer.concat([iv, cipher.update(`${copy.version} ${state} ${copy.header}`, 'latin1'), cipher.final(), cipher.getAuthTag()])
    return `s2.${keys.id}.${sealed.toString('base64url')}`
  }

  /** The copy, or undefined for anything that does not open: forged, moved, another fleet's, damaged. */
  open (mkey: string, value: string): OpenedCopy | undefined {
    const copy = this.#open(mkey, value)
    if (copy === undefined) this.#onRejected()
    return copy
  }

  #open (mkey: string, value: string): OpenedCopy | undefined {
    const marker = value.slice(0, 3)
    const format = FORMATS[marker]
    if (format === undefined) return undefined
    const keys = this.#byId.get(value.slice(3, 3 + ID_CHARS))
    if (keys === undefined || value.charCodeAt(3 + ID_CHARS) !== 46 /* . */) return undefined
    const copy = format.encrypted ? openEncrypted(keys, mkey, value.slice(4 + ID_CHARS), format.plain) : openAuthenticated(keys, mkey, value, format.pattern)
    // Only the current format under the signing secret is current: anything else is resealed.
    return copy === undefined ? undefined : { ...copy, current: format.latest && keys.id === (this.#keys[0] as SealKeys).id }
  }
}

interface SealKeys {
  readonly id: string
  readonly encryption: Buffer
  readonly authentication: Buffer
  /** Item keys derived from `encryption`, by memcached key. */
  readonly items: LRUCache<string, Buffer>
}

const IV_BYTES = 12
const TAG_BYTES = 16
const MAC_BYTES = 16
const ID_CHARS = 8
// What a copy holds once opened: a version, in format 2 a state, and the data (at least `{}`,
// base64url `e30`). Groups: version, state (format 2), data, MAC (authenticated only).
const PLAIN_1 = /^([1-9][0-9]{0,14}) ()([A-Za-z0-9_-]{3,})$/
const PLAIN_2 = /^([1-9][0-9]{0,14}) ([LE]) ([A-Za-z0-9_-]{3,})$/
const AUTHENTICATED_1 = /^a1\.[A-Za-z0-9_-]{8}\.([1-9][0-9]{0,14})\.()([A-Za-z0-9_-]{3,})\.([A-Za-z0-9_-]{22})$/
const AUTHENTICATED_2 = /^a2\.[A-Za-z0-9_-]{8}\.([1-9][0-9]{0,14})\.([LE])\.([A-Za-z0-9_-]{3,})\.([A-Za-z0-9_-]{22})$/

interface Format {
  readonly encrypted: boolean
  readonly latest: boolean
  readonly plain: RegExp
  readonly pattern: RegExp
}
const FORMATS: Readonly<Record<string, Format>> = {
  's2.': { encrypted: true, latest: true, plain: PLAIN_2, pattern: PLAIN_2 },
  'a2.': { encrypted: false, latest: true, plain: PLAIN_2, pattern: AUTHENTICATED_2 },
  's1.': { encrypted: true, latest: false, plain: PLAIN_1, pattern: PLAIN_1 },
  'a1.': { encrypted: false, latest: false, plain: PLAIN_1, pattern: AUTHENTICATED_1 }
}

/** The copy a format's match describes; format 1 has no state and was always live. */
function fromMatch (m: RegExpExecArray): StoredCopy {
  return { version: Number(m[1]), header: m[3] as string, ended: m[2] === 'E' }
}

function deriveKeys (secret: string): SealKeys {
  const ikm = Buffer.from(secret, 'utf8')
  const derive = (info: string, bytes: number): Buffer => Buffer.from(hkdfSync('sha256', ikm, 'session-sidecar', info, bytes))
  return {
    // Names the secret without revealing it: 48 bits of a derived value.
    id: derive('stored copy secret id', 6).toString('base64url'),
    encryption: derive('stored copy encryption v1', 32),
    authentication: derive('stored copy authentication v1', 32),
    items: new LRUCache<string, Buffer>({ max: ITEM_KEYS })
  }
}

/**
 * A key per memcached key: random 96-bit IVs under one key are safe for about 2^32 messages
 * (NIST SP 800-38D), which a busy fleet would reach in days; per session key, never. Derived
 * keys are kept for the sessions in use: HKDF costs more than sealing a 1 KB copy.
 */
function itemKey (keys: SealKeys, mkey: string): Buffer {
  let key = keys.items.get(mkey)
  if (key === undefined) {
    key = Buffer.from(hkdfSync('sha256', keys.encryption, '', mkey, 32))
    keys.items.set(mkey, key)
  }
  return key
}

// How many derived item keys each secret keeps (about 100 bytes each).
const ITEM_KEYS = 10_000

// IVs come from a pool filled 256 at a time: one call to the CSPRNG per 256 seals, not one
// each (its per-call cost is most of a small draw). Used before the next refill, never twice.
const ivPool = Buffer.alloc(IV_BYTES * 256)
let ivAt = ivPool.length

function nextIv (): Buffer {
  if (ivAt === ivPool.length) {
    randomFillSync(ivPool)
    ivAt = 0
  }
  ivAt += IV_BYTES
  return ivPool.subarray(ivAt - IV_BYTES, ivAt)
}

function mac (key: Buffer, body: string, mkey: string): Buffer {
  return createHmac('sha256', key).update(body, 'latin1').update('\0').update(mkey, 'latin1').digest().subarray(0, MAC_BYTES)
}

function openEncrypted (keys: SealKeys, mkey: string, text: string, plainPattern: RegExp): StoredCopy | undefined {
  const sealed = Buffer.from(text, 'base64url')
  if (sealed.length < IV_BYTES + TAG_BYTES + 5 || sealed.toString('base64url') !== text) return undefined
  try {
    const decipher = createDecipheriv('aes-256-gcm', itemKey(keys, mkey), sealed.subarray(0, IV_BYTES))
    decipher.setAAD(Buffer.from(mkey, 'latin1'))
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES))
    const plain = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]).toString('latin1')
    const m = plainPattern.exec(plain)
    return m === null ? undefined : fromMatch(m)
  } catch {
    return undefined
  }
}

function openAuthenticated (keys: SealKeys, mkey: string, value: string, pattern: RegExp): StoredCopy | undefined {
  const m = pattern.exec(value)
  if (m === null) return undefined
  const body = value.slice(0, value.lastIndexOf('.'))
  const given = Buffer.from(m[4] as string, 'base64url')
  if (given.length !== MAC_BYTES || !timingSafeEqual(given, mac(keys.authentication, body, mkey))) return undefined
  return fromMatch(m)
}
