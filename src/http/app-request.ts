import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { SessionCookieHeaders } from './cookies.js'
import { Forwarding, type ClientForwarding } from './forwarding.js'
import { connectionTokens, isHopByHop } from './hop-by-hop.js'
import { foldHeaderName, type HeaderProtocol } from './protocol.js'

/** The session handed to the app: its key and its data, already base64url JSON. */
export interface AppSession {
  readonly key: string
  readonly header: string
}

/**
 * The header lines the app receives: the client's own lines in their order and spelling
 * (duplicates kept) after the client's Host, except hop-by-hop headers, client `X-Session*`
 * headers (and look-alikes of them and of the forwarding headers), the sidecar's cookie, and
 * headers claiming the client's address or scheme unless a trusted proxy sent them; then the
 * forwarding headers and the session headers.
 */
export class AppRequestHeaders {
  readonly #protocol: HeaderProtocol
  readonly #cookies: SessionCookieHeaders
  readonly #forwarding: Forwarding

  constructor (protocol: HeaderProtocol, cookies: SessionCookieHeaders, forwarding: Forwarding) {
    this.#protocol = protocol
    this.#cookies = cookies
    this.#forwarding = forwarding
  }

  /** A flat `[name, value, name, value, ...]` list, as undici takes it. */
  build (raw: IncomingMessage, session: AppSession | undefined, unavailable: boolean): string[] {
    const lines = raw.rawHeaders
    const host = raw.headers.host
    const out: string[] = host === undefined ? [] : ['Host', host]
    const listed = connectionTokens(raw.headers.connection)
    const sent: ClientForwarding = { xForwardedFor: undefined, xForwardedProto: undefined, xForwardedHost: undefined, forwarded: undefined }
    const cookieName = this.#cookies.name
    const peer = this.#forwarding.peer(raw.socket as Socket)
    for (let i = 0; i < lines.length; i += 2) {
      const name = lines[i] as string
      const value = lines[i + 1] as string
      const lower = name.toLowerCase()
      if (lower === 'host' || isHopByHop(lower) || listed?.has(lower) === true || this.#protocol.isPrefixed(lower)) continue
      switch (lower) {
        // The last line of a single-valued one wins: it is the nearest proxy's.
        case 'x-forwarded-for': sent.xForwardedFor = joined(sent.xForwardedFor, value); continue
        case 'x-forwarded-proto': sent.xForwardedProto = value; continue
        case 'x-forwarded-host': sent.xForwardedHost = value; continue
        case 'forwarded': sent.forwarded = joined(sent.forwarded, value); continue
        case 'cookie':
          if (value.includes(cookieName)) {
            const rest = this.#cookies.remove(value)
            if (rest !== undefined) out.push(name, rest)
            continue
          }
      }
      if (lower !== 'cookie') {
        const folded = foldHeaderName(lower)
        // A look-alike (`X_Forwarded_Host`: CGI-style apps read it as X-Forwarded-Host) is
        // dropped, never believed: a load balancer replaces only the exact name.
        if (FORWARDING.has(folded)) continue
        // The other headers apps take the client's address or scheme from: only a trusted
        // proxy may send them, in their exact spelling.
        if (claimsClient(folded) && (!peer.trusted || folded !== lower)) continue
      }
      out.push(name, value)
    }
    const forwarded = this.#forwarding.values(raw.socket as Socket, peer, host, sent)
    const own = ['X-Forwarded-For', forwarded.for, 'X-Forwarded-Proto', forwarded.proto]
    if (forwarded.host !== undefined) own.push('X-Forwarded-Host', forwarded.host)
    if (forwarded.forwarded !== undefined) own.push('Forwarded', forwarded.forwarded)
    if (session !== undefined) own.push(this.#protocol.idHeader, session.key, this.#protocol.dataHeader, session.header)
    else if (unavailable) own.push(this.#protocol.unavailableHeader, '1')
    // Right after Host, before the client's: an app that keeps only its first N header lines
    // (Node drops those past 2,000 entries) loses the client's extra lines, never the
    // forwarding or session headers (without X-Forwarded-For, it would take the request for
    // one from the sidecar's own address).
    out.splice(host === undefined ? 0 : 2, 0, ...own)
    return out
  }
}

const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded'])

/**
 * Beyond the three the sidecar sets, headers frameworks believe about the client: every other
 * `X-Forwarded-*` (Port, Prefix, Ssl, Scheme, Server: Werkzeug's ProxyFix, Rack, Symfony,
 * Laravel), the address headers of nginx and CDNs, and Rack's scheme headers.
 */
const CLIENT_CLAIMS = new Set(['x-real-ip', 'x-client-ip', 'true-client-ip', 'x-cluster-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-url-scheme', 'front-end-https'])

function claimsClient (folded: string): boolean {
  return folded.startsWith('x-forwarded-') || CLIENT_CLAIMS.has(folded)
}

function joined (previous: string | undefined, value: string): string {
  return previous === undefined ? value : `${previous}, ${value}`
}
