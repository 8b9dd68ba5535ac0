import { BlockList, isIP } from 'node:net'

/** A memcached address as written in cookies and config: `host:port`, `[v6]:port` for IPv6. */
export interface Address {
  readonly host: string
  readonly port: number
  /** 0 for a hostname, 4 or 6 for an IP literal. */
  readonly family: 0 | 4 | 6
  /** Canonical text, the form stored in cookies and used as the node's identity. */
  readonly text: string
}

// RFC 1123 labels; '~' and ';' can never appear, which keeps the cookie format unambiguous.
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i
const PORT = /^[0-9]{1,5}$/
const NUMERIC_LABEL = /(?:^|\.)[0-9]+$/

/** Parses `host:port` or `[v6]:port`; returns undefined for anything else. */
export function parseAddress (text: string): Address | undefined {
  let host: string
  let portText: string
  if (text.charCodeAt(0) === 91 /* [ */) {
    const close = text.indexOf(']')
    if (close < 0 || text.charCodeAt(close + 1) !== 58 /* : */) return undefined
    host = text.slice(1, close)
    portText = text.slice(close + 2)
    if (isIP(host) !== 6) return undefined
  } else {
    const colon = text.lastIndexOf(':')
    if (colon <= 0) return undefined
    host = text.slice(0, colon)
    portText = text.slice(colon + 1)
    // A dotted-number name that is not an IPv4 literal (010.0.0.1, 1.2.3) is read by resolvers
    // as some other IPv4 address: refuse it (RFC 1123 2.1).
    if (isIP(host) !== 4 && (!HOSTNAME.test(host) || NUMERIC_LABEL.test(host))) return undefined
  }
  if (!PORT.test(portText)) return undefined
  const port = Number(portText)
  if (port < 1 || port > 65535) return undefined
  const family = isIP(host) as 0 | 4 | 6
  // IPv6 in its one canonical spelling (lower case, zeros compressed), so a node has one identity.
  const canonicalHost = family === 6 ? new URL(`http://[${host}]/`).hostname.slice(1, -1) : family === 0 ? host.toLowerCase() : host
  return {
    host: canonicalHost,
    port,
    family,
    text: family === 6 ? `[${canonicalHost}]:${port}` : `${canonicalHost}:${port}`
  }
}

/**
 * `memcached.allow`: CIDRs for IP literals and host globs for names, where `*` stands for one
 * or more whole labels (`*.cache.internal`). An empty list allows every signed address.
 */
export class AddressAllowList {
  readonly #blocks = new BlockList()
  readonly #globs: RegExp[] = []
  readonly #allowAll: boolean

  constructor (rules: readonly string[]) {
    this.#allowAll = rules.length === 0
    for (const rule of rules) {
      const problem = AddressAllowList.add(rule, this.#blocks, this.#globs)
      if (problem !== undefined) throw new TypeError(problem)
    }
  }

  /** Returns a description of what is wrong with a rule, or undefined when it is valid. */
  static check (rule: string): string | undefined {
    return AddressAllowList.add(rule, new BlockList(), [])
  }

  private static add (rule: string, blocks: BlockList, globs: RegExp[]): string | undefined {
    const ip = addIpRule(rule, blocks)
    if (ip !== false) return ip
    const labels = rule.toLowerCase().split('.')
    const pattern: string[] = []
    for (const label of labels) {
      if (label === '*') pattern.push('[a-z0-9-]+(?:\\.[a-z0-9-]+)*')
      else if (/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(label)) pattern.push(label)
      // At the end of a label, * is any run of label characters, never a dot: memcached-*
      // (compose's service names).
      else if (/^[a-z0-9][a-z0-9-]*\*$/.test(label)) pattern.push(`${label.slice(0, -1)}[a-z0-9-]*`)
      else return `"${rule}" is neither a CIDR nor a host glob (labels, or * for one or more labels)`
    }
    globs.push(new RegExp(`^${pattern.join('\\.')}$`))
    return undefined
  }

  allows (address: Address): boolean {
    if (this.#allowAll) return true
    if (address.family !== 0) return this.#blocks.check(address.host, address.family === 4 ? 'ipv4' : 'ipv6')
    for (const glob of this.#globs) if (glob.test(address.host)) return true
    return false
  }
}

/**
 * Adds an IP literal or a CIDR to `blocks`. Returns what is wrong with it, undefined when it
 * was added, or false when `rule` is neither (so a caller may read it as a host name).
 */
export function addIpRule (rule: string, blocks: BlockList): string | undefined | false {
  const slash = rule.indexOf('/')
  if (slash >= 0) {
    const net = rule.slice(0, slash)
    const bitsText = rule.slice(slash + 1)
    const family = isIP(net)
    const bits = Number(bitsText)
    if (family === 0) return `"${rule}" is not a CIDR (bad network address)`
    if (!/^[0-9]{1,3}$/.test(bitsText) || bits > (family === 4 ? 32 : 128)) {
      return `"${rule}" is not a CIDR (bad prefix length)`
    }
    blocks.addSubnet(net, bits, family === 4 ? 'ipv4' : 'ipv6')
    return undefined
  }
  const family = isIP(rule)
  if (family === 0) return false
  blocks.addAddress(rule, family === 4 ? 'ipv4' : 'ipv6')
  return undefined
}
