import t from 'tap'
import {
  decodeJson, decodeObject, encodeObject, mergePatch, parseStored, isObject, EMPTY_HEADER, type SessionObject
} from '../../../src/session/data.js'
import { RefusedUpdate, type RefusalReason } from '../../../src/errors.js'

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64')

type TestLike = Pick<typeof t, 'fail'>

/** The reason an update was refused; fails the test when it was accepted. */
function refusal (t: TestLike, decode: () => unknown): RefusalReason | undefined {
  try {
    decode()
  } catch (err) {
    if (err instanceof RefusedUpdate) return err.reason
    t.fail(`expected a RefusedUpdate, got ${String(err)}`)
    return undefined
  }
  t.fail('expected a RefusedUpdate, the value was accepted')
  return undefined
}

// RFC 7396, Appendix A: every example, as [original, patch, result].
const RFC7396_APPENDIX_A: Array<[unknown, unknown, unknown]> = [
  [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
  [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
  [{ a: 'b' }, { a: null }, {}],
  [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
  [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
  [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
  [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
  [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
  [['a', 'b'], ['c', 'd'], ['c', 'd']],
  [{ a: 'b' }, ['c'], ['c']],
  [{ a: 'foo' }, null, null],
  [{ a: 'foo' }, 'bar', 'bar'],
  [{ e: null }, { a: 1 }, { e: null, a: 1 }],
  [[1, 2], { a: 'b', c: null }, { a: 'b' }],
  [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }]
]

t.test('mergePatch: every example of RFC 7396 Appendix A', async (t) => {
  t.equal(RFC7396_APPENDIX_A.length, 15)
  for (const [original, patch, result] of RFC7396_APPENDIX_A) {
    t.same(mergePatch(original, patch), result, `${JSON.stringify(original)} + ${JSON.stringify(patch)}`)
  }
})

t.test('mergePatch: the example of RFC 7396 section 3', async (t) => {
  const target = { title: 'Goodbye!', author: { givenName: 'John', familyName: 'Doe' }, tags: ['example', 'sample'], content: 'This will be unchanged' }
  const patch = { title: 'Hello!', phoneNumber: '+01-123-456-7890', author: { familyName: null }, tags: ['example'] }
  t.same(mergePatch(target, patch), {
    title: 'Hello!',
    author: { givenName: 'John' },
    tags: ['example'],
    content: 'This will be unchanged',
    phoneNumber: '+01-123-456-7890'
  })
})

t.test('mergePatch: neither argument is modified', async (t) => {
  const target = { a: { b: 'c', keep: [1, 2] }, drop: 1, list: [{ x: 1 }] }
  const patch = { a: { b: 'd', c: null, n: { m: 1 } }, drop: null, list: [{ y: 2 }] }
  const targetCopy = structuredClone(target)
  const patchCopy = structuredClone(patch)
  const result = mergePatch(target, patch)
  t.same(result, { a: { b: 'd', keep: [1, 2], n: { m: 1 } }, list: [{ y: 2 }] })
  t.same(target, targetCopy, 'target unchanged')
  t.same(patch, patchCopy, 'patch unchanged')
  t.not(result, target, 'a new object')
  t.not((result as { a: unknown }).a, target.a, 'nested objects that change are new objects too')
})

t.test('mergePatch: a "__proto__" member stays plain data and changes no prototype', async (t) => {
  const patch = JSON.parse('{"__proto__":{"polluted":true},"a":1}') as unknown
  const result = mergePatch({}, patch) as Record<string, unknown>
  t.equal(Object.getPrototypeOf(result), Object.prototype, 'the result is a plain object')
  t.ok(Object.hasOwn(result, '__proto__'), 'an own member')
  t.same(Object.keys(result), ['__proto__', 'a'])
  t.equal(JSON.stringify(result), '{"__proto__":{"polluted":true},"a":1}', 'serialised back as data')
  t.equal((result as { polluted?: unknown }).polluted, undefined, 'nothing inherited from it')
  t.equal(({} as { polluted?: unknown }).polluted, undefined, 'Object.prototype untouched')

  const merged = mergePatch(JSON.parse('{"__proto__":{"a":1}}'), JSON.parse('{"__proto__":{"b":2}}')) as Record<string, unknown>
  t.equal(JSON.stringify(merged), '{"__proto__":{"a":1,"b":2}}', 'merged like any other member')
  t.equal(Object.getPrototypeOf(merged), Object.prototype)

  const removed = mergePatch(JSON.parse('{"__proto__":{"a":1},"k":1}'), JSON.parse('{"__proto__":null}')) as Record<string, unknown>
  t.equal(JSON.stringify(removed), '{"k":1}', 'and removed like any other member')
})

t.test('decodeObject: base64url of a UTF-8 JSON object', async (t) => {
  t.same(decodeObject(b64url({ user: 'ada', n: 1, nested: { ok: true } }), 'X-Session-Set', 8192), { user: 'ada', n: 1, nested: { ok: true } })
  t.same(decodeObject(b64url({ name: 'Zoë 日本' }), 'X-Session-Set', 8192), { name: 'Zoë 日本' })
  t.same(decodeObject(EMPTY_HEADER, 'X-Session-Set', 8192), {})
})

t.test('decodeObject: padded and standard-alphabet base64 are accepted', async (t) => {
  const value = { a: '??>>' } // base64 of this JSON holds '+' (standard) / '-' (url) and needs padding
  t.equal(b64(value), 'eyJhIjoiPz8+PiJ9', 'standard alphabet')
  t.same(decodeObject(b64(value), 'X-Session-Set', 8192), value, 'standard alphabet')
  t.same(decodeObject(b64url(value), 'X-Session-Set', 8192), value, 'url alphabet')
  t.equal(b64({}), 'e30=')
  t.same(decodeObject('e30=', 'X-Session-Set', 8192), {}, 'padded')
  t.same(decodeObject('e30', 'X-Session-Set', 8192), {}, 'unpadded')
})

t.test('decode refusals: invalid-base64', async (t) => {
  for (const value of ['e3 0', 'e30=x', '{"a":1}', 'e30===', 'e3%30', 'e30\n']) {
    t.equal(refusal(t, () => decodeObject(value, 'X-Session-Set', 8192)), 'invalid-base64', JSON.stringify(value))
  }
})

t.test('decode refusals: invalid-json', async (t) => {
  for (const value of ['', Buffer.from('{nope').toString('base64url'), Buffer.from("{'a':1}").toString('base64url'), Buffer.from('{"a":1,}').toString('base64url')]) {
    t.equal(refusal(t, () => decodeObject(value, 'X-Session-Set', 8192)), 'invalid-json', JSON.stringify(value))
  }
})

t.test('decode refusals: not-an-object (objects only for Set)', async (t) => {
  for (const value of [[1, 2], null, 'text', 42, true]) {
    t.equal(refusal(t, () => decodeObject(b64url(value), 'X-Session-Set', 8192)), 'not-an-object', JSON.stringify(value))
  }
})

t.test('decodeJson: any JSON value (a merge patch may be null or an array)', async (t) => {
  t.equal(decodeJson(b64url(null), 'X-Session-Merge', 8192), null)
  t.same(decodeJson(b64url([1]), 'X-Session-Merge', 8192), [1])
  t.same(decodeJson(b64url({ a: null }), 'X-Session-Merge', 8192), { a: null })
  t.equal(refusal(t, () => decodeJson('!!', 'X-Session-Merge', 8192)), 'invalid-base64')
  t.equal(refusal(t, () => decodeJson(Buffer.from('nul').toString('base64url'), 'X-Session-Merge', 8192)), 'invalid-json')
})

t.test('decode refusals: too-large before any decoding', async (t) => {
  t.equal(refusal(t, () => decodeObject('A'.repeat(401), 'X-Session-Set', 100)), 'too-large')
  t.equal(refusal(t, () => decodeJson('!'.repeat(401), 'X-Session-Merge', 100)), 'too-large', 'checked before the alphabet')
  t.equal(refusal(t, () => decodeObject('A'.repeat(400), 'X-Session-Set', 100)), 'invalid-json', 'at the bound it is decoded')
})

t.test('RefusedUpdate names the header and the reason', async (t) => {
  let error: unknown
  try {
    decodeObject('%%%', 'X-Session-Set', 100)
  } catch (err) {
    error = err
  }
  t.ok(error instanceof RefusedUpdate)
  t.ok(error instanceof Error)
  t.equal((error as RefusedUpdate).reason, 'invalid-base64')
  t.equal((error as RefusedUpdate).header, 'X-Session-Set')
  t.equal((error as RefusedUpdate).message, 'X-Session-Set: invalid-base64')
})

t.test('encodeObject: base64url of compact JSON and its size in bytes', async (t) => {
  const encoded = encodeObject({ user: 'ada', cart: [1, 2] }, 'X-Session-Set', 8192)
  t.same(encoded, { header: Buffer.from('{"user":"ada","cart":[1,2]}').toString('base64url'), bytes: 27 })
  t.notMatch(encoded.header, /[+/=]/, 'url alphabet, no padding')
})

t.test('encodeObject: the limit is in bytes of compact JSON, inclusive', async (t) => {
  const value = { a: 'bcdefg' } // {"a":"bcdefg"} = 14 bytes
  t.equal(encodeObject(value, 'X-Session-Set', 14).bytes, 14)
  t.equal(refusal(t, () => encodeObject(value, 'X-Session-Set', 13)), 'too-large')
})

t.test('encodeObject: multi-byte UTF-8 counts bytes, not characters', async (t) => {
  const value = { a: 'é' } // 9 characters, 10 bytes
  t.equal(JSON.stringify(value).length, 9)
  t.equal(encodeObject(value, 'X-Session-Merge', 10).bytes, 10)
  t.equal(refusal(t, () => encodeObject(value, 'X-Session-Merge', 9)), 'too-large')
  const emoji = { e: '😀😀' } // 2 characters of 4 bytes each (4 UTF-16 units)
  t.equal(encodeObject(emoji, 'X-Session-Set', 100).bytes, 16)
  t.equal(refusal(t, () => encodeObject(emoji, 'X-Session-Set', 15)), 'too-large')
})

t.test('parseStored reads an encoded object back', async (t) => {
  const data = { user: 'ada', cart: [1, 2] }
  t.same(parseStored(encodeObject(data, 'X-Session-Set', 8192).header), data)
  t.same(parseStored(EMPTY_HEADER), {})
})

t.test('isObject: plain JSON objects only', async (t) => {
  t.ok(isObject({}))
  t.notOk(isObject([]))
  t.notOk(isObject(null))
  t.notOk(isObject('x'))
  t.notOk(isObject(1))
})

// Numbers as the app wrote them: a 64-bit id must not become another number (an adversarial
// helper found 1152921504606846977 served back as 1152921504606847000).

/** A random number literal of JSON's grammar, in every form numbers take. */
function randomNumber (random: () => number): string {
  const digits = (n: number): string => Array.from({ length: n }, () => String(Math.floor(random() * 10))).join('')
  const pick = random()
  const sign = random() < 0.3 ? '-' : ''
  const int = random() < 0.2 ? '0' : String(1 + Math.floor(random() * 9)) + digits(Math.floor(random() * (pick < 0.5 ? 6 : 25)))
  const fraction = random() < 0.5 ? '' : '.' + (random() < 0.2 ? '0'.repeat(1 + Math.floor(random() * 8)) : '') + digits(1 + Math.floor(random() * (pick < 0.5 ? 4 : 20)))
  const exponent = random() < 0.15 ? (random() < 0.5 ? 'e' : 'E') + (['', '+', '-'][Math.floor(random() * 3)] as string) + String(Math.floor(random() * 400)) : ''
  return sign + int + fraction + exponent
}

/** A seeded generator (mulberry32): the same cases every run. */
function seeded (seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6D2B79F5) | 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

t.test('numbers come back exactly as the app wrote them: a session of compact JSON is stored byte for byte, whatever its numbers', async (t) => {
  const random = seeded(12)
  let inexact = 0
  for (let i = 0; i < 5000; i++) {
    const numbers = Array.from({ length: 1 + Math.floor(random() * 4) }, () => randomNumber(random))
    const text = `{"n":${numbers[0] as string},"list":[${numbers.join(',')}],"when":"2026-12-03T10:00:00.000Z","deep":{"x":${numbers.at(-1) as string}}}`
    const encoded = encodeObject(decodeObject(Buffer.from(text).toString('base64url'), 'X-Session-Set', 1 << 20), 'X-Session-Set', 1 << 20)
    if (Buffer.from(encoded.header, 'base64url').toString() !== text) {
      t.fail(`changed: ${text}`)
      return
    }
    if (numbers.some((n) => String(Number(n)) !== n)) inexact++
  }
  t.ok(inexact > 1000, `${inexact} of the 5000 hold a number JSON.parse would change`)
})

t.test('a merge keeps the exact numbers of the stored data and of the patch', async (t) => {
  const stored = encodeObject(decodeObject(Buffer.from('{"user_id":1152921504606846977,"price":1.0,"tiny":1e-400}').toString('base64url'), 'X-Session-Set', 4096), 'X-Session-Set', 4096)
  const patch = decodeJson(Buffer.from('{"big":12345678901234567890,"neg0":-0,"price":2.50,"nested":{"e":1E+2}}').toString('base64url'), 'X-Session-Merge', 4096)
  const merged = encodeObject(mergePatch(parseStored(stored.header), patch) as SessionObject, 'X-Session-Merge', 4096)
  t.equal(Buffer.from(merged.header, 'base64url').toString(), '{"user_id":1152921504606846977,"price":2.50,"tiny":1e-400,"big":12345678901234567890,"neg0":-0,"nested":{"e":1E+2}}')
  const again = mergePatch(parseStored(merged.header), { nested: { f: 1 } })
  t.equal(Buffer.from(encodeObject(again as SessionObject, 'X-Session-Merge', 4096).header, 'base64url').toString(), '{"user_id":1152921504606846977,"price":2.50,"tiny":1e-400,"big":12345678901234567890,"neg0":-0,"nested":{"e":1E+2,"f":1}}', 'a kept number is a value, not an object a patch merges into')
})

t.test('on the exact path as on JSON.parse\'s: the last of duplicate names wins, "__proto__" is plain data', async (t) => {
  for (const n of ['1', '12345678901234567890']) {
    const parsed = decodeObject(Buffer.from(`{"a":1,"a":${n},"__proto__":{"admin":true}}`).toString('base64url'), 'X-Session-Set', 4096)
    t.equal(Buffer.from(encodeObject(parsed, 'X-Session-Set', 4096).header, 'base64url').toString(), `{"a":${n},"__proto__":{"admin":true}}`, n)
    t.equal((parsed as { admin?: unknown }).admin, undefined, 'no prototype set')
  }
})

t.test('parseStored: stored data nested past lossless-json\'s stack is still read (its numbers as doubles), not taken for empty', async (t) => {
  const depth = 50_000
  const text = `{"n":1.0,"d":${'['.repeat(depth)}${']'.repeat(depth)}}`
  const parsed = parseStored(Buffer.from(text).toString('base64url'))
  t.same(Object.keys(parsed), ['n', 'd'], 'every member read')
  t.equal(parsed.n, 1)
})
