import t from 'tap'
import { nextCopy, type WriteJob } from '../../../src/session/writer.js'
import type { StoredCopy } from '../../../src/session/record.js'

// What a node should hold after a write, given what it holds: the consistency rules of
// SPEC "Storage and consistency" as a table. Data are base64url JSON, as stored.
const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url')
const live = (version: number, data: object): StoredCopy => ({ version, header: b64(data), ended: false })
const tombstone = (version: number): StoredCopy => ({ version, header: 'e30', ended: true })
const job = (over: Partial<WriteJob>): WriteJob => ({ key: 'k'.repeat(22), version: 5, header: b64({ mine: 1 }), kind: { type: 'copy' }, primary: 'm:1', backup: undefined, base: 4, fresh: false, ...over })
const MAX = 4096

t.test('a miss is filled with this node\'s state (a lost copy is not a destroy)', async (t) => {
  t.same(nextCopy(undefined, job({ kind: { type: 'merge', patch: { mine: 1 } } }), MAX), live(5, { mine: 1 }))
  t.same(nextCopy(undefined, job({ kind: { type: 'copy' } }), MAX), live(5, { mine: 1 }))
  t.same(nextCopy(undefined, job({ kind: { type: 'end' }, header: 'e30' }), MAX), tombstone(5), 'an end on a miss writes the tombstone')
})

t.test('a merge is re-applied to the stored copy, never this node\'s whole state written over it', async (t) => {
  // Another sidecar stored {other} at 6 meanwhile; this node changed version 4 into 5.
  t.same(nextCopy(live(6, { other: 1 }), job({ kind: { type: 'merge', patch: { mine: 1 } } }), MAX), live(7, { other: 1, mine: 1 }), 'stored + 1, both members')
  t.same(nextCopy(live(4, { other: 1 }), job({ kind: { type: 'merge', patch: { mine: 1 } } }), MAX), live(5, { other: 1, mine: 1 }), 'the proposed version when it is higher')
  t.same(nextCopy(live(2, { old: 1 }), job({ kind: { type: 'merge', patch: { mine: 1 } } }), MAX), live(5, { mine: 1 }), 'a copy older than the change\'s base regressed (lost): this node\'s newer state wins')
  t.equal(nextCopy(live(6, { big: 'x'.repeat(200) }), job({ kind: { type: 'merge', patch: { more: 'y'.repeat(200) } } }), 300), 'stands', 'a re-applied patch over session.maxBytes leaves the stored copy standing')
})

t.test('a merge onto the very copy it was made on stores this node\'s result; the same version holding other data gets the patch re-applied', async (t) => {
  const merge = { kind: { type: 'merge', patch: { mine: 1 } } } as const
  // This node merged {mine: 1} into {a: 1} at version 4; its result is job.header.
  t.same(nextCopy(live(4, { a: 1 }), job({ ...merge, baseHeader: b64({ a: 1 }), header: b64({ a: 1, mine: 1 }) }), MAX), live(5, { a: 1, mine: 1 }))
  // Version 4 again, other data (a node restarted and another sidecar's copy took the number):
  // the change goes onto what is stored, never this node's state over it.
  t.same(nextCopy(live(4, { b: 2 }), job({ ...merge, baseHeader: b64({ a: 1 }), header: b64({ a: 1, mine: 1 }) }), MAX), live(5, { b: 2, mine: 1 }))
})

t.test('a change whose result the copy already holds, at its version or above, is not applied again (no second copy of the next version)', async (t) => {
  const merge = { kind: { type: 'merge', patch: { mine: 1 } } } as const
  // This node changed version 4 into 5; version 5 with exactly its result is already there
  // (its own store landed before its answer was lost, or another sidecar copied it there).
  t.equal(nextCopy(live(5, { a: 1, mine: 1 }), job({ ...merge, baseHeader: b64({ a: 1 }), header: b64({ a: 1, mine: 1 }) }), MAX), 'stands', 'merge: the copy stands at 5, not 6')
  t.equal(nextCopy(live(7, { a: 1, mine: 1 }), job({ ...merge, header: b64({ a: 1, mine: 1 }) }), MAX), 'stands', 'merge: a newer copy that already has it stands')
  t.equal(nextCopy(live(5, { mine: 1 }), job({ kind: { type: 'set' } }), MAX), 'stands', 'set: the same data at its version stands')
  // Below the change's version the cookie names a version the node must reach: written.
  t.same(nextCopy(live(4, { mine: 1 }), job({ ...merge, baseHeader: b64({ a: 1 }) }), MAX), live(5, { mine: 1 }), 'merge: older copy with the same data gets the version')
  t.same(nextCopy(live(4, { mine: 1 }), job({ kind: { type: 'set' } }), MAX), live(5, { mine: 1 }), 'set: older copy with the same data gets the version')
})

t.test('a set replaces the data at the next version; a copy never lowers a version', async (t) => {
  t.same(nextCopy(live(9, { other: 1 }), job({ kind: { type: 'set' } }), MAX), live(10, { mine: 1 }))
  t.equal(nextCopy(live(5, { other: 1 }), job({ kind: { type: 'copy' } }), MAX), 'stands', 'equal version: the stored copy stands')
  t.equal(nextCopy(live(8, { other: 1 }), job({ kind: { type: 'copy' } }), MAX), 'stands', 'newer: stands')
  t.same(nextCopy(live(3, { other: 1 }), job({ kind: { type: 'copy' } }), MAX), live(5, { mine: 1 }), 'older: replaced by the copy')
})

t.test('a tombstone wins over every live write, whatever the versions', async (t) => {
  for (const kind of [{ type: 'set' }, { type: 'merge', patch: { a: 1 } }, { type: 'copy' }] as const) {
    t.equal(nextCopy(tombstone(2), job({ kind, version: 50 }), MAX), 'ended', `${kind.type} at version 50 over a tombstone at 2`)
  }
  t.equal(nextCopy(tombstone(9), job({ kind: { type: 'end' } }), MAX), 'stands', 'a second end leaves the first tombstone')
  t.same(nextCopy(live(9, { other: 1 }), job({ kind: { type: 'end' } }), MAX), tombstone(10), 'an end over live data: the next version, ended')
})
