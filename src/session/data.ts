import { RefusedUpdate } from '../errors.js'

/**
 * Session data as it crosses the header protocol: base64url of a UTF-8 JSON object.
 * JSON is parsed only when the app changes the session; reads pass the stored text along.
 */
export type SessionObject = Record<string, unknown>

export interface EncodedData {
  /** base64url(JSON): the X-Session header value, also what memcached stores. */
  readonly header: string
  /** Bytes of compact JSON, checked against session.maxBytes. */
  readonly bytes: number
}

/** Deeper data is refused: merging recurses, and no real session nests this far. */
export const MAX_DEPTH = 64

// Apps may pad, and some encoders emit the standard alphabet: accept both, emit base64url.
const BASE64 = /^[A-Za-z0-9_+/-]*={0,2}$/

export const EMPTY_HEADER = Buffer.from('{}').toString('base64url')

/** Decodes an app header into a JSON value; `maxBytes` bounds the work before any parsing. */
export function decodeJson (value: string, header: string, maxBytes: number): unknown {
  // Compact JSON of maxBytes is at most ~4/3 as base64; allow whitespace the app may send.
  if (value.length > maxBytes * 4) throw new RefusedUpdate('too-large', header)
  if (!BASE64.test(value)) throw new RefusedUpdate('invalid-base64', header)
  const text = Buffer.from(value, 'base64').toString('utf8')
  try {
    return JSON.parse(text)
  } catch {
    throw new RefusedUpdate('invalid-json', header)
  }
}

export function isObject (value: unknown): value is SessionObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

export function decodeObject (value: string, header: string, maxBytes: number): SessionObject {
  const parsed = decodeJson(value, header, maxBytes)
  if (!isObject(parsed)) throw new RefusedUpdate('not-an-object', header)
  return parsed
}

/**
 * Reads stored data back into an object (only needed to apply a merge patch). A copy that is
 * not a JSON object (written by something else) counts as empty rather than failing the change.
 */
export function parseStored (header: string): SessionObject {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'))
    return isObject(parsed) ? parsed : {}
  } catch {
    return {}
  }
}

export function encodeObject (data: SessionObject, header: string, maxBytes: number): EncodedData {
  // One UTF-8 encoding serves both the size check and the base64url.
  const utf8 = Buffer.from(JSON.stringify(data))
  if (utf8.length > maxBytes) throw new RefusedUpdate('too-large', header)
  return { header: utf8.toString('base64url'), bytes: utf8.length }
}

/** Sets a member as plain data: assignment would turn a "__proto__" member into a prototype. */
export function setMember (target: SessionObject, name: string, value: unknown): void {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true })
}

/**
 * RFC 7396 JSON Merge Patch. Returns a new value; neither argument is modified. Throws
 * RefusedUpdate('too-deep') past MAX_DEPTH levels instead of exhausting the stack.
 */
export function mergePatch (target: unknown, patch: unknown, depth = 0): unknown {
  if (!isObject(patch)) return patch
  if (depth >= MAX_DEPTH) throw new RefusedUpdate('too-deep', 'X-Session-Merge')
  const result: SessionObject = isObject(target) ? { ...target } : {}
  for (const [name, value] of Object.entries(patch)) {
    if (value === null) delete result[name]
    else setMember(result, name, mergePatch(result[name], value, depth + 1))
  }
  return result
}
