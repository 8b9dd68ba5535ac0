import type { FastifyReply, FastifyRequest } from 'fastify'
import { STATUS_CODES, type ServerOptions } from 'node:http'
import type { Socket } from 'node:net'
import type { Generated } from '../metrics.js'
import { abortUpstream, hasBody } from './upstream.js'

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

/**
 * `listen.bodyIdleTimeoutMs`: a request body that stops arriving is answered 408 and its
 * connection closed (the app's request is aborted with it). Idle means no byte read from the
 * client's socket for that long while the sidecar was reading it: when Node stopped reading
 * because bytes wait for the app (the buffer is full), the pause is not the client's.
 */
export function watchBodyIdle (request: FastifyRequest, reply: FastifyReply, ms: number, generated: Generated): void {
  const raw = request.raw
  if (raw.complete || !hasBody(raw)) return
  const socket = raw.socket as Socket
  let bytes = socket.bytesRead
  let lastProgress = performance.now()
  const timer = setInterval(() => {
    if (raw.complete || socket.destroyed) {
      clearInterval(timer)
      return
    }
    const now = performance.now()
    if (socket.bytesRead !== bytes || raw.readableLength >= raw.readableHighWaterMark) {
      bytes = socket.bytesRead
      lastProgress = now
      return
    }
    if (now - lastProgress < ms) return
    clearInterval(timer)
    request.log.info({ timeoutMs: ms }, 'request body idle too long; 408')
    // The rest of the body will never come: the app must not wait for it either.
    abortUpstream(raw, new Error('the client stopped sending the request body'))
    if (reply.raw.headersSent) {
      socket.destroy()
      return
    }
    generated(408, 'client-timeout')
    reply.raw.once('finish', () => socket.destroy())
    reply.code(408).header('connection', 'close').type('text/plain; charset=utf-8').send('Request Timeout\n')
  }, Math.max(10, Math.floor(ms / 4)))
  timer.unref()
  reply.raw.once('close', () => clearInterval(timer))
}

/**
 * Node's `clientError`: requests that never became requests (malformed, smuggling attempts,
 * headers too large or too slow). Answered like Node would, but counted.
 */
export function clientErrorHandler (generated: Generated): (err: NodeJS.ErrnoException, socket: Socket) => void {
  return (err, socket) => {
    if (socket.destroyed) return
    // The client left (a reset, or its end of the connection before the request was whole):
    // nobody to answer.
    if (err.code === 'ECONNRESET' || err.code === 'HPE_INVALID_EOF_STATE') {
      socket.destroy()
      return
    }
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
    const response = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage
    if (socket.writable && response?.headersSent !== true) {
      generated(status, status === 408 ? 'client-timeout' : status === 431 ? 'headers-too-large' : 'bad-request')
      const text = STATUS_CODES[status] as string
      const body = `${text}\n`
      socket.write(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
      // Closed once the answer is flushed; nothing more is read from this connection.
      socket.destroySoon()
      return
    }
    socket.destroy()
  }
}
