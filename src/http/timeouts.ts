import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ServerOptions } from 'node:http'
import type { Socket } from 'node:net'
import { abortUpstream } from './upstream.js'

export interface ListenTimeouts {
  /** Longest a client may take to send a request's headers: then 408. */
  readonly headersTimeoutMs: number
  /** Longest a client may pause while sending a request body: then 408. */
  readonly bodyIdleTimeoutMs: number
  /** How long an idle keep-alive connection stays open. */
  readonly keepAliveTimeoutMs: number
}

/**
 * Node's server options for the client listener. Node checks header timeouts on an interval
 * (30 s by default): check at a quarter of the timeout so a slow client is cut close to it.
 */
export function serverOptions (timeouts: ListenTimeouts): ServerOptions {
  return {
    headersTimeout: timeouts.headersTimeoutMs,
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(timeouts.headersTimeoutMs / 4))),
    // The proxy forwards bodies and keeps no request open beyond its idle timers.
    requestTimeout: 0
  }
}

/** What the sidecar says to a client it cuts off, and counts. */
export type Generated = (status: number) => void

/**
 * `listen.bodyIdleTimeoutMs`: a request body that stops arriving is answered 408 and its
 * connection closed (the app's request is aborted with it). Time spent waiting for the app to
 * take bytes already received is not the client's pause and does not count.
 */
export function watchBodyIdle (request: FastifyRequest, reply: FastifyReply, ms: number, generated: Generated): void {
  const raw = request.raw
  const length = raw.headers['content-length']
  if (raw.complete || (raw.headers['transfer-encoding'] === undefined && (length === undefined || length === '0'))) return
  raw.setTimeout(ms, () => {
    if (raw.complete) return
    // Bytes wait for the app: the socket is paused on purpose, the client is not idle.
    if (raw.readableLength > 0) return
    const socket = raw.socket as Socket
    request.log.info({ timeoutMs: ms }, 'request body idle too long; 408')
    if (reply.raw.headersSent) {
      abortUpstream(raw, new Error('the client stopped sending the request body'))
      socket.destroy()
      return
    }
    generated(408)
    // The rest of the body will never come: the app must not wait for it either.
    abortUpstream(raw, new Error('the client stopped sending the request body'))
    reply.raw.once('finish', () => socket.destroy())
    reply.code(408).header('connection', 'close').type('text/plain; charset=utf-8').send('Request Timeout\n')
  })
  // Once the body is in, the connection's idle time is the keep-alive timer's business again.
  raw.once('end', () => raw.setTimeout(0))
}

/**
 * Node's `clientError`: requests that never became requests (malformed, smuggling attempts,
 * headers too large or too slow). Answered like Node would, but counted.
 */
export function clientErrorHandler (generated: Generated): (err: NodeJS.ErrnoException, socket: Socket) => void {
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
    const response = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage
    if (socket.writable && response?.headersSent !== true) {
      generated(status)
      const body = `${STATUS_TEXT[status] as string}\n`
      socket.write(`HTTP/1.1 ${status} ${STATUS_TEXT[status] as string}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
      // Closed once the answer is flushed; nothing more is read from this connection.
      socket.destroySoon()
      return
    }
    socket.destroy()
  }
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }
