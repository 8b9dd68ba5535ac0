import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { EMBEDDED_VERSION, EmbeddedMemcached, validKey } from '../../../demo/embedded-memcached.js'
import { MetaConnection } from '../../../src/memcached/meta-connection.js'

// The demo's embedded memcached-protocol server (used by `npm run demo` when memcached is not
// installed). The sidecar talks to memcached with meta commands (mg, ms, md) and `version`,
// through its own client, MetaConnection (src/memcached/meta-connection.ts): its path is driven
// with that client. The classic text commands (get/gets, gat/gats, set/add/cas, touch, delete)
// stay for operators' tools and compatibility: they are driven with raw protocol text and their
// replies checked byte for byte, as are the edges of both protocols.

/** A server with a clock the test moves, and a MetaConnection to it like the sidecar's. */
async function setup (t: Test): Promise<{ server: EmbeddedMemcached, port: number, connection: MetaConnection, clock: { now: number } }> {
  const clock = { now: 1_700_000_000_000 }
  const server = new EmbeddedMemcached({ now: () => clock.now })
  const port = await server.listen(0)
  // Opened on its first command, so a test that does not use it opens no connection.
  const connection = new MetaConnection({ host: '127.0.0.1', port, connectTimeoutMs: 2000, commandTimeoutMs: 2000 })
  t.teardown(async () => {
    connection.close()
    await server.close()
  })
  return { server, port, connection, clock }
}

