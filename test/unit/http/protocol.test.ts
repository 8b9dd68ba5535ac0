import t from 'tap'
import { HeaderProtocol } from '../../../src/http/protocol.js'

const NO_UPDATE = { set: undefined, merge: undefined, destroy: false, regenerate: false }

t.test('header names come from the prefix', async (t) => {
  const p = new HeaderProtocol('x-session')
  t.equal(p.dataHeader, 'x-session')
  t.equal(p.idHeader, 'x-session-id')
})

t.test('a custom prefix is lower-cased with _ read as -', async (t) => {
  const p = new HeaderProtocol('X_App_Session')
  t.equal(p.dataHeader, 'x-app-session')
  t.equal(p.idHeader, 'x-app-session-id')
})

t.test('isPrefixed: names (lower case, as Node delivers them) that start with the prefix', async (t) => {
  const p = new HeaderProtocol('x-session')
  for (const name of ['x-session', 'x-session-id', 'x-session-set', 'x-sessionfoo', 'x-session-anything-else']) t.ok(p.isPrefixed(name), name)
})

t.test('isPrefixed: _ is read as -', async (t) => {
  const p = new HeaderProtocol('x-session')
  for (const name of ['x_session', 'x_session_id', 'x-session_id', 'x_session-set']) t.ok(p.isPrefixed(name), name)
})

t.test('isPrefixed: other names are not prefixed', async (t) => {
  const p = new HeaderProtocol('x-session')
  for (const name of ['x-sessio', 'x-sess', 'session', 'x-other', 'xx-session', 'y-session-id', 'xsession', '', 'cookie']) t.notOk(p.isPrefixed(name), JSON.stringify(name))
})

t.test('isPrefixed: any punctuation stands for the dash, as CGI-style servers read it (PHP turns X.Session into HTTP_X_SESSION)', async (t) => {
  const p = new HeaderProtocol('x-session')
  for (const name of ['x.session', 'x.session.id', 'x~session', 'x!session-set', "x'session", 'x|session_merge', 'x+session']) t.ok(p.isPrefixed(name), JSON.stringify(name))
})

t.test('isPrefixed decides what a client may not send: prefixed names go, the rest stay', async (t) => {
  const p = new HeaderProtocol('x-session')
  const removed = ['x-session', 'x-session-id', 'x_session_id', 'x-session_id', 'x-sessionfoo', 'x-session-set', 'x-session-destroy']
  const kept = ['host', 'cookie', 'x-sess', 'x-other', 'session', 'accept']
  t.same(removed.filter((n) => !p.isPrefixed(n)), [], 'all removed')
  t.same(kept.filter((n) => p.isPrefixed(n)), [], 'all kept')
})

t.test('takeUpdates: undefined when the app sent no prefixed header', async (t) => {
  const p = new HeaderProtocol('x-session')
  const headers = { 'content-type': 'text/plain', 'set-cookie': ['a=1'] }
  t.equal(p.takeUpdates(headers), undefined)
  t.same(headers, { 'content-type': 'text/plain', 'set-cookie': ['a=1'] }, 'untouched')
})

t.test('takeUpdates: set, merge, destroy and regenerate', async (t) => {
  const p = new HeaderProtocol('x-session')
  t.same(p.takeUpdates({ 'x-session-set': 'eyJhIjoxfQ' }), { ...NO_UPDATE, set: 'eyJhIjoxfQ' })
  t.same(p.takeUpdates({ 'x-session-merge': 'eyJiIjpudWxsfQ' }), { ...NO_UPDATE, merge: 'eyJiIjpudWxsfQ' })
  t.same(p.takeUpdates({ 'x-session-destroy': '1' }), { ...NO_UPDATE, destroy: true })
  t.same(p.takeUpdates({ 'x-session-regenerate': '1' }), { ...NO_UPDATE, regenerate: true })
  t.same(p.takeUpdates({ 'x-session-set': 'e30', 'x-session-merge': 'eyJhIjoxfQ', 'x-session-destroy': '1', 'x-session-regenerate': '1' }),
    { set: 'e30', merge: 'eyJhIjoxfQ', destroy: true, regenerate: true }, 'all at once: the caller decides precedence')
})

