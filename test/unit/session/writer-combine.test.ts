import t from 'tap'
import { isDeepStrictEqual } from 'node:util'
import { combine, composePatches, type WriteJob } from '../../../src/session/writer.js'
import { mergePatch, type SessionObject } from '../../../src/session/data.js'

// A small deterministic generator of JSON values over few keys, so collisions happen often.
function rng (seed: number): () => number {
  let x = seed
  return () => { x = (x * 1103515245 + 12345) % 2 ** 31; return x / 2 ** 31 }
}
function value (r: () => number, depth: number, patch: boolean): unknown {
  const pick = r()
  if (patch && pick < 0.2) return null
  if (depth > 0 && pick < 0.6) return object(r, depth - 1, patch)
  return pick < 0.8 ? Math.floor(r() * 3) : ['a', 'b'][Math.floor(r() * 2)]
}
function object (r: () => number, depth: number, patch: boolean): SessionObject {
  const out: SessionObject = {}
  for (const k of ['x', 'y', 'z']) if (r() < 0.6) out[k] = value(r, depth, patch)
  return out
}

t.test('composePatches(A, B) merges like A then B, for 5000 random documents and patches', async (t) => {
  const r = rng(42)
  let composed = 0
  let declined = 0
  for (let i = 0; i < 5000; i++) {
    const doc = object(r, 2, false)
    const a = object(r, 2, true)
    const b = object(r, 2, true)
    const c = composePatches(a, b)
    if (c === undefined) { declined++; continue }
    composed++
    const sequential = mergePatch(mergePatch(doc, a), b)
    const once = mergePatch(doc, c)
    if (!isDeepStrictEqual(sequential, once)) t.fail(`mismatch: doc ${JSON.stringify(doc)} a ${JSON.stringify(a)} b ${JSON.stringify(b)}`)
  }
  t.ok(composed > 3000, `composed ${composed}, declined ${declined} (non-object then object: written as a set)`)
})

t.test('combining queued writes keeps the later state and what both changed', async (t) => {
  const base: WriteJob = { key: 'k'.repeat(22), version: 2, header: 'e30', kind: { type: 'merge', patch: { a: 1 } }, primary: 'm:1', backup: undefined, base: 1, baseHeader: 'v1', fresh: false }
  const later: WriteJob = { ...base, version: 3, header: 'e31', base: 2, baseHeader: 'v2', kind: { type: 'merge', patch: { b: 2 } } }
  t.same(combine(base, later), { ...later, kind: { type: 'merge', patch: { a: 1, b: 2 } }, base: 1, baseHeader: 'v1', replaces: undefined }, 'the earlier base and its data: both changes were made on it')
  t.same(combine(base, { ...later, kind: { type: 'set' } }).kind, { type: 'set' }, 'a set carries the whole state')
  t.same(combine(base, { ...later, kind: { type: 'copy' } }).kind, { type: 'merge', patch: { a: 1 } }, 'a copy adds no change')
  t.same(combine({ ...base, fresh: true }, later).fresh, true, 'a new key stays new')
  t.same(combine(base, { ...later, kind: { type: 'end' } }).kind, { type: 'end' }, 'an end ends whatever came before')
})
