import t from 'tap'
import { createHmac } from 'node:crypto'
import { CookieCodec, type CookieFields } from '../../../src/session/cookie.js'

const CURRENT = 'current-secret-0123456789'
const OLDER = 'older-secret-0123456789'
const OLDEST = 'oldest-secret-0123456789'
const KEY = 'Zm9vYmFyYmF6cXV4MTIzNA' // 22 base64url characters
const B64URL22 = /^[A-Za-z0-9_-]{22}$/

/** HMAC-SHA256 truncated to 128 bits, base64url: computed without the codec. */
function mac (secret: string, body: string): string {
  return createHmac('sha256', secret).update(body).digest().subarray(0, 16).toString('base64url')
}

/** A cookie with a correct MAC over whatever body it is given, to test the parser alone. */
function signed (body: string, secret = CURRENT): string {
  return `${body}~${mac(secret, body)}`
}

const withBackup: CookieFields = { key: KEY, primary: '10.0.0.5:11211', backup: 'mc-2.cache.internal:11211', version: 7 }
const single: CookieFields = { key: KEY, primary: '10.0.0.5:11211', backup: undefined, version: 1 }

t.test('a codec needs at least one secret', async (t) => {
  t.throws(() => new CookieCodec([]), new TypeError('at least one secret is required'))
})

t.test('encode: 1~key~primary~backup~version~mac with a 22-char base64url MAC', async (t) => {
  const value = new CookieCodec([CURRENT]).encode(withBackup)
  const body = `1~${KEY}~10.0.0.5:11211~mc-2.cache.internal:11211~7`
  t.equal(value, `${body}~${mac(CURRENT, body)}`)
  const fields = value.split('~')
  t.equal(fields.length, 6)
  t.match(fields[1], B64URL22, 'key: 22 base64url characters')
  t.match(fields[5], B64URL22, 'mac: 22 base64url characters')
})

t.test('encode: without a backup there are five fields', async (t) => {
  const value = new CookieCodec([CURRENT]).encode(single)
  const body = `1~${KEY}~10.0.0.5:11211~1`
  t.equal(value, `${body}~${mac(CURRENT, body)}`)
  t.equal(value.split('~').length, 5)
})

t.test('encode: IPv6 nodes are written as [v6]:port', async (t) => {
  const value = new CookieCodec([CURRENT]).encode({ key: KEY, primary: '[fd00::5]:11211', backup: undefined, version: 3 })
  t.equal(value, signed(`1~${KEY}~[fd00::5]:11211~3`))
  t.same(new CookieCodec([CURRENT]).verify(value), { key: KEY, primary: '[fd00::5]:11211', backup: undefined, version: 3, oldSecret: false })
})

t.test('the MAC is HMAC-SHA256 over everything before the last ~, keyed by the first secret, truncated to 16 bytes', async (t) => {
  const value = new CookieCodec([CURRENT, OLDER]).encode(withBackup)
  const cut = value.lastIndexOf('~')
  const expected = createHmac('sha256', Buffer.from(CURRENT, 'utf8')).update(value.slice(0, cut)).digest().subarray(0, 16)
  t.same(Buffer.from(value.slice(cut + 1), 'base64url'), expected)
  t.equal(value.slice(cut + 1), expected.toString('base64url'))
})

t.test('verify: what encode produced round-trips', async (t) => {
  const codec = new CookieCodec([CURRENT])
  t.same(codec.verify(codec.encode(withBackup)), { ...withBackup, oldSecret: false })
  t.same(codec.verify(codec.encode(single)), { ...single, oldSecret: false })
})

t.test('verify: the largest version with 15 digits round-trips', async (t) => {
  const codec = new CookieCodec([CURRENT])
  const fields = { ...single, version: 999_999_999_999_999 }
  t.same(codec.verify(codec.encode(fields)), { ...fields, oldSecret: false })
})

t.test('verify: a cookie signed by a non-first secret verifies with oldSecret: true', async (t) => {
  const codec = new CookieCodec([CURRENT, OLDER, OLDEST])
  t.same(codec.verify(new CookieCodec([OLDER]).encode(withBackup)), { ...withBackup, oldSecret: true })
  t.same(codec.verify(new CookieCodec([OLDEST]).encode(single)), { ...single, oldSecret: true })
  t.same(codec.verify(new CookieCodec([CURRENT]).encode(single)), { ...single, oldSecret: false })
})

t.test('verify: a cookie signed by an unknown secret is undefined', async (t) => {
  const value = new CookieCodec(['somebody-else-0123456789']).encode(withBackup)
  t.equal(new CookieCodec([CURRENT, OLDER]).verify(value), undefined)
  t.equal(new CookieCodec([CURRENT]).verify(new CookieCodec([OLDER]).encode(single)), undefined, 'a retired secret no longer verifies')
})

