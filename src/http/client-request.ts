import type { IncomingMessage } from 'node:http'
import { clientTarget } from './upstream.js'

// What the client listener refuses before any other work (400), and how an odd target is
// routed: RFC 9112's rules on Host lines and request targets.

/** RFC 9112 section 3.2: two Host lines are refused (which one would the app believe?). */
export function acceptHost (raw: IncomingMessage): boolean {
  const lines = raw.rawHeaders
  let n = 0
  for (let i = 0; i < lines.length; i += 2) {
    const name = lines[i] as string
    if (name.length === 4 && name.toLowerCase() === 'host') n++
  }
  return n <= 1
}

/**
 * An absolute-form target (`GET http://host/path`) names the host itself: RFC 9112 section
 * 3.2.2 has it win over the Host line, so the app gets it as Host. One that does not parse is
 * refused (the app would otherwise get some other path). `OPTIONS *` passes (as `OPTIONS /`:
 * undici cannot send the asterisk form).
 */
export function acceptTarget (raw: IncomingMessage): boolean {
  const target = clientTarget(raw)
  if (target.charCodeAt(0) === 47 /* / */ || (target === '*' && raw.method === 'OPTIONS')) return true
  let url: URL
  try {
    url = new URL(target)
  } catch {
    return false
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false
  raw.headers.host = url.host
  return true
}

/** A target fastify and @fastify/http-proxy accept: origin form, valid escapes, no dot segments. */
export function routable (url: string): boolean {
  if (url.charCodeAt(0) !== 47 /* / */ || url.charCodeAt(1) === 47) return false
  // The common case costs two scans.
  if (!url.includes('%') && !url.includes('..') && !url.includes('\\')) return true
  try {
    const q = url.indexOf('?')
    decodeURIComponent(q < 0 ? url : url.slice(q + 1))
    return !decodeURIComponent(q < 0 ? url : url.slice(0, q)).replaceAll('\\', '/').split('/').includes('..')
  } catch {
    return false
  }
}
