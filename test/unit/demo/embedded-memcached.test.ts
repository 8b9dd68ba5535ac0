import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { MemcacheClient } from 'memcache-client'
import { EMBEDDED_VERSION, EmbeddedMemcached, validKey } from '../../../demo/embedded-memcached.js'

// The demo's embedded memcached-protocol server (used by `npm run demo` when memcached is not
// installed), driven by memcache-client, the library the sidecar uses, with the sidecar's
// commands and options (src/memcached/node.ts), and by raw protocol text for the edges.


/** A server with a clock the test moves, and a client like the sidecar's. */
async function setup (t: Test): Promise<{ server: EmbeddedMemcached, client: MemcacheClient, clock: { now: number } }> {
  const clock = { now: 1_700_000_000_000 }
  const server = new EmbeddedMemcached({ now: () => clock.now })
  await server.listen(0)
  const client = new MemcacheClient({ server: { server: server.address, maxConnections: 1 }, cmdTimeout: 2000, connectTimeout: 2000, lifetime: 60 })
  t.teardown(async () => {
    client.shutdown()
    await server.close()
  })
  return { server, client, clock }
}

/** memcache-client rejects protocol replies (NOT_STORED, EXISTS, NOT_FOUND) with the reply as message. */
async function reply (p: Promise<unknown>): Promise<string> {
  return await p.then(() => 'OK', (err: Error) => err.message)
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

t.test('version', async (t) => {
  const { client } = await setup(t)
  t.same(await client.version(), ['VERSION', EMBEDDED_VERSION])
})

t.test('the sidecar\'s write path: add, gets, cas, touch, delete', async (t) => {
  const { client } = await setup(t)
  t.equal(await client.gets('sess:a'), undefined, 'a miss')
  t.equal(await reply(client.add('sess:a', '{"v":1}', { lifetime: 1800 })), 'OK', 'add a new key: STORED')
  t.equal(await reply(client.add('sess:a', '{"v":9}', { lifetime: 1800 })), 'NOT_STORED', 'add an existing key: NOT_STORED')
  const first = await client.gets<string>('sess:a')
  t.equal(first?.value, '{"v":1}', 'the first add won')
  t.match(first?.casUniq, /^\d+$/, 'gets returns a cas unique')
  t.equal(await reply(client.cas('sess:a', '{"v":2}', { casUniq: first?.casUniq as string, lifetime: 1800 })), 'OK', 'cas with the current unique: STORED')
  t.equal(await reply(client.cas('sess:a', '{"v":3}', { casUniq: first?.casUniq as string, lifetime: 1800 })), 'EXISTS', 'cas with a stale unique: EXISTS')
  const second = await client.gets<string>('sess:a')
  t.equal(second?.value, '{"v":2}', 'the stale cas changed nothing')
  t.not(second?.casUniq, first?.casUniq, 'every store gets a new unique')
  t.equal(await reply(client.cas('sess:none', 'x', { casUniq: '1', lifetime: 1800 })), 'NOT_FOUND', 'cas on a missing key: NOT_FOUND')
  t.equal(await reply(client.touch('sess:a', 1800)), 'OK', 'touch an existing key: TOUCHED')
  t.equal((await client.gets<string>('sess:a'))?.casUniq, second?.casUniq, 'touch keeps the cas unique (a later cas still applies)')
  t.equal(await reply(client.touch('sess:none', 1800)), 'NOT_FOUND', 'touch a missing key: NOT_FOUND')
  const touched = await client.retrieve<{ value: string, casUniq: string } | undefined>('gats 1800', 'sess:a')
  t.same([touched?.value, touched?.casUniq], ['{"v":2}', second?.casUniq], 'gats (the sidecar\'s revalidation) reads value and cas unique while it touches')
  t.equal(await client.retrieve('gats 1800', 'sess:none'), undefined, 'gats on a missing key: a miss')
  t.equal(await reply(client.delete('sess:a')), 'OK', 'delete: DELETED')
  t.equal(await reply(client.delete('sess:a')), 'NOT_FOUND', 'delete again: NOT_FOUND')
  t.equal(await client.gets('sess:a'), undefined, 'gone')
  t.equal(await reply(client.add('sess:a', 'again', { lifetime: 1800 })), 'OK', 'add after delete: STORED')
})

t.test('set overwrites; flags and binary values come back as stored', async (t) => {
  const { client } = await setup(t)
  await client.set('k', 'one')
  const one = await client.gets<string>('k')
  await client.set('k', 'two')
  const two = await client.gets<string>('k')
  t.equal(two?.value, 'two')
  t.not(two?.casUniq, one?.casUniq, 'set bumps the unique')
  await client.set('json', { a: [1, 2] })
  t.same((await client.get<unknown>('json'))?.value, { a: [1, 2] }, 'a JSON value: its flags round-trip')
  const binary = Buffer.from([0, 13, 10, 255, 13, 10])
  await client.set('bin', binary)
  t.same((await client.get<Buffer>('bin'))?.value, binary, 'a binary value with CR LF inside')
  await client.set('empty', '')
  t.equal((await client.get<string>('empty'))?.value, '', 'an empty value')
})

t.test('exptime: relative seconds, touch extends, absolute Unix time above 30 days, negative, 0 never', async (t) => {
  const { server, client, clock } = await setup(t)
  await client.add('rel', 'x', { lifetime: 10 })
  clock.now += 9_000
  t.ok(await client.gets('rel'), 'alive before its TTL')
  await client.touch('rel', 10)
  clock.now += 9_000
  t.ok(await client.gets('rel'), 'touch restarted the TTL')
  clock.now += 1_000
  t.equal(await client.gets('rel'), undefined, 'expired at its TTL')
  t.equal(await reply(client.touch('rel', 10)), 'NOT_FOUND', 'an expired key cannot be touched')
  t.equal(await reply(client.cas('rel', 'y', { casUniq: '1', lifetime: 10 })), 'NOT_FOUND', 'nor cas-ed')
  t.equal(await reply(client.add('rel', 'new', { lifetime: 10 })), 'OK', 'add succeeds over an expired key')

  const at = Math.floor(clock.now / 1000) + 5
  await client.set('abs', 'x', { lifetime: at })
  clock.now += 4_000
  t.ok(await client.gets('abs'), 'an absolute exptime in the future')
  clock.now += 1_000
  t.equal(await client.gets('abs'), undefined, 'expires at that Unix time')

  await client.set('never', 'x', { lifetime: 0 })
  await client.set('past', 'x', { lifetime: -1 })
  t.equal(await client.gets('past'), undefined, 'a negative exptime is expired at once')
  await client.set('soon', 'x', { lifetime: 1 })
  await client.touch('never', 0)
  await client.touch('soon', -1)
  t.equal(await client.gets('soon'), undefined, 'touch with a negative exptime expires the item')
  clock.now += 365 * 24 * 3600 * 1000
  t.ok(await client.gets('never'), '0 never expires')
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
  const bad = `CLIENT_ERROR bad command line format\r\n`
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