t.test('verify: changing any character of any field is undefined', async (t) => {
  const codec = new CookieCodec([CURRENT])
  const value = codec.encode(withBackup)
  let tried = 0
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '~') continue
    for (const replacement of ['A', '0', '-', '.']) {
      if (value[i] === replacement) continue
      const forged = value.slice(0, i) + replacement + value.slice(i + 1)
      // A replacement in the MAC's last character may only flip unused bits: that is covered below.
      if (i === value.length - 1) continue
      tried++
      if (codec.verify(forged) !== undefined) t.fail(`accepted ${forged}`)
    }
  }
  t.ok(tried > 200, `tried ${tried} forgeries`)
})

t.test('verify: tampering with each field in a meaningful way is undefined', async (t) => {
  const codec = new CookieCodec([CURRENT])
  const value = codec.encode(withBackup)
  const [format, key, primary, backup, version, tag] = value.split('~') as [string, string, string, string, string, string]
  const forgeries = {
    key: [format, 'A'.repeat(22), primary, backup, version, tag],
    primary: [format, key, '10.0.0.6:11211', backup, version, tag],
    backup: [format, key, primary, 'evil.example.com:11211', version, tag],
    'backup removed': [format, key, primary, version, tag],
    'backup and primary swapped': [format, key, backup, primary, version, tag],
    version: [format, key, primary, backup, '8', tag],
    mac: [format, key, primary, backup, version, mac(OLDER, value.slice(0, value.lastIndexOf('~')))]
  }
  for (const [name, fields] of Object.entries(forgeries)) t.equal(codec.verify(fields.join('~')), undefined, name)
})

t.test('verify: every truncation is undefined', async (t) => {
  const codec = new CookieCodec([CURRENT])
  const value = codec.encode(withBackup)
  for (let i = 0; i < value.length; i++) {
    if (codec.verify(value.slice(0, i)) !== undefined) t.fail(`accepted a truncation to ${i} characters`)
  }
  t.equal(codec.verify(''), undefined)
  t.equal(codec.verify(value.slice(1)), undefined, 'without the format digit')
})

t.test('verify: a wrong number of fields is undefined, even when correctly signed', async (t) => {
  const codec = new CookieCodec([CURRENT])
  t.equal(codec.verify(signed(`1~${KEY}~1`)), undefined, 'no primary')
  t.equal(codec.verify(signed(`1~${KEY}~a:1~b:1~c:1~1`)), undefined, 'three addresses')
  t.equal(codec.verify(signed(`1~${KEY}~a:1~1~extra`)), undefined, 'trailing field')
  t.equal(codec.verify(`${codec.encode(single)}~`), undefined, 'trailing separator')
  t.equal(codec.verify(signed(`1~${KEY}~~10.0.0.5:11211~1`)), undefined, 'empty backup')
})

t.test('verify: a MAC that is not 22 base64url characters is undefined', async (t) => {
  const codec = new CookieCodec([CURRENT])
  const value = codec.encode(single)
  const body = value.slice(0, value.lastIndexOf('~'))
  const tag = value.slice(value.lastIndexOf('~') + 1)
  const standard = Buffer.from(tag, 'base64url').toString('base64') // may contain + or / and ends in ==
  t.equal(codec.verify(`${body}~${standard}`), undefined, 'padded standard base64')
  t.equal(codec.verify(`${body}~${tag}==`), undefined, 'base64url with padding')
  t.equal(codec.verify(`${body}~${tag.slice(0, 21)}!`), undefined, 'a character outside the alphabet')
  t.equal(codec.verify(`${body}~${tag.slice(0, 20)}+/`), undefined, 'standard-alphabet characters')
  t.equal(codec.verify(`${body}~${tag}A`), undefined, '23 characters')
  t.equal(codec.verify(`${body}~${tag.slice(0, 21)}`), undefined, '21 characters')
  t.equal(codec.verify(`${body}~${Buffer.from(tag, 'base64url').toString('hex')}`), undefined, 'hex')
})

t.test('verify: a non-canonical spelling of the right MAC is undefined', async (t) => {
  const codec = new CookieCodec([CURRENT])
  const value = codec.encode(withBackup)
  const tag = value.slice(value.lastIndexOf('~') + 1)
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const last = alphabet.indexOf(tag.at(-1) as string)
  // 22 characters carry 132 bits for 128: the last character's 4 low bits are unused.
  t.equal(last % 16, 0, 'the canonical spelling leaves the unused bits zero')
  const alternatives = [1, 5, 15].map((d) => tag.slice(0, 21) + (alphabet[last + d] as string))
  for (const alt of alternatives) {
    t.same(Buffer.from(alt, 'base64url'), Buffer.from(tag, 'base64url'), `${alt} decodes to the same 16 bytes`)
    t.equal(codec.verify(value.slice(0, value.lastIndexOf('~') + 1) + alt), undefined, `${alt} is refused`)
  }
})

