import t from 'tap'
import { keyHash } from '../../src/session/key.js'
import { until } from '../../harness/index.js'
import { Browser, keyOf, q } from '../helpers/client.js'
import { LogCapture, startStack } from '../helpers/sidecar.js'

// README, Operations: at `log.level: debug` each session can be followed through memcached by
// its hash: what the nodes answered, what was decided, written, restored or ended; never the
// key, the cookie or the data.

const REVALIDATE_MS = 100
const { m, sidecar: start } = await startStack(t)

t.test('at log.level debug one session is followed through memcached by its hash, with no key, cookie or data', async (t) => {
  const logs = new LogCapture()
  const sidecar = await start(t, { log: { level: 'debug' }, cache: { revalidateMs: REVALIDATE_MS } }, { logs })
  const browser = new Browser()
  await browser.get(sidecar.url, `/login?set=${q({ user: 'ada-7c1e' })}`)
  const sid = browser.sid as string
  const key = keyOf(sid)
  const session = keyHash(key)
  const traced = (): Array<Record<string, unknown>> => logs.entries.filter((e) => e.session === session && typeof e.event === 'string')
  await until(() => traced().some((e) => e.event === 'written'), 5000, 'the login\'s write traced')
  t.match(traced().find((e) => e.event === 'written'), { level: 20, kind: 'set', version: 1, nodes: [m.address] }, 'the login\'s write: its version and its node')

  // memcached loses the copy (an eviction); the next check finds the miss and stores the copy again.
  await m.delete(`sess:${key}`)
  const seen = logs.lines.length
  await until(async () => {
    await browser.get(sidecar.url, '/profile')
    return logs.entries.slice(seen).some((e) => e.session === session && e.event === 'restored')
  }, 5000, 'a check after cache.revalidateMs')
  const check = logs.entries.slice(seen).filter((e) => e.session === session)
  t.match(check.find((e) => e.event === 'answers'), { by: 'check', localVersion: 1, nodes: [`${m.address}: miss`] }, 'what the node answered to the check')
  t.match(check.find((e) => e.event === 'restored'), { version: 1, lost: true }, 'the local copy is stored again')
  t.match(check.find((e) => e.event === 'loaded'), { by: 'check', outcome: 'miss-loaded', version: 1 }, 'and what the request was served')

  await browser.get(sidecar.url, '/logout?destroy=1')
  t.match(traced().find((e) => e.event === 'ended'), { version: 2, nodes: [m.address] }, 'the logout: its tombstone\'s version and node')

  const text = logs.text
  t.notOk(text.includes(key), 'no line holds the session key')
  t.notOk(text.includes(sid), 'or the cookie')
  t.notOk(text.includes('ada-7c1e'), 'or the data')
})

t.test('above debug, no trace line is written', async (t) => {
  const logs = new LogCapture()
  const sidecar = await start(t, { log: { level: 'info' }, cache: { revalidateMs: REVALIDATE_MS } }, { logs })
  const browser = new Browser()
  await browser.get(sidecar.url, `/login?set=${q({ user: 'bob' })}`)
  await browser.get(sidecar.url, '/logout?destroy=1')
  await sidecar.store.flush(2000)
  t.same(logs.entries.filter((e) => e.event !== undefined), [])
})
