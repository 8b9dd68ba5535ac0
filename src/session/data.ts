import { LosslessNumber, parse as parseLossless, stringify as stringifyLossless } from 'lossless-json'
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

// JSON.parse reads every number as a double: 1152921504606846977 (a 64-bit id) comes back as
// 1152921504606847000, 1.0 as 1, -0 as 0, 1e400 as null. A text that may hold such a number
// (16 digits or more, an exponent, a fraction ending in 0, -0, a point and six zeros; a false
// alarm costs only time) is parsed by lossless-json instead, which keeps each number that would
// not come back as written as its text, and writes it back verbatim. A number ends where JSON
// allows it to: before whitespace, `,`, `]` or `}`.
const END = '(?=[\\s,\\]}]|$)'
const INEXACT = new RegExp(`(?:\\d\\.?){16}\\d*${END}|\\d[eE][+-]?\\d+${END}|\\d\\.\\d*0${END}|-0${END}|\\d\\.0{6}`)
// How JSON.stringify writes a LosslessNumber: the sign that data holds one.
const LOSSLESS = '"isLosslessNumber":true'
// Until a number is first kept as text, no data can hold one: nothing to look for.
let kept = false

/** A number as JSON.parse reads it when that gives it back as written, else its text kept. */
function exactNumber (text: string): unknown {
  const value = Number(text)
  if (String(value) === text) return value
  kept = true
  return new LosslessNumber(text)
}

/** JSON.parse, keeping every number as written (see INEXACT); duplicate names: the last wins, as with JSON.parse. */
export function parseExact (text: string): unknown {
  if (!INEXACT.test(text)) return JSON.parse(text)
  return parseLossless(text, null, { parseNumber: exactNumber, onDuplicateKey: ({ newValue }) => newValue })
}

/** JSON.stringify, writing numbers kept by parseExact as they were read. */
export function stringifyExact (data: unknown): string {
  const text = JSON.stringify(data)
  return kept && text.includes(LOSSLESS) ? stringifyLossless(data) as string : text
}

/** Decodes an app header into a JSON value; `maxBytes` bounds the work before any parsing. */
export function decodeJson (value: string, header: string, maxBytes: number): unknown {
  // Compact JSON of maxBytes is at most ~4/3 as base64; allow whitespace the app may send.
  if (value.length > maxBytes * 4) throw new RefusedUpdate('too-large', header)
  if (!BASE64.test(value)) throw new RefusedUpdate('invalid-base64', header)
  const text = Buffer.from(value, 'base64').toString('utf8')
  try {
    return parseExact(text)
  } catch {
    throw new RefusedUpdate('invalid-json', header)
  }
}

export function isObject (value: unknown): value is SessionObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof LosslessNumber)
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
  const text = Buffer.from(header, 'base64url').toString('utf8')
  let parsed: unknown
  try {
    parsed = parseExact(text)
  } catch {
    // lossless-json recurses: data nested past its stack is still read, numbers as doubles.
    try {
      parsed = JSON.parse(text)
    } catch {
      return {}
    }
  }
  return isObject(parsed) ? parsed : {}
}

export function encodeObject (data: SessionObject, header: string, maxBytes: number): EncodedData {
  // One UTF-8 encoding serves both the size check and the base64url.
  const utf8 = Buffer.from(stringifyExact(data))
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
