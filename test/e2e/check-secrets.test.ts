import t from 'tap'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { scratch } from '../helpers/processes.js'

// `--check` at each step of a secret rotation (README, "Secret rotation"): which secret signs
// and which only verify, by fingerprint, never the secrets themselves.

const CLI = join(process.cwd(), 'dist', 'cli.js')
const OLD = 'old-secret-0123456789abcdef'
const NEW = 'new-secret-0123456789abcdef'
// printf %s "$SECRET" | sha256sum | cut -c1-8
const OLD_FP = '5881ac79'

t.test('--check prints the signing secret and the verify-only ones by fingerprint', async (t) => {
  const { dir, cleanup } = scratch()
  t.teardown(cleanup)
  const file = join(dir, 'rotation.yaml')
  writeFileSync(file, [
    'session:',
    '  secrets: ["${SESSION_SECRET}"]',
    '  verifyOnly: ["${SESSION_SECRET_VERIFY_ONLY:-}"]',
    'memcached: { nodes: ["127.0.0.1:11211"], allow: ["127.0.0.0/8"] }',
    ''
  ].join('\n'))
  const check = (env: Record<string, string>): { status: number | null, stdout: string, stderr: string } =>
    spawnSync(process.execPath, [CLI, '--check', '--config', file], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' })
  const fp = (secret: string): string => spawnSync('sh', ['-c', 'printf %s "$S" | sha256sum | cut -c1-8'], { env: { PATH: process.env.PATH, S: secret }, encoding: 'utf8' }).stdout.trim()
  t.equal(fp(OLD), OLD_FP, 'sha256sum agrees on the fingerprint')
  const NEW_FP = fp(NEW)

  const before = check({ SESSION_SECRET: OLD })
  t.equal(before.status, 0, before.stderr)
  t.match(before.stdout, `session secrets (first 8 hex digits of SHA-256):\n  signs:       ${OLD_FP}\n  verify-only: none\n  1 verify cookies and open stored copies\n`)

  const phase1 = check({ SESSION_SECRET: OLD, SESSION_SECRET_VERIFY_ONLY: NEW })
  t.equal(phase1.status, 0, phase1.stderr)
  t.match(phase1.stdout, `  signs:       ${OLD_FP}\n  verify-only: ${NEW_FP}\n  2 verify cookies and open stored copies\n`, 'phase 1: the old one signs, the new one verifies')

  const phase2 = check({ SESSION_SECRET: NEW, SESSION_SECRET_VERIFY_ONLY: OLD })
  t.equal(phase2.status, 0, phase2.stderr)
  t.match(phase2.stdout, `  signs:       ${NEW_FP}\n  verify-only: ${OLD_FP}\n`, 'phase 2: swapped')
  for (const r of [before, phase1, phase2]) {
    t.notMatch(r.stdout + r.stderr, OLD, 'never the secret itself')
    t.notMatch(r.stdout + r.stderr, NEW)
  }

  const same = check({ SESSION_SECRET: NEW, SESSION_SECRET_VERIFY_ONLY: NEW })
  t.equal(same.status, 2, 'the same secret in both lists is a bad config')
  t.match(same.stderr, 'session.verifyOnly[0]: is also in session.secrets')
})
