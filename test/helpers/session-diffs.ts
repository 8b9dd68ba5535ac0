// What the client helpers (src/clients/express.ts, clients/python, clients/php) must send for
// a session's change: one table, run against each of them.

type SessionData = Record<string, unknown>

// [from, to, the minimal patch]: each patch applied by the sidecar's own mergePatch gives `to`.
export const DIFFS: Array<[string, SessionData, SessionData, SessionData]> = [
  ['equal', { a: 1, b: { c: [1, { d: 2 }] } }, { b: { c: [1, { d: 2 }] }, a: 1 }, {}],
  ['empty to empty', {}, {}, {}],
  ['a member added', { a: 1 }, { a: 1, b: 'x' }, { b: 'x' }],
  ['a member changed', { a: 1, b: 2 }, { a: 1, b: 3 }, { b: 3 }],
  ['a member removed', { a: 1, b: 2 }, { a: 1 }, { b: null }],
  ['everything removed', { a: 1, b: { c: 2 } }, {}, { a: null, b: null }],
  ['a nested member changed, its siblings untouched', { user: 'al', prefs: { theme: 'light', lang: 'en', size: { w: 1, h: 2 } } }, { user: 'al', prefs: { theme: 'dark', lang: 'en', size: { w: 1, h: 3 } } }, { prefs: { theme: 'dark', size: { h: 3 } } }],
  ['a nested member removed', { prefs: { theme: 'light', lang: 'en' } }, { prefs: { lang: 'en' } }, { prefs: { theme: null } }],
  ['an array replaced whole', { cart: [1, 2, 3] }, { cart: [1, 2, 3, 4] }, { cart: [1, 2, 3, 4] }],
  ['an array element object changed: the whole array', { l: [{ a: 1 }, { b: 2 }] }, { l: [{ a: 1 }, { b: 3 }] }, { l: [{ a: 1 }, { b: 3 }] }],
  ['an object becomes an array', { a: { b: 1 } }, { a: [1] }, { a: [1] }],
  ['an array becomes an object', { a: [1] }, { a: { b: 1 } }, { a: { b: 1 } }],
  ['a scalar becomes an object', { a: 1 }, { a: { b: { c: 1 } } }, { a: { b: { c: 1 } } }],
  ['an object becomes a scalar', { a: { b: 1 } }, { a: 'x' }, { a: 'x' }],
  ['an object emptied', { a: { b: 1, c: 2 } }, { a: {} }, { a: { b: null, c: null } }],
  ['an empty object added', {}, { a: {} }, { a: {} }],
  ['types that look alike differ', { a: 1, b: '1', c: true, d: 0, e: '' }, { a: '1', b: 1, c: 1, d: false, e: 0 }, { a: '1', b: 1, c: 1, d: false, e: 0 }],
  ['null inside an array is data', { a: [1] }, { a: [null, { b: null }] }, { a: [null, { b: null }] }],
  ['a null that was there stays unmentioned', { a: null, b: 1 }, { a: null, b: 2 }, { b: 2 }],
  ['unicode members and values', { é: 'ü' }, { é: '€', 日本: '語' }, { é: '€', 日本: '語' }],
  ['a member named __proto__', { ['__proto__' as string]: 1 }, JSON.parse('{"__proto__":2}') as SessionData, JSON.parse('{"__proto__":2}') as SessionData]
]

// [name, from, to, flags, the headers (Set and Merge decoded)] for sessionHeaders and its ports.
export interface Flags { destroy: boolean, regenerate: boolean, unavailable: boolean }
const NONE: Flags = { destroy: false, regenerate: false, unavailable: false }
export const HEADER_CASES: Array<[string, SessionData, SessionData, Flags, Record<string, unknown>]> = [
  ...DIFFS.map(([name, from, to, patch]): [string, SessionData, SessionData, Flags, Record<string, unknown>] =>
    [name, from, to, NONE, Object.keys(patch).length === 0 ? {} : { 'x-session-merge': patch }]),
  ['a member set to null: the whole data as a Set', { a: 1, b: 2 }, { a: null, b: 2 }, NONE, { 'x-session-set': { a: null, b: 2 } }],
  ['an added object holding a null: a Set', { a: 1 }, { a: 1, b: { c: null } }, NONE, { 'x-session-set': { a: 1, b: { c: null } } }],
  ['destroyed: Destroy alone, whatever changed', { a: 1 }, { a: 2 }, { ...NONE, destroy: true }, { 'x-session-destroy': '1' }],
  ['a login: the merge and Regenerate', { cart: [1] }, { cart: [1], user: 'al' }, { ...NONE, regenerate: true }, { 'x-session-merge': { user: 'al' }, 'x-session-regenerate': '1' }],
  ['regenerate alone', { a: 1 }, { a: 1 }, { ...NONE, regenerate: true }, { 'x-session-regenerate': '1' }],
  ['a login while unavailable: Set of the whole data and Regenerate', {}, { user: 'al' }, { ...NONE, regenerate: true, unavailable: true }, { 'x-session-set': { user: 'al' }, 'x-session-regenerate': '1' }],
  ['an emptied session regenerated while unavailable: Set {} (an object, never [])', {}, {}, { ...NONE, regenerate: true, unavailable: true }, { 'x-session-set': {}, 'x-session-regenerate': '1' }],
  ['a change while unavailable is sent as it is (the sidecar refuses and counts it)', {}, { visits: 1 }, { ...NONE, unavailable: true }, { 'x-session-merge': { visits: 1 } }]
]