t.test('takeUpdates: names compared without regard to case, _ read as -', async (t) => {
  const p = new HeaderProtocol('x-session')
  t.same(p.takeUpdates({ 'X-Session-Set': 'e30' }), { ...NO_UPDATE, set: 'e30' })
  t.same(p.takeUpdates({ 'X-SESSION-MERGE': 'e30' }), { ...NO_UPDATE, merge: 'e30' })
  t.same(p.takeUpdates({ X_Session_Destroy: '1' }), { ...NO_UPDATE, destroy: true })
  t.same(p.takeUpdates({ 'x_session-REGENERATE': '1' }), { ...NO_UPDATE, regenerate: true })
})

t.test('takeUpdates: values are trimmed; destroy/regenerate are on for 1, true or yes', async (t) => {
  const p = new HeaderProtocol('x-session')
  t.same(p.takeUpdates({ 'x-session-set': '  e30 ' }), { ...NO_UPDATE, set: 'e30' })
  for (const on of ['1', 'true', 'TRUE', ' yes ']) t.equal(p.takeUpdates({ 'x-session-destroy': on })?.destroy, true, JSON.stringify(on))
  for (const off of ['0', 'false', 'no', '', '2']) t.equal(p.takeUpdates({ 'x-session-destroy': off })?.destroy, false, JSON.stringify(off))
})

t.test('takeUpdates: strips every prefixed header from the response, updates or not', async (t) => {
  const p = new HeaderProtocol('x-session')
  const headers: Record<string, string | string[] | undefined> = {
    'content-type': 'application/json',
    'X-Session-Set': 'e30',
    'x-session-id': 'echoed-by-the-app',
    'x-session': 'echoed-by-the-app',
    x_session_debug: 'leak',
    'x-sessionfoo': 'leak',
    'set-cookie': ['a=1', 'b=2'],
    'x-other': 'kept'
  }
  t.same(p.takeUpdates(headers), { ...NO_UPDATE, set: 'e30' })
  t.same(headers, { 'content-type': 'application/json', 'set-cookie': ['a=1', 'b=2'], 'x-other': 'kept' })
})

t.test('takeUpdates: prefixed headers that are not updates carry no update', async (t) => {
  const p = new HeaderProtocol('x-session')
  const headers: Record<string, string | string[] | undefined> = { 'x-session-id': 'k', 'x-session': 'e30', 'x-session-setx': 'e30' }
  const updates = p.takeUpdates(headers)
  t.equal(updates?.set, undefined)
  t.equal(updates?.merge, undefined)
  t.notOk(updates?.destroy)
  t.notOk(updates?.regenerate)
  t.same(headers, {}, 'still stripped')
})

t.test('takeUpdates: a repeated header is joined with commas, and marked duplicated', async (t) => {
  const p = new HeaderProtocol('x-session')
  t.same(p.takeUpdates({ 'x-session-set': ['e30', 'eyJhIjoxfQ'] }), { ...NO_UPDATE, set: 'e30,eyJhIjoxfQ', duplicated: 'X-Session-Set' })
  t.same(p.takeUpdates({ 'x-session-destroy': ['1', '1'] }), { ...NO_UPDATE, destroy: true }, 'a repeated flag is that flag')
})

t.test('a custom prefix: only its own headers are protocol headers', async (t) => {
  const p = new HeaderProtocol('x-app-session')
  t.ok(p.isPrefixed('x-app-session-id'))
  t.ok(p.isPrefixed('x_app_session_id'))
  t.notOk(p.isPrefixed('x-session-id'))
  const response: Record<string, string | string[] | undefined> = { 'X-App-Session-Set': 'e30', 'x-session-set': 'not ours' }
  t.same(p.takeUpdates(response), { ...NO_UPDATE, set: 'e30' })
  t.same(response, { 'x-session-set': 'not ours' })
})

t.test('takeUpdates: a Set or Merge sent twice (two lines, or two spellings) is marked duplicated, by name', async (t) => {
  const p = new HeaderProtocol('x-session')
  t.equal(p.takeUpdates({ 'x-session-merge': ['eyJhIjoxfQ', 'eyJiIjoyfQ'] })?.duplicated, 'X-Session-Merge', 'two lines of one name')
  t.equal(p.takeUpdates({ 'x-session-set': 'e30', X_Session_Set: 'eyJhIjoxfQ' })?.duplicated, 'X-Session-Set', 'two spellings')
  t.equal(p.takeUpdates({ 'x-session-set': 'e30', 'x-session-merge': 'eyJhIjoxfQ' })?.duplicated, undefined, 'a Set and a Merge are not duplicates')
  t.equal(p.takeUpdates({ 'x-session-merge': ['eyJhIjoxfQ'] })?.duplicated, undefined, 'one line in a list is one')
})
