import { createHash } from 'node:crypto'

/** The session section's secrets: `secrets[0]` signs; the rest of them and `verifyOnly` only verify. */
export interface SessionSecrets {
  readonly secrets: readonly string[]
  readonly verifyOnly: readonly string[]
}

/**
 * Every secret a sidecar holds, the signer first: what CookieCodec and CopySeal take (the first
 * signs cookies and seals copies; all of them verify cookies and open copies). A verify-only
 * secret is how a rotation starts: every instance learns it before any instance signs with it.
 */
export function keyring ({ secrets, verifyOnly }: SessionSecrets): string[] {
  return [...secrets, ...verifyOnly]
}

/**
 * Names a secret without showing it: the first 8 hex digits of its SHA-256, as
 * `printf %s "$SECRET" | sha256sum | cut -c1-8` prints them (`--check` lists them).
 */
export function fingerprint (secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex').slice(0, 8)
}