t.test('verify: version must be a positive decimal without leading zeros', async (t) => {
  const codec = new CookieCodec([CURRENT])
  for (const version of ['0', '07', '00', '-1', '+1', '1.0', '1e3', '0x10', ' 1', '1 ', '', 'one', '１']) {
    t.equal(codec.verify(signed(`1~${KEY}~10.0.0.5:11211~${version}`)), undefined, JSON.stringify(version))
  }
  t.same(codec.verify(signed(`1~${KEY}~10.0.0.5:11211~10`)), { key: KEY, primary: '10.0.0.5:11211', backup: undefined, version: 10, oldSecret: false }, 'control: 10 is fine')
})

t.test('verify: a key that is not 22 base64url characters is undefined', async (t) => {
  const codec = new CookieCodec([CURRENT])
  for (const key of [KEY.slice(0, 21), `${KEY}A`, `${KEY.slice(0, 21)}+`, `${KEY.slice(0, 21)}/`, `${KEY.slice(0, 21)}=`, `${KEY.slice(0, 21)}.`, '']) {
    t.equal(codec.verify(signed(`1~${key}~10.0.0.5:11211~1`)), undefined, JSON.stringify(key))
  }
})

t.test('verify: addresses that are not host:port are undefined', async (t) => {
  const codec = new CookieCodec([CURRENT])
  for (const address of ['10.0.0.5', '10.0.0.5:', ':11211', 'cache internal:11211', 'cache;x:11211', 'fd00::5:11211', '[fd00::5]', 'a:123456']) {
    t.equal(codec.verify(signed(`1~${KEY}~${address}~1`)), undefined, JSON.stringify(address))
  }
  t.equal(codec.verify(signed(`1~${KEY}~10.0.0.5:11211~10.0.0.5:11211~1`)), undefined, 'backup equal to primary')
})

t.test('verify: huge values are undefined without work', async (t) => {
  const codec = new CookieCodec([CURRENT])
  t.equal(codec.verify(signed(`1~${KEY}~10.0.0.5:11211~1234567890123456`)), undefined, 'a 16-digit version')
  t.equal(codec.verify(signed(`1~${KEY}~10.0.0.5:11211~${'9'.repeat(400)}`)), undefined, 'a 400-digit version')
  const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}:11211`
  const longest = signed(`1~${KEY}~${long}~${long.replace('a', 'x')}~${'1'.repeat(15)}`)
  t.ok(codec.verify(longest), `control: the longest real cookie (${longest.length} characters) verifies`)
  t.equal(codec.verify(signed(`1~${KEY}~${'a'.repeat(300)}:1~${'b'.repeat(300)}:1~1`)), undefined, 'over 600 characters in all')
  t.equal(codec.verify(`1~${'x'.repeat(100_000)}`), undefined, '100 kB')
})

t.test('verify: a leading format digit other than 1 is undefined', async (t) => {
  const codec = new CookieCodec([CURRENT])
  for (const format of ['2', '0', '11', '01', 'a', '']) {
    t.equal(codec.verify(signed(`${format}~${KEY}~10.0.0.5:11211~1`)), undefined, JSON.stringify(format))
  }
})

t.test('parse: reads the fields without checking the MAC', async (t) => {
  const value = new CookieCodec([OLDEST]).encode(withBackup)
  t.same(CookieCodec.parse(value), withBackup)
  t.equal(CookieCodec.parse('2~x'), undefined)
})

t.test('accept: verified and naming only allowed addresses (memcached.allow)', async (t) => {
  const allowed = new Set(['10.0.0.5:11211', 'mc-2.cache.internal:11211'])
  const codec = new CookieCodec([CURRENT], (address) => allowed.has(address))
  t.same(codec.accept(codec.encode(withBackup)), { ...withBackup, oldSecret: false })
  t.equal(codec.accept(codec.encode({ ...single, primary: '10.0.0.6:11211' })), undefined, 'a disallowed primary')
  t.equal(codec.accept(codec.encode({ ...withBackup, backup: '10.0.0.7:11211' })), undefined, 'a disallowed backup')
  t.equal(codec.accept(new CookieCodec([OLDER]).encode(single)), undefined, 'not verified')
  t.same(new CookieCodec([CURRENT]).accept(codec.encode({ ...single, primary: '10.0.0.6:11211' })), { ...single, primary: '10.0.0.6:11211', oldSecret: false }, 'no list: any signed address')
})

t.test('issued: the exact value issued for a record, found by its key without parsing, compared whole', async (t) => {
  const codec = new CookieCodec([CURRENT])
  const value = codec.encode(withBackup)
  const record = { cookie: value }
  const lookup = (key: string): { cookie: string | undefined } | undefined => (key === KEY ? record : undefined)
  t.equal(CookieCodec.issued(value, lookup), record)
  t.equal(CookieCodec.issued(`${value.slice(0, -1)}A`, lookup), undefined, 'one character off')
  t.equal(CookieCodec.issued(value.slice(0, 24), lookup), undefined, 'too short to hold a key')
  t.equal(CookieCodec.issued(codec.encode(single), lookup), undefined, 'another cookie of the same key')
  t.equal(CookieCodec.issued(value, () => ({ cookie: undefined })), undefined, 'none issued yet')
})
