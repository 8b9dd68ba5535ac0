/**
 * Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the
 * ones a proxy must not forward as sent: Proxy-Connection (a non-standard twin of Connection
 * that old clients still send), Transfer-Encoding (undici and Node frame each hop themselves)
 * and Expect (Node's server answers `100 Continue` to the client itself; undici refuses it).
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'expect', 'http2-settings'])

/** True for a lower-case header name that never crosses the proxy. */
export function isHopByHop (name: string): boolean {
  return HOP_BY_HOP.has(name)
}

/** The lower-case header names a Connection header lists (they are hop-by-hop too). */
export function connectionTokens (value: string | string[] | undefined): Set<string> | undefined {
  // The usual values name no other header: no Set for them (this runs twice per request).
  if (value === undefined || NO_TOKENS.has(value as string)) return undefined
  const tokens = new Set<string>()
  for (const line of Array.isArray(value) ? value : [value]) {
    for (const token of line.split(',')) {
      const name = token.trim().toLowerCase()
      if (name !== '') tokens.add(name)
    }
  }
  return tokens
}

/**
 * Removes the hop-by-hop headers of an app response before it is copied to the client's.
 * (Upgrade answers, 101, take the WebSocket path and never come here.)
 */
export function stripResponseHopByHop (headers: Record<string, unknown>): void {
  const listed = connectionTokens(headers.connection as string | string[] | undefined)
  if (listed !== undefined) for (const name of listed) delete headers[name]
  // Only what is there: a delete turns the object into a slow dictionary for what follows.
  for (const name of RESPONSE_HOP_BY_HOP) if (headers[name] !== undefined) delete headers[name]
}

const RESPONSE_HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'upgrade']
const NO_TOKENS = new Set(['keep-alive', 'close', 'Keep-Alive', 'Close'])
