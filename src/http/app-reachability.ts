import { connect } from 'node:net'
import type { Logger } from 'pino'

// Connection errors that mean nothing accepts connections at the app's address (crashed,
// redeploying), as opposed to one connection failing (a reset) while the app runs.
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT'])

/**
 * Whether this sidecar's app accepts connections, for /readyz: a load balancer that checks only
 * the sidecar would keep sending it a share of the traffic, answered 502, while its app is down.
 * Learnt from traffic (a request refused at the app's address) and, from then on until the app
 * accepts a connection again, from a TCP connect every `probeMs`. Up until shown otherwise.
 */
export class AppReachability {
  readonly #host: string
  readonly #port: number
  readonly #log: Logger
  readonly #probeMs: number
  #up = true
  #probe: NodeJS.Timeout | undefined
  #closed = false

  constructor (url: string, log: Logger, probeMs = 500) {
    const parsed = new URL(url)
    this.#host = parsed.hostname.replace(/^\[|\]$/g, '')
    this.#port = parsed.port === '' ? (parsed.protocol === 'https:' ? 443 : 80) : Number(parsed.port)
    this.#log = log
    this.#probeMs = probeMs
  }

  get up (): boolean { return this.#up }

  /** A request to the app failed with `errorCode`. */
  failed (errorCode: string | undefined): void {
    if (!this.#up || errorCode === undefined || !UNREACHABLE.has(errorCode)) return
    this.#up = false
    this.#log.warn({ errorCode, probeMs: this.#probeMs }, 'the app is unreachable: /readyz answers 503 until it accepts connections again')
    this.#probeLater()
  }

  /** The app answered a request. */
  answered (): void {
    if (!this.#up) this.#recovered()
  }

  close (): void {
    this.#closed = true
    clearTimeout(this.#probe)
  }

  #recovered (): void {
    this.#up = true
    clearTimeout(this.#probe)
    this.#probe = undefined
    this.#log.info('the app accepts connections again: /readyz answers 200')
  }

  #probeLater (): void {
    if (this.#closed) return
    this.#probe = setTimeout(() => {
      const socket = connect({ host: this.#host, port: this.#port, timeout: this.#probeMs })
      let settled = false
      const done = (reachable: boolean): void => {
        if (settled) return
        settled = true
        socket.destroy()
        if (this.#up || this.#closed) return
        if (reachable) this.#recovered()
        else this.#probeLater()
      }
      socket.once('connect', () => { done(true) })
      socket.once('timeout', () => { done(false) })
      socket.once('error', () => { done(false) })
    }, this.#probeMs)
    this.#probe.unref()
  }
}
