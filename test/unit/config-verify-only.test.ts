import t from 'tap'
import { buildConfig } from '../../src/config/index.js'
import { ConfigError } from '../../src/errors.js'
import { CookieCodec } from '../../src/session/cookie.js'
import { CopySeal } from '../../src/session/sealed-copy.js'
import { fingerprint, keyring } from '../../src/session/secrets.js'

// session.verifyOnly: secrets that verify cookies and open copies but never sign (the two
// phases of a rotation, README "Secret rotation"); the same rules as session.secrets.

const OLD = 'old-secret-0123456789abcdef'
const NEW = 'new-secret-0123456789abcdef'
const NODES = ['127.0.0.1:11211']

/** The problem lines of a config the builder refuses, or 'accepted'. */
function problemsOf (raw: unknown, env: Record<string, string> = {}): readonly string[] | 'accepted' {
  try {
    buildConfig(raw, env)
    return 'accepted'
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
}

const session = (s: Record<string, unknown>): Record<string, unknown> => ({ session: s, memcached: { nodes: NODES } })

t.test('absent, empty or null: no verify-only secret', async (t) => {
  for (const verifyOnly of [undefined, null, []]) {
    t.same(buildConfig(session({ secrets: [NEW], verifyOnly }), {}).session.verifyOnly, [], String(JSON.stringify(verifyOnly)))
  }
})

t.test('phase 1 and phase 2 configs: the signer first, the verify-only ones after it', async (t) => {
  const phase1 = buildConfig(session({ secrets: [OLD], verifyOnly: [NEW] }), {}).session
  t.same([phase1.secrets, phase1.verifyOnly], [[OLD], [NEW]])
  t.same(keyring(phase1), [OLD, NEW])
  const phase2 = buildConfig(session({ secrets: [NEW], verifyOnly: [OLD] }), {}).session
  t.same(keyring(phase2), [NEW, OLD])
  t.ok(Object.isFrozen(phase2.verifyOnly), 'frozen like the rest')
  const older = buildConfig(session({ secrets: [NEW, OLD] }), {}).session
  t.same([older.secrets, older.verifyOnly, keyring(older)], [[NEW, OLD], [], [NEW, OLD]], 'the one-list form still means the same: the first signs')
})

t.test('an empty entry is skipped: ${VAR:-} keeps a slot for an optional variable', async (t) => {
  const raw = session({ secrets: ['${SESSION_SECRET}'], verifyOnly: ['${SESSION_SECRET_VERIFY_ONLY:-}'] })
  t.same(buildConfig(raw, { SESSION_SECRET: NEW }).session.verifyOnly, [], 'unset: an empty list')
  t.same(buildConfig(raw, { SESSION_SECRET: NEW, SESSION_SECRET_VERIFY_ONLY: '' }).session.verifyOnly, [], 'set but empty: the same')
  t.same(buildConfig(raw, { SESSION_SECRET: NEW, SESSION_SECRET_VERIFY_ONLY: OLD }).session.verifyOnly, [OLD], 'set: that secret')
  t.same(buildConfig(session({ secrets: [NEW], verifyOnly: ['', OLD, ''] }), {}).session.verifyOnly, [OLD])
})

t.test('an unset variable without a default is a problem, as in session.secrets', async (t) => {
  t.same(problemsOf(session({ secrets: [NEW], verifyOnly: ['${NEXT_SECRET}'] })),
    ['session.verifyOnly[0]: environment variable NEXT_SECRET is not set'])
})

t.test('verify-only secrets without a signer: refused', async (t) => {
  t.same(problemsOf(session({ verifyOnly: [NEW] })),
    ['session.secrets: required, a list of at least one secret (refusing to start without one); session.verifyOnly never signs'])
  t.same(problemsOf(session({ secrets: [], verifyOnly: [NEW] })),
    ['session.secrets: required, a list of at least one secret (refusing to start without one); session.verifyOnly never signs'])
  t.same(problemsOf(session({ secrets: ['${SESSION_SECRET}'], verifyOnly: [OLD] })),
    ['session.secrets[0]: environment variable SESSION_SECRET is not set'], 'an unset signer: only the cause')
})

t.test('each at least 16 characters, by its index as written', async (t) => {
  t.same(problemsOf(session({ secrets: [NEW], verifyOnly: ['', 'x'.repeat(15)] })),
    ['session.verifyOnly[1]: must be at least 16 characters'])
  t.same(buildConfig(session({ secrets: [NEW], verifyOnly: ['x'.repeat(16)] }), {}).session.verifyOnly, ['x'.repeat(16)], '16 is enough')
})

t.test('each secret once: not twice in verifyOnly, not in both lists', async (t) => {
  t.same(problemsOf(session({ secrets: [NEW], verifyOnly: [OLD, OLD] })), ['session.verifyOnly[1]: is listed twice'])
  t.same(problemsOf(session({ secrets: [NEW], verifyOnly: [NEW] })),
    ['session.verifyOnly[0]: is also in session.secrets (list each secret once: it signs or only verifies)'])
  t.same(problemsOf(session({ secrets: [NEW, OLD], verifyOnly: [OLD] })),
    ['session.verifyOnly[0]: is also in session.secrets (list each secret once: it signs or only verifies)'], 'also against a further entry of session.secrets')
  t.same(problemsOf(session({ secrets: [OLD], verifyOnly: ['${A}'] }), { A: OLD }),
    ['session.verifyOnly[0]: is also in session.secrets (list each secret once: it signs or only verifies)'], 'the same value from two variables')
})

t.test('a list of strings; a number is taken as its text', async (t) => {
  t.same(problemsOf(session({ secrets: [NEW], verifyOnly: OLD })), ['session.verifyOnly: must be a list of strings'])
  t.same(problemsOf(session({ secrets: [NEW], verifyOnly: [{ secret: OLD }] })), ['session.verifyOnly[0]: must be a string'])
  t.same(buildConfig(session({ secrets: [NEW], verifyOnly: [1234567890123456] }), {}).session.verifyOnly, ['1234567890123456'], 'YAML reads unquoted digits as a number')
})

t.test('a verify-only secret verifies cookies and opens copies, never signs or seals', async (t) => {
  const phase1 = keyring(buildConfig(session({ secrets: [OLD], verifyOnly: [NEW] }), {}).session)
  const phase2 = keyring(buildConfig(session({ secrets: [NEW], verifyOnly: [OLD] }), {}).session)
  const fields = { key: 'AAAAAAAAAAAAAAAAAAAAAA', primary: '127.0.0.1:11211', backup: undefined, version: 3 }
  const fromPhase1 = new CookieCodec(phase1).encode(fields)
  const fromPhase2 = new CookieCodec(phase2).encode(fields)
  t.same(new CookieCodec([OLD]).verify(fromPhase1), { ...fields, oldSecret: false }, 'phase 1 still signs with the old secret')
  t.same(new CookieCodec(phase1).verify(fromPhase2), { ...fields, oldSecret: true }, 'a phase-1 instance accepts a phase-2 cookie, and reissues it')
  t.same(new CookieCodec(phase2).verify(fromPhase1), { ...fields, oldSecret: true }, 'and the other way round')
  t.same(new CookieCodec([NEW]).verify(fromPhase2), { ...fields, oldSecret: false }, 'phase 2 signs with the new secret alone')
  t.equal(new CookieCodec([OLD]).verify(fromPhase2), undefined, 'which the old secret does not verify')

  const mkey = 'sess:AAAAAAAAAAAAAAAAAAAAAA'
  const copy = { version: 3, header: 'e30', ended: false }
  const sealedInPhase1 = new CopySeal(phase1, true).seal(mkey, copy)
  t.same(new CopySeal([OLD], true).open(mkey, sealedInPhase1), { ...copy, current: true }, 'phase 1 seals with the old secret')
  t.same(new CopySeal(phase2, true).open(mkey, sealedInPhase1), { ...copy, current: false }, 'phase 2 opens it with its verify-only secret, to reseal it')
  const sealedInPhase2 = new CopySeal(phase2, true).seal(mkey, copy)
  t.same(new CopySeal([NEW], true).open(mkey, sealedInPhase2), { ...copy, current: true }, 'phase 2 seals with the new secret alone')
  t.same(new CopySeal(phase1, true).open(mkey, sealedInPhase2), { ...copy, current: false }, 'which phase 1 opens')
})

t.test('a fingerprint names a secret without showing it: 8 hex digits of its SHA-256', async (t) => {
  t.equal(fingerprint(OLD), '5881ac79', "as printf %s 'old-secret-0123456789abcdef' | sha256sum | cut -c1-8 prints it")
  t.not(fingerprint(OLD), fingerprint(NEW))
  t.notOk(OLD.includes(fingerprint(OLD)))
})
