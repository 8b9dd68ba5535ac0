import { createHash, randomBytes } from 'node:crypto'

/** 128 random bits, base64url: exactly 22 characters of this alphabet. */
export const KEY_PATTERN = /^[A-Za-z0-9_-]{22}$/

/** Mints a session key from the CSPRNG. Keys are never taken from clients. */
export function mintKey (): string {
  return randomBytes(16).toString('base64url')
}

/** A short, non-reversible tag for logs: enough to correlate lines, useless to hijack. */
export function keyHash (key: string): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, 12)
}
