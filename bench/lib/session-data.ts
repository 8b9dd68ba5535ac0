/** Bytes of compact JSON in every benchmark session ("a 1 KB session"). */
export const SESSION_JSON_BYTES = 1024

/**
 * A plausible session of exactly `bytes` (default SESSION_JSON_BYTES) of compact JSON,
 * different for each `i` (so no two cached sessions can share a string).
 */
export function sessionData (i: number, bytes = SESSION_JSON_BYTES): Record<string, unknown> {
  const data: Record<string, unknown> = {
    user: `user-${String(i).padStart(8, '0')}`,
    roles: ['reader', 'writer'],
    locale: 'en-GB',
    theme: 'dark',
    cart: [{ sku: 'A-1001', qty: 2 }, { sku: 'B-2002', qty: 1 }],
    csrf: `csrf-${i.toString(36).padStart(12, '0')}`,
    pad: ''
  }
  const missing = bytes - Buffer.byteLength(JSON.stringify(data))
  if (missing < 0) throw new Error(`a session needs at least ${bytes - missing} bytes of JSON`)
  data.pad = 'x'.repeat(missing)
  return data
}

export const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