/** Writes `chunks` one by one (each flushed separately) and collects the reply until `done` matches. */
async function exchange (port: number, chunks: Array<string | Buffer>, done: RegExp): Promise<string> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no complete reply, got ${JSON.stringify(text)}`)) }, 2000)
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1')
      if (done.test(text)) { clearTimeout(timer); socket.destroy(); resolve(text) }
    })
    socket.on('end', () => { clearTimeout(timer); resolve(text) })
    socket.on('error', (err) => { clearTimeout(timer); reject(err) })
    socket.on('connect', () => {
      const write = (i: number): void => {
        const chunk = chunks[i]
        if (chunk === undefined) return
        socket.write(chunk, () => setImmediate(() => write(i + 1)))
      }
      write(0)
    })
  })
}

/**
 * A classic command's reply ends with one of these lines: a retrieval's at END, a storage's at
 * STORED, NOT_STORED, EXISTS or NOT_FOUND, and so on.
 */
const REPLY_END = /(?:^|\r\n)(?:END|STORED|NOT_STORED|EXISTS|NOT_FOUND|TOUCHED|DELETED|OK|ERROR|(?:VERSION|CLIENT_ERROR|SERVER_ERROR) [^\r\n]*)\r\n$/

/** Sends one classic command (with its data block) on a new connection; its complete reply, read as latin1. */
async function classic (port: number, command: string | Buffer): Promise<string> {
  return await exchange(port, [command], REPLY_END)
}

t.test('version', async (t) => {
  const { port, connection } = await setup(t)
  t.equal(await classic(port, 'version\r\n'), `VERSION ${EMBEDDED_VERSION}\r\n`, 'the classic reply')
  t.equal(await connection.version(), EMBEDDED_VERSION, 'as MetaConnection reads it')
})

t.test('the sidecar\'s write path: add, cas, touch, delete (MetaConnection: ms, mg, md)', async (t) => {
  const { connection, clock } = await setup(t)
  t.equal(await connection.get('sess:a'), undefined, 'a miss')
  const added = await connection.store('sess:a', '{"v":1}', { mode: 'add', ttl: 1800 })
  t.same(added, { stored: true, cas: '1' }, 'add a new key: stored, with its CAS (a fresh server\'s first item gets 1)')
  t.same(await connection.store('sess:a', '{"v":9}', { mode: 'add', ttl: 1800 }), { stored: false, reason: 'not-stored' }, 'add an existing key: not stored')
  t.same(await connection.get('sess:a'), { value: '{"v":1}', cas: '1' }, 'the first add won; get returns its CAS')
  t.same(await connection.store('sess:a', '{"v":2}', { mode: 'set', ttl: 1800, cas: '1' }), { stored: true, cas: '2' }, 'set with the current CAS: stored, a new CAS')
  t.same(await connection.store('sess:a', '{"v":3}', { mode: 'set', ttl: 1800, cas: '1' }), { stored: false, reason: 'exists' }, 'set with a stale CAS: exists')
  t.same(await connection.get('sess:a'), { value: '{"v":2}', cas: '2' }, 'the stale CAS changed nothing')
  t.same(await connection.store('sess:none', 'x', { mode: 'set', ttl: 1800, cas: '1' }), { stored: false, reason: 'not-found' }, 'set with a CAS on a missing key: not found')
  t.same(await connection.get('sess:a', 1800), { value: '{"v":2}', cas: '2' }, 'get with a touch TTL (the sidecar\'s revalidation) reads value and CAS while it touches')
  t.equal(await connection.get('sess:none', 1800), undefined, 'get with a touch TTL on a missing key: a miss')
  t.same(await connection.store('sess:a', '{"v":4}', { mode: 'set', ttl: 1800, cas: '2' }), { stored: true, cas: '3' }, 'the touch kept the CAS: a later set with it still applies')
  t.same(await connection.store('sess:a', '{"v":5}', { mode: 'set', ttl: 1800 }), { stored: true, cas: '4' }, 'set without a CAS overwrites')

  t.same(await connection.store('sess:t', 'x', { mode: 'add', ttl: 10 }), { stored: true, cas: '5' })
  clock.now += 9_000
  t.same(await connection.get('sess:t', 10), { value: 'x', cas: '5' }, 'alive before its TTL, touched')
  clock.now += 9_000
  t.same(await connection.get('sess:t'), { value: 'x', cas: '5' }, 'the touch restarted the TTL')
  clock.now += 1_000
  t.equal(await connection.get('sess:t', 10), undefined, 'expired at its TTL: cannot be touched')
  t.same(await connection.store('sess:t', 'y', { mode: 'add', ttl: 10 }), { stored: true, cas: '6' }, 'add over an expired key')

  t.equal(await connection.delete('sess:a'), true, 'delete: true')
  t.equal(await connection.delete('sess:a'), false, 'delete again: false')
  t.equal(await connection.get('sess:a'), undefined, 'gone')
  t.same(await connection.store('sess:a', 'again', { mode: 'add', ttl: 1800 }), { stored: true, cas: '7' }, 'add after delete: stored')
  t.equal(await connection.version(), EMBEDDED_VERSION, 'version (the sidecar\'s probe) on the same connection')
})

t.test('the classic write path: add, gets, cas, touch, gat, gats, delete', async (t) => {
  const { port } = await setup(t)
  t.equal(await classic(port, 'gets sess:a\r\n'), 'END\r\n', 'a miss')
  t.equal(await classic(port, 'add sess:a 0 1800 7\r\n{"v":1}\r\n'), 'STORED\r\n', 'add a new key: STORED')
  t.equal(await classic(port, 'add sess:a 0 1800 7\r\n{"v":9}\r\n'), 'NOT_STORED\r\n', 'add an existing key: NOT_STORED')
  t.equal(await classic(port, 'gets sess:a\r\n'), 'VALUE sess:a 0 7 1\r\n{"v":1}\r\nEND\r\n', 'the first add won; gets returns its cas unique')
  t.equal(await classic(port, 'cas sess:a 0 1800 7 1\r\n{"v":2}\r\n'), 'STORED\r\n', 'cas with the current unique: STORED')
  t.equal(await classic(port, 'cas sess:a 0 1800 7 1\r\n{"v":3}\r\n'), 'EXISTS\r\n', 'cas with a stale unique: EXISTS')
  t.equal(await classic(port, 'gets sess:a\r\n'), 'VALUE sess:a 0 7 2\r\n{"v":2}\r\nEND\r\n', 'the stale cas changed nothing; every store gets a new unique')
  t.equal(await classic(port, 'cas sess:none 0 1800 1 1\r\nx\r\n'), 'NOT_FOUND\r\n', 'cas on a missing key: NOT_FOUND')
  t.equal(await classic(port, 'touch sess:a 1800\r\n'), 'TOUCHED\r\n', 'touch an existing key: TOUCHED')
  t.equal(await classic(port, 'gets sess:a\r\n'), 'VALUE sess:a 0 7 2\r\n{"v":2}\r\nEND\r\n', 'touch keeps the cas unique (a later cas still applies)')
  t.equal(await classic(port, 'touch sess:none 1800\r\n'), 'NOT_FOUND\r\n', 'touch a missing key: NOT_FOUND')
  t.equal(await classic(port, 'gats 1800 sess:a\r\n'), 'VALUE sess:a 0 7 2\r\n{"v":2}\r\nEND\r\n', 'gats reads value and cas unique while it touches')
  t.equal(await classic(port, 'gat 1800 sess:a\r\n'), 'VALUE sess:a 0 7\r\n{"v":2}\r\nEND\r\n', 'gat: the same without the unique')
  t.equal(await classic(port, 'gats 1800 sess:none\r\n'), 'END\r\n', 'gats on a missing key: a miss')
  t.equal(await classic(port, 'delete sess:a\r\n'), 'DELETED\r\n', 'delete: DELETED')
  t.equal(await classic(port, 'delete sess:a\r\n'), 'NOT_FOUND\r\n', 'delete again: NOT_FOUND')
  t.equal(await classic(port, 'gets sess:a\r\n'), 'END\r\n', 'gone')
  t.equal(await classic(port, 'add sess:a 0 1800 5\r\nagain\r\n'), 'STORED\r\n', 'add after delete: STORED')
})

t.test('set overwrites; flags and binary values come back as stored', async (t) => {
  const { port } = await setup(t)
  t.equal(await classic(port, 'set k 0 0 3\r\none\r\n'), 'STORED\r\n')
  t.equal(await classic(port, 'gets k\r\n'), 'VALUE k 0 3 1\r\none\r\nEND\r\n')
  t.equal(await classic(port, 'set k 0 0 3\r\ntwo\r\n'), 'STORED\r\n', 'set over an existing key')
  t.equal(await classic(port, 'gets k\r\n'), 'VALUE k 0 3 2\r\ntwo\r\nEND\r\n', 'overwritten; set bumps the unique')
  t.equal(await classic(port, 'get k\r\n'), 'VALUE k 0 3\r\ntwo\r\nEND\r\n', 'get: no unique')
  t.equal(await classic(port, 'set json 2 0 11\r\n{"a":[1,2]}\r\n'), 'STORED\r\n')
  t.equal(await classic(port, 'get json\r\n'), 'VALUE json 2 11\r\n{"a":[1,2]}\r\nEND\r\n', 'the flags round-trip')
  t.equal(await classic(port, 'set top 4294967295 0 1\r\n!\r\n'), 'STORED\r\n')
  t.equal(await classic(port, 'get top\r\n'), 'VALUE top 4294967295 1\r\n!\r\nEND\r\n', 'flags up to 32 bits')
  const binary = Buffer.from([0, 13, 10, 255, 13, 10])
  t.equal(await classic(port, Buffer.concat([Buffer.from('set bin 0 0 6\r\n'), binary, Buffer.from('\r\n')])), 'STORED\r\n')
  t.equal(await classic(port, 'get bin\r\n'), `VALUE bin 0 6\r\n${binary.toString('latin1')}\r\nEND\r\n`, 'a binary value with CR LF inside')
  t.equal(await classic(port, 'set empty 0 0 0\r\n\r\n'), 'STORED\r\n')
  t.equal(await classic(port, 'get empty\r\n'), 'VALUE empty 0 0\r\n\r\nEND\r\n', 'an empty value')
})

t.test('exptime: relative seconds, touch extends, absolute Unix time above 30 days, negative, 0 never', async (t) => {
  const { server, port, clock } = await setup(t)
  const alive = (key: string): string => `VALUE ${key} 0 1\r\nx\r\nEND\r\n`
  t.equal(await classic(port, 'add rel 0 10 1\r\nx\r\n'), 'STORED\r\n')
  clock.now += 9_000
  t.equal(await classic(port, 'get rel\r\n'), alive('rel'), 'alive before its TTL')
  t.equal(await classic(port, 'touch rel 10\r\n'), 'TOUCHED\r\n')
  clock.now += 9_000
  t.equal(await classic(port, 'get rel\r\n'), alive('rel'), 'touch restarted the TTL')
  clock.now += 1_000
  t.equal(await classic(port, 'get rel\r\n'), 'END\r\n', 'expired at its TTL')
  t.equal(await classic(port, 'touch rel 10\r\n'), 'NOT_FOUND\r\n', 'an expired key cannot be touched')
  t.equal(await classic(port, 'cas rel 0 10 1 1\r\ny\r\n'), 'NOT_FOUND\r\n', 'nor cas-ed')
  t.equal(await classic(port, 'add rel 0 10 3\r\nnew\r\n'), 'STORED\r\n', 'add succeeds over an expired key')

  t.equal(await classic(port, 'set gat 0 10 1\r\nx\r\n'), 'STORED\r\n')
  clock.now += 9_000
  t.equal(await classic(port, 'gat 10 gat\r\n'), alive('gat'), 'gat reads the item before its TTL')
  clock.now += 9_000
  t.equal(await classic(port, 'get gat\r\n'), alive('gat'), 'and restarted its TTL')

  const at = Math.floor(clock.now / 1000) + 5
  t.equal(await classic(port, `set abs 0 ${at} 1\r\nx\r\n`), 'STORED\r\n')
  clock.now += 4_000
  t.equal(await classic(port, 'get abs\r\n'), alive('abs'), 'an absolute exptime in the future')
  clock.now += 1_000
  t.equal(await classic(port, 'get abs\r\n'), 'END\r\n', 'expires at that Unix time')

  t.equal(await classic(port, 'set never 0 0 1\r\nx\r\n'), 'STORED\r\n')
  t.equal(await classic(port, 'set past 0 -1 1\r\nx\r\n'), 'STORED\r\n', 'a negative exptime is STORED')
  t.equal(await classic(port, 'get past\r\n'), 'END\r\n', 'but expired at once')
  t.equal(await classic(port, 'set soon 0 1 1\r\nx\r\n'), 'STORED\r\n')
  t.equal(await classic(port, 'touch never 0\r\n'), 'TOUCHED\r\n')
  t.equal(await classic(port, 'touch soon -1\r\n'), 'TOUCHED\r\n')
  t.equal(await classic(port, 'get soon\r\n'), 'END\r\n', 'touch with a negative exptime expires the item')
  clock.now += 365 * 24 * 3600 * 1000
  t.equal(await classic(port, 'get never\r\n'), alive('never'), '0 never expires')
  t.equal(server.size, 1, 'expired items are dropped: only "never" is left')
})

t.test('raw protocol: multi-key gets, pipelining, split commands, noreply', async (t) => {
  const { server } = await setup(t)
  const port = server.port
  const stored = await exchange(port, ['set a 5 0 1\r\nA\r\nset b 0 0 2\r\nBB\r\nget a b c\r\n'], /END\r\n$/)
  t.equal(stored, 'STORED\r\nSTORED\r\nVALUE a 5 1\r\nA\r\nVALUE b 0 2\r\nBB\r\nEND\r\n', 'pipelined in one write, answered in order')
  const gets = await exchange(port, ['gets a b\r\n'], /END\r\n$/)
  t.match(gets, /^VALUE a 5 1 \d+\r\nA\r\nVALUE b 0 2 \d+\r\nBB\r\nEND\r\n$/, 'gets adds the cas unique')
  const bytes = [...'add c 0 60 3\r\nxyz\r\ngets c\r\n'].map((ch) => ch)
  t.match(await exchange(port, bytes, /END\r\n$/), /^STORED\r\nVALUE c 0 3 \d+\r\nxyz\r\nEND\r\n$/, 'a command sent one byte at a time')
  const quiet = await exchange(port, ['set q 0 0 1 noreply\r\nQ\r\ntouch q 60 noreply\r\ndelete a noreply\r\nadd q 0 0 1 noreply\r\nZ\r\nget q a\r\n'], /END\r\n$/)
  t.equal(quiet, 'VALUE q 0 1\r\nQ\r\nEND\r\n', 'noreply suppresses STORED, TOUCHED, DELETED and NOT_STORED')
  const cas = /VALUE c 0 3 (\d+)/.exec(await exchange(port, ['gets c\r\n'], /END\r\n$/))?.[1] ?? ''
  t.equal(await exchange(port, [`cas c 0 0 1 ${cas}\r\nC\r\ncas c 0 0 1 ${cas}\r\nD\r\n`], /EXISTS\r\n$/), 'STORED\r\nEXISTS\r\n', 'raw cas')
  t.equal(await exchange(port, ['delete c\r\ndelete c\r\ntouch c 1\r\n'], /NOT_FOUND\r\nNOT_FOUND\r\n$/), 'DELETED\r\nNOT_FOUND\r\nNOT_FOUND\r\n')
})

t.test('raw protocol: keys validated, errors, oversized items swallowed, overlong lines closed', async (t) => {
  const { server } = await setup(t)
  const port = server.port
  const long = 'k'.repeat(250)
  t.equal(await exchange(port, [`set ${long} 0 0 1\r\n1\r\nget ${long}\r\n`], /END\r\n$/), `STORED\r\nVALUE ${long} 0 1\r\n1\r\nEND\r\n`, 'a 250-byte key is fine')
  const bad = 'CLIENT_ERROR bad command line format\r\n'
  t.equal(await exchange(port, [`get ${long}k\r\n`], /\r\n$/), bad, 'a 251-byte key is refused')
  t.equal(await exchange(port, ['get a\x01b\r\n'], /\r\n$/), bad, 'a control character in a key is refused')
  t.equal(await exchange(port, ['get\r\n'], /\r\n$/), bad, 'get without a key')
  t.equal(await exchange(port, ['touch a\r\n'], /\r\n$/), bad, 'touch without exptime')
  t.equal(await exchange(port, ['delete a b c\r\n'], /\r\n$/), bad, 'delete with junk')
  t.equal(await exchange(port, ['cas a 0 0 1\r\n'], /\r\n$/), bad, 'cas without a unique')
  t.equal(await exchange(port, ['set a 0 0 x\r\n'], /\r\n$/), bad, 'a non-numeric length')
  t.equal(await exchange(port, ['set a 4294967296 0 1\r\n'], /\r\n$/), bad, 'flags over 32 bits')
  t.equal(await exchange(port, ['incr a 1\r\nflush_all\r\n'], /ERROR\r\nERROR\r\n$/), 'ERROR\r\nERROR\r\n', 'commands the sidecar does not use are unknown')
  // As in memcached: the item is refused and what follows its announced length is read as commands.
  t.equal(await exchange(port, ['set a 0 0 1\r\nXYZ\r\nget a\r\n'], /END\r\n$/), 'CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n', 'a data block longer than announced is refused')
  const big = 1024 * 1024 + 1
  const tooLarge = await exchange(port, [`set big 0 0 ${big}\r\n`, Buffer.alloc(big, 'x'), '\r\nversion\r\n'], /VERSION [^\r]*\r\n$/)
  t.equal(tooLarge, `SERVER_ERROR object too large for cache\r\nVERSION ${EMBEDDED_VERSION}\r\n`, 'an item over 1 MiB is refused and its data swallowed')
  t.equal(await exchange(port, ['x'.repeat(3000)], /\r\n$/), 'CLIENT_ERROR line too long\r\n', 'a line over 2048 bytes closes the connection')
  t.ok(validKey('sess:abc') && !validKey('') && !validKey('a b') && !validKey('a\x7f'), 'validKey')
})

/** Meta commands over a raw connection; the replies, up to the MN of an `mn` sent after them. */
async function meta (port: number, text: string): Promise<string> {
  return (await exchange(port, [`${text}mn\r\n`], /MN\r\n$/)).slice(0, -'MN\r\n'.length)
}

t.test('meta commands: TTLs on the fake clock (T on ms and mg, t, add over an expired key)', async (t) => {
  const { server, clock } = await setup(t)
  const port = server.port
  t.equal(await meta(port, 'ms a 1 T10 c\r\nA\r\nmg a t\r\n'), 'HD c1\r\nHD t10\r\n', 'ms T sets the TTL, mg t reads it')
  clock.now += 9_000
  t.equal(await meta(port, 'mg a v t\r\n'), 'VA 1 t1\r\nA\r\n', 'alive a second before')
  clock.now += 1_000
  t.equal(await meta(port, 'mg a v t\r\n'), 'EN\r\n', 'expired at its TTL')
  t.equal(await meta(port, 'ms a 1 ME c\r\nB\r\nmg a v c\r\n'), 'HD c2\r\nVA 1 c2\r\nB\r\n', 'add (ME) over an expired key succeeds')

  t.equal(await meta(port, 'ms b 1 T10 c\r\nB\r\n'), 'HD c3\r\n')
  clock.now += 9_000
  t.equal(await meta(port, 'mg b c T10 t\r\n'), 'HD c3 t10\r\n', 'mg T touches: a new TTL, the CAS kept')
  clock.now += 9_000
  t.equal(await meta(port, 'mg b t\r\n'), 'HD t1\r\n', 'the touch restarted the TTL')
  t.equal(await meta(port, 'gets b\r\n'), 'VALUE b 0 1 3\r\nB\r\nEND\r\n', 'gets sees the same CAS')
  clock.now += 1_000
  t.equal(await meta(port, 'mg b T10\r\n'), 'EN\r\n', 'an expired key cannot be touched')

  t.equal(await meta(port, 'ms c 1 T100\r\nC\r\n'), 'HD\r\n')
  clock.now += 30_500
  t.equal(await meta(port, 'mg c t\r\n'), 'HD t70\r\n', 'a second begun counts as left (memcached counts whole seconds)')
  t.equal(await meta(port, 'ms c 1 MA T5\r\n!\r\nmg c v t\r\n'), 'HD\r\nVA 2 t70\r\nC!\r\n', 'append keeps the TTL (its own T is ignored)')

  const at = Math.floor(clock.now / 1000) + 50
  t.equal(await meta(port, `ms d 1 T${at}\r\nD\r\nmg d t\r\n`), 'HD\r\nHD t50\r\n', 'T above 30 days is a Unix time')
  clock.now += 50_000
  t.equal(await meta(port, 'mg d\r\n'), 'EN\r\n', 'expired at that time')

  t.equal(await meta(port, 'ms e 1\r\nE\r\nms f 1 T0\r\nF\r\nms g 1 T-1\r\nG\r\nmg g\r\n'), 'HD\r\nHD\r\nHD\r\nEN\r\n', 'T absent and T0 never expire; T-1 stores an expired item')
  t.equal(await meta(port, 'ms h 1 T30\r\nH\r\nmg h T0 t\r\nmg h T-1\r\nmg h\r\n'), 'HD\r\nHD t-1\r\nHD\r\nEN\r\n', 'mg T0 removes the TTL, mg T-1 expires the item')
  clock.now += 365 * 24 * 3600 * 1000
  t.equal(await meta(port, 'mg e t\r\nmg f t\r\n'), 'HD t-1\r\nHD t-1\r\n', 'a year later: t -1, still there')
  t.equal(server.size, 3, 'expired items are dropped: a (re-added without a TTL), e and f are left')
})

t.test('meta commands: one CAS counter with gets and cas; q; the meta flags this server does not implement', async (t) => {
  const { server } = await setup(t)
  const port = server.port
  t.equal(await meta(port, 'set a 0 0 1\r\nA\r\nms a 1 c\r\nB\r\ngets a\r\n'), 'STORED\r\nHD c2\r\nVALUE a 0 1 2\r\nB\r\nEND\r\n', 'gets after ms shows the ms\'s CAS')
  t.equal(await meta(port, 'cas a 0 0 1 2\r\nC\r\nms a 1 C3 c\r\nD\r\nms a 1 C3 c\r\nE\r\ntouch a 60\r\ngat 60 a\r\nmg a c v\r\n'),
    'STORED\r\nHD c4\r\nEX c0\r\nTOUCHED\r\nVALUE a 0 1\r\nD\r\nEND\r\nVA 1 c4\r\nD\r\n', 'cas and ms C take each other\'s CAS; touch and gat keep it')
  t.equal(await meta(port, 'md a C3\r\nmd a C4 q\r\nmg a v q\r\nmd a q\r\nms a 1 MR q\r\nR\r\n'), 'EX\r\nNF\r\nNS\r\n', 'q hides HD and a miss, not EX, NF or NS')
  t.equal(await meta(port, 'ms b 2 MS q\r\nhi\r\nmg b k v q\r\n'), 'VA 2 kb\r\nhi\r\n', 'q shows a hit')

  // memcached 1.6.18 knows these (stale-while-revalidate, hit and last-access flags, base64 keys); this server refuses them as unknown.
  for (const flag of ['N30', 'R30', 'h', 'l', 'b']) t.equal(await meta(port, `mg b v ${flag}\r\n`), 'CLIENT_ERROR invalid flag\r\n', `mg ${flag} is refused`)
  t.equal(await meta(port, 'ms b 1 I C1\r\nx\r\nmd b I\r\nmg b v\r\n'), 'CLIENT_ERROR invalid flag\r\nCLIENT_ERROR invalid or duplicate flag\r\nVA 2\r\nhi\r\n', 'I (invalidate) is refused, its data swallowed')
  t.equal(await meta(port, 'me b\r\nma b\r\n'), 'ERROR\r\nERROR\r\n', 'me and ma are unknown here')
  t.equal(await meta(port, 'mg a\x01b v\r\nms a\x01b 1\r\nx\r\n'), 'CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\nERROR\r\n', 'a control character in a key is refused as a key over 250 bytes')
})

t.test('close ends open connections and forgets the items', async (t) => {
  const server = new EmbeddedMemcached()
  await server.listen(0)
  await exchange(server.port, ['set a 0 0 1\r\nA\r\n'], /STORED\r\n$/)
  const closed = await new Promise<string>((resolve, reject) => {
    const socket = connect(server.port, '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => reject(new Error('the connection stayed open')), 2000)
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1')
      // The server answered, so it holds this connection: close it now.
      if (text.endsWith('\r\n')) void server.close()
    })
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve(text) })
    socket.write('version\r\n')
  })
  t.equal(closed, `VERSION ${EMBEDDED_VERSION}\r\n`, 'the open connection was closed by the server')
  t.equal(server.size, 0, 'no items left')
  await server.close()
})
