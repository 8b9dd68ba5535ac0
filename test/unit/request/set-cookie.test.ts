import t from 'tap'
import type { CookieConfig } from '../../../src/config/index.js'
import { SessionCookieHeaders } from '../../../src/http/cookies.js'
import { SessionSetCookie } from '../../../src/request/set-cookie.js'
import { RequestSession } from '../../../src/request/state.js'
import { CookieCodec } from '../../../src/session/cookie.js'
import type { SessionRecord } from '../../../src/session/record.js'

// src/request/set-cookie.ts: the one place a response's Set-Cookie is decided, from the facts a
// request gathered (the cookie it sent, the session served or made, whether it ended).

const OLD = 'older-secret-0123456789'
const CURRENT = 'current-secret-0123456789'
const KEY = 'Zm9vYmFyYmF6cXV4MTIzNA'
const config: CookieConfig = { name: 'sid', domain: undefined, path: '/', secure: true, httpOnly: true, sameSite: 'lax', maxAge: undefined }
const codec = new CookieCodec([CURRENT, OLD])
const cookies = new SessionCookieHeaders(config)
const decide = new SessionSetCookie(codec, cookies)

const record = (version: number, key = KEY): SessionRecord => ({ key, version, header: 'e30', primary: '10.0.0.5:11211', backup: undefined, checkedAt: 0, acceptedVersion: version, cookie: undefined })

/** A request that sent `value` (signed by `secret`) and was served `served`. */
function request (value: string | undefined, served: SessionRecord | undefined, oldSecret = false): RequestSession {
  const state = new RequestSession()
  if (value !== undefined) {
    state.sent = value
    state.cookie = CookieCodec.parse(value)
    state.oldSecret = oldSecret
  }
  state.record = served
  return state
}

t.test('nothing changes: the client\'s cookie stays as it is', async (t) => {
  const served = record(3)
  t.equal(decide.for(request(codec.encode(served), served)), undefined)
  t.equal(decide.for(request(undefined, undefined)), undefined, 'no cookie, no session')
})

t.test('the session changed, moved or is new: its cookie is sent', async (t) => {
  const sent = codec.encode(record(3))
  t.equal(decide.for(request(sent, record(4))), cookies.set(codec.encode(record(4))), 'a new version')
  t.equal(decide.for(request(undefined, record(1))), cookies.set(codec.encode(record(1))), 'a new session')
  t.equal(decide.for(request(codec.encode(record(9)), record(1, 'A'.repeat(22)))), cookies.set(codec.encode(record(1, 'A'.repeat(22)))), 'a new key after an ended one at a higher version')
})

t.test('ended (gone or destroyed) with no session after it: the cookie is cleared', async (t) => {
  const state = request(codec.encode(record(3)), undefined)
  state.ended = true
  t.equal(decide.for(state), cookies.clear)
  state.record = record(1, 'A'.repeat(22))
  t.equal(decide.for(state), cookies.set(codec.encode(record(1, 'A'.repeat(22)))), 'unless the app made a new session')
})

t.test('a stale read never lowers the cookie\'s version; an old secret\'s cookie is reissued at its own version', async (t) => {
  const ahead = new CookieCodec([OLD]).encode(record(5))
  t.equal(decide.for(request(codec.encode(record(5)), record(4))), undefined, 'kept')
  t.equal(decide.for(request(ahead, record(4), true)), cookies.set(codec.encode(record(5))), 'reissued, signed by the current secret, at version 5')
})

t.test('a cookie signed by an old secret is reissued with the current one', async (t) => {
  const served = record(3)
  t.equal(decide.for(request(new CookieCodec([OLD]).encode(served), served, true)), cookies.set(codec.encode(served)))
})

t.test('unavailable (not loaded, not ended): the cookie stays for the next request to try again', async (t) => {
  const state = request(codec.encode(record(3)), undefined)
  state.unavailable = true
  t.equal(decide.for(state), undefined)
})

t.test('with session.cookie.maxAge the unchanged cookie is sent again once this sidecar has not sent it for maxAge / 2: an active user\'s cookie never expires', async (t) => {
  const clock = { now: 0 }
  const rolling = new SessionSetCookie(codec, new SessionCookieHeaders({ ...config, maxAge: 60 }), 60, () => clock.now)
  const served = record(3)
  const value = codec.encode(served)
  const expected = new SessionCookieHeaders({ ...config, maxAge: 60 }).set(value)
  t.match(expected, /Max-Age=60/)
  t.equal(rolling.for(request(value, served)), expected, 'the first response here: this sidecar never sent it')
  clock.now += 29_999
  t.equal(rolling.for(request(value, served)), undefined, 'within maxAge / 2 of that: not again')
  clock.now += 1
  t.equal(rolling.for(request(value, served)), expected, 'at maxAge / 2: sent again, the same value, a new Max-Age')
  clock.now += 1000
  t.equal(rolling.for(request(value, served)), undefined, 'and the half-life starts over')
  const changed = record(4)
  t.equal(rolling.for(request(value, changed)), new SessionCookieHeaders({ ...config, maxAge: 60 }).set(codec.encode(changed)), 'a change sends its cookie')
  clock.now += 1000
  t.equal(rolling.for(request(codec.encode(changed), changed)), undefined, 'which counts as sent')
  t.equal(decide.for(request(value, served)), undefined, 'without maxAge (a browser-session cookie) never')
})
