import { pino, type Logger } from 'pino'

/**
 * pino, with the places a cookie or session data could end up censored anyway: the sidecar
 * never logs them itself, but a request or error object logged whole would carry headers.
 */
export function createLogger (level: string, destination?: pino.DestinationStream): Logger {
  return pino({
    level,
    base: { name: 'session-sidecar' },
    redact: {
      paths: [
        'req.headers.cookie', 'req.headers["x-session"]', 'res.headers["set-cookie"]',
        'headers.cookie', 'headers["set-cookie"]', 'headers["x-session"]'
      ],
      censor: '[redacted]'
    }
  }, destination)
}
