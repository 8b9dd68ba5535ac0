import { BlockList, isIP, type Socket } from 'node:net'
import { addIpRule } from '../memcached/address.js'

/** Returns what is wrong with a `listen.trustProxies` entry, or undefined. */
export function checkTrustRule (rule: string): string | undefined {
  const problem = addIpRule(rule, new BlockList())
  return problem === false ? `"${rule}" is not an IP address or CIDR` : problem
}

/** The forwarding headers the app receives, already joined with what a trusted peer sent. */
export interface ForwardedValues {
  readonly for: string
  readonly proto: string
  readonly host: string | undefined
  /** RFC 7239 `Forwarded`: ours (`listen.forwarded`), or a trusted peer's as it sent it. */
  readonly forwarded: string | undefined
}

/** What the client sent, collected from its raw header lines (several lines are joined). */
export interface ClientForwarding {
  xForwardedFor: string | undefined
  xForwardedProto: string | undefined
  xForwardedHost: string | undefined
  forwarded: string | undefined
}

/** The connection's peer: its address, and whether its own forwarding headers are believed. */
export interface Peer { readonly address: string, readonly trusted: boolean }
const PEER = Symbol('session-sidecar.peer')

/**
 * X-Forwarded-For/-Proto/-Host (and optionally RFC 7239 Forwarded): appended to or kept from a
 * trusted peer, replaced for anyone else. A connection's peer is classified once.
 */
export class Forwarding {
  readonly #trusted = new BlockList()
  readonly #forwarded: boolean

  constructor (trustProxies: readonly string[], forwarded: boolean) {
    for (const rule of trustProxies) {
      const problem = addIpRule(rule, this.#trusted)
      if (problem !== undefined) throw new TypeError(problem === false ? `"${rule}" is not an IP address or CIDR` : problem)
    }
    this.#forwarded = forwarded
  }

  /** Whether this peer's own forwarding headers are kept (and extended). */
  peer (socket: Socket): Peer {
    const known = (socket as Socket & { [PEER]?: Peer })[PEER]
    if (known !== undefined) return known
    let address = socket.remoteAddress ?? ''
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; the app expects a.b.c.d.
    if (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) address = address.slice(7)
    const family = isIP(address)
    const peer = { address, trusted: family !== 0 && this.#trusted.check(address, family === 4 ? 'ipv4' : 'ipv6') }
    ;(socket as Socket & { [PEER]?: Peer })[PEER] = peer
    return peer
  }

  values (socket: Socket, peer: Peer, host: string | undefined, sent: ClientForwarding): ForwardedValues {
    const keep = peer.trusted
    const proto = (socket as Socket & { encrypted?: boolean }).encrypted === true ? 'https' : 'http'
    return {
      for: keep && sent.xForwardedFor !== undefined ? `${sent.xForwardedFor}, ${peer.address}` : peer.address,
      proto: keep && sent.xForwardedProto !== undefined ? sent.xForwardedProto : proto,
      host: keep && sent.xForwardedHost !== undefined ? sent.xForwardedHost : host,
      // Off, a trusted peer's own Forwarded still passes unchanged; nobody else's does.
      forwarded: this.#forwarded ? this.#element(peer, proto, host, keep ? sent.forwarded : undefined) : keep ? sent.forwarded : undefined
    }
  }

  #element (peer: Peer, proto: string, host: string | undefined, previous: string | undefined): string {
    // RFC 7239 section 6: IPv6 nodes are quoted and bracketed.
    const node = isIP(peer.address) === 6 ? `"[${peer.address}]"` : peer.address === '' ? 'unknown' : peer.address
    let element = `for=${node};proto=${proto}`
    if (host !== undefined) element += `;host=${quoteIfNeeded(host)}`
    return previous === undefined ? element : `${previous}, ${element}`
  }
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
function quoteIfNeeded (value: string): string {
  return TOKEN.test(value) ? value : `"${value.replace(/["\\]/g, '\\$&')}"`
}
