import t from 'tap'
import { CopySeal } from '../../../src/session/sealed-copy.js'

const OLD = 'old-secret-0123456789abcdef'
const NEW = 'new-secret-0123456789abcdef'
const MKEY = 'sess:AAAAAAAAAAAAAAAAAAAAAA'
const COPY = { version: 7, header: Buffer.from('{"user":"ada","role":"member"}').toString('base64url'), ended: false }

t.test('a sealed copy opens with the same secret and key, and holds nothing readable', async (t) => {
  const seal = new CopySeal([NEW], true)
  const value = seal.seal(MKEY, COPY)
  t.match(value, /^s2\.[A-Za-z0-9_-]{8}\.[A-Za-z0-9_-]+$/, 'marker, secret id, payload')
  t.notOk(value.includes(COPY.header), 'the data is not in the stored value')
  t.notOk(value.includes(' 7 ') || value.startsWith('7 '), 'nor the version in clear')
  t.same(seal.open(MKEY, value), { ...COPY, current: true })
  t.not(seal.seal(MKEY, COPY), value, 'a fresh IV each time')
})

t.test('what does not open is undefined and reported: forged, tampered, moved, another fleet, the old plain format', async (t) => {
  let rejected = 0
  const seal = new CopySeal([NEW], true, () => { rejected++ })
  const value = seal.seal(MKEY, COPY)
  const flipped = value.slice(0, -5) + (value.at(-5) === 'A' ? 'B' : 'A') + value.slice(-4)
  const cases = {
    'a byte of the payload changed': flipped,
    'the copy moved to another key': undefined,
    'sealed by a secret not configured here': new CopySeal(['other-fleet-secret-0123456'], true).seal(MKEY, COPY),
    'the plain format of earlier versions': `7 ${COPY.header}`,
    'what an attacker writes': `99 ${Buffer.from('{"user":"admin"}').toString('base64url')}`,
    truncated: value.slice(0, 30),
    empty: ''
  }
  for (const [what, v] of Object.entries(cases)) {
    t.equal(v === undefined ? seal.open('sess:BBBBBBBBBBBBBBBBBBBBBB', value) : seal.open(MKEY, v), undefined, what)
  }
  t.equal(rejected, Object.keys(cases).length, 'every one reported')
})

t.test('rotation: a copy sealed with a secret that is still configured opens; new copies use the first', async (t) => {
  const before = new CopySeal([OLD], true).seal(MKEY, COPY)
  const rotated = new CopySeal([NEW, OLD], true)
  t.same(rotated.open(MKEY, before), { ...COPY, current: false }, 'sealed with the old secret, opened after rotation (and marked for resealing)')
  const after = rotated.seal(MKEY, COPY)
  t.equal(after.slice(0, 12), new CopySeal([NEW], true).seal(MKEY, COPY).slice(0, 12), 'resealed under the new secret id')
  t.equal(new CopySeal([OLD], true).open(MKEY, after), undefined, 'which the old secret alone cannot open')
})

t.test('encrypt: false keeps the copy readable but authenticated, bound to its key', async (t) => {
  const seal = new CopySeal([NEW], false)
  const value = seal.seal(MKEY, COPY)
  t.match(value, new RegExp(`^a2\\.[A-Za-z0-9_-]{8}\\.7\\.L\\.${COPY.header}\\.[A-Za-z0-9_-]{22}$`))
  t.same(seal.open(MKEY, value), { ...COPY, current: true })
  t.equal(seal.open(MKEY, value.replace('.7.', '.8.')), undefined, 'a changed version does not open')
  t.equal(seal.open(MKEY, value.replace(COPY.header, Buffer.from('{"user":"admin"}').toString('base64url'))), undefined, 'nor changed data')
  t.equal(seal.open('sess:BBBBBBBBBBBBBBBBBBBBBB', value), undefined, 'nor the copy under another key')
  t.same(new CopySeal([NEW], true).open(MKEY, value), { ...COPY, current: true }, 'a fleet that encrypts still opens authenticated copies (switching is safe)')
})

t.test('a tombstone is sealed with its state: it opens as ended, and the state cannot be flipped', async (t) => {
  const tombstone = { version: 8, header: 'e30', ended: true }
  for (const encrypt of [true, false]) {
    const seal = new CopySeal([NEW], encrypt)
    const value = seal.seal(MKEY, tombstone)
    t.same(seal.open(MKEY, value), { ...tombstone, current: true }, `encrypt ${String(encrypt)}: opens as a tombstone`)
    if (!encrypt) t.equal(seal.open(MKEY, value.replace('.8.E.', '.8.L.')), undefined, 'a tombstone edited to live does not open')
  }
})

t.test('format 1 copies (written before tombstones existed) still open, as live, marked for resealing', async (t) => {
  // Sealed by the previous release with NEW under MKEY: { version: 7, header: COPY.header }.
  const encrypted = 's1.Q74yZOl2.Jyfyn6qVlVvOYBXjIei8_hoNEAjqbVimxRRvP19aLtVaryIJD5TMl4qh2f2yu2qC6jo3JfY-sLSM0AFMDrVjtbBIhoEPcw'
  const authenticated = 'a1.Q74yZOl2.7.eyJ1c2VyIjoiYWRhIiwicm9sZSI6Im1lbWJlciJ9.cIeBBQ44BPwQriNy3gv0pQ'
  const seal = new CopySeal([NEW], true)
  t.same(seal.open(MKEY, encrypted), { ...COPY, current: false }, 's1: opens, not current (resealed as s2 at the next read)')
  t.same(seal.open(MKEY, authenticated), { ...COPY, current: false }, 'a1: opens, not current')
  t.equal(seal.open('sess:BBBBBBBBBBBBBBBBBBBBBB', encrypted), undefined, 'still bound to its key')
})

t.test('the same secret listed twice still seals and opens as current (nothing to reseal)', async (t) => {
  const seal = new CopySeal([NEW, NEW], true)
  t.same(seal.open(MKEY, seal.seal(MKEY, COPY)), { ...COPY, current: true })
})
