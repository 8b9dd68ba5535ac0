import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { hasIpv6Loopback, MemcachedProcess } from '../helpers/memcached.js'
import { closeServer, freePort, listenOnLoopback, until } from '../../harness/index.js'
import { SilentServer } from '../helpers/tcp.js'
import { MetaConnection, MetaConnectionError, type MetaConnectionOptions } from '../../src/memcached/meta-connection.js'

// SPEC: src/memcached/meta-connection.ts speaks memcached's meta commands on one pipelined
// socket. Protocol outcomes (a miss, EX, NS, NF) are results; a broken connection or server is a
// MetaConnectionError, and a stream that can no longer be trusted is dropped, never parsed on.

const m = await MemcachedProcess.start()
t.teardown(() => m.stop())

/** A connection with short deadlines, closed when the test ends; `lost` records onLost's reasons. */
function open (t: Test, port: number, options: Partial<MetaConnectionOptions> = {}): { c: MetaConnection, lost: string[] } {
  const lost: string[] = []
  const c = new MetaConnection({ host: '127.0.0.1', port, connectTimeoutMs: 1000, commandTimeoutMs: 1000, onLost: (reason) => lost.push(reason), ...options })
  t.teardown(() => c.close())
  return { c, lost }
}

const failure = (message: string | RegExp): { name: string, message: string | RegExp, constructor: typeof MetaConnectionError } => ({ name: 'MetaConnectionError', message, constructor: MetaConnectionError })

t.test('get: a miss is undefined, a hit is the value (utf8, any length) with its CAS', async (t) => {
  const { c } = open(t, m.port)
  t.equal(await c.get('mc:get:none'), undefined)
  const stored = await c.store('mc:get:k', 'café ☕', { mode: 'set', ttl: 60 })
  t.ok(stored.stored)
  t.same(await c.get('mc:get:k'), { value: 'café ☕', cas: stored.stored ? stored.cas : 'none' }, 'the value and the CAS the store returned')
  await c.store('mc:get:empty', '', { mode: 'set', ttl: 60 })
  t.equal((await c.get('mc:get:empty'))?.value, '', 'an empty value is a hit')
  t.equal(await m.get('mc:get:k'), Buffer.from('café ☕').toString('latin1'), 'stored as its utf8 bytes (the raw helper reads latin1)')
})

t.test('add stores once, then answers not-stored', async (t) => {
  const { c } = open(t, m.port)
  const first = await c.store('mc:add', 'one', { mode: 'add', ttl: 60 })
  t.match(first, { stored: true, cas: /^[0-9]+$/ })
  t.same(await c.store('mc:add', 'two', { mode: 'add', ttl: 60 }), { stored: false, reason: 'not-stored' })
  t.equal((await c.get('mc:add'))?.value, 'one', 'the first value stays')
})

t.test('set with a CAS: the current one stores and returns a new CAS, a stale one is exists, one on a missing key is not-found', async (t) => {
  const { c } = open(t, m.port)
  const first = await c.store('mc:cas', 'v1', { mode: 'set', ttl: 60 })
  if (!first.stored) throw new Error('set failed')
  const second = await c.store('mc:cas', 'v2', { mode: 'set', ttl: 60, cas: first.cas })
  if (!second.stored) throw new Error('CAS set failed')
  t.not(second.cas, first.cas, 'a new CAS')
  t.same(await c.get('mc:cas'), { value: 'v2', cas: second.cas }, 'the returned CAS is the stored one: no read needed before the next change')
  t.same(await c.store('mc:cas', 'v3', { mode: 'set', ttl: 60, cas: first.cas }), { stored: false, reason: 'exists' })
  t.same(await c.store('mc:cas:none', 'v', { mode: 'set', ttl: 60, cas: first.cas }), { stored: false, reason: 'not-found' })
  t.equal((await c.get('mc:cas'))?.value, 'v2', 'the refused stores changed nothing')
})

t.test('get with a touch TTL refreshes the TTL and keeps the CAS', async (t) => {
  const { c } = open(t, m.port)
  const stored = await c.store('mc:touch', 'v', { mode: 'set', ttl: 10 })
  const hit = await c.get('mc:touch', 1000)
  t.same(hit, { value: 'v', cas: stored.stored ? stored.cas : 'none' }, 'the same CAS')
  // `mg <key> t` reports the remaining TTL; `version` ends the exchange for the raw helper.
  const ttl = Number(/^HD t(\d+)\r\n/.exec(await m.command('mg mc:touch t\r\nversion\r\n'))?.[1])
  t.ok(ttl > 10 && ttl <= 1000, `the TTL was refreshed to about 1000 s (${ttl})`)
})

t.test('delete: true when it deleted, false when there was none', async (t) => {
  const { c } = open(t, m.port)
  await c.store('mc:del', 'v', { mode: 'set', ttl: 60 })
  t.equal(await c.delete('mc:del'), true)
  t.equal(await c.delete('mc:del'), false)
  t.equal(await c.get('mc:del'), undefined)
})

t.test('version is memcached\'s version string', async (t) => {
  const { c } = open(t, m.port)
  t.match(await c.version(), /^1\.[0-9]+\.[0-9]+/)
})

t.test('3000 commands issued at once share one connection and are answered in order', async (t) => {
  const { c } = open(t, m.port)
  await c.connect()
  const before = Number((await m.stats()).total_connections)
  const commands: Array<Promise<unknown>> = []
  for (let i = 0; i < 1500; i++) {
    // Each get follows its store in the pipeline: it can only see the value if replies are matched in order.
    commands.push(c.store(`mc:many:${i}`, `value ${i} `.repeat(i % 50), { mode: 'set', ttl: 60 }))
    commands.push(c.get(`mc:many:${i}`))
  }
  const replies = await Promise.all(commands)
  const wrong = []
  for (let i = 0; i < 1500; i++) {
    const stored = replies[2 * i] as { stored: true, cas: string }
    const read = replies[2 * i + 1] as { value: string, cas: string }
    if (read.value !== `value ${i} `.repeat(i % 50) || read.cas !== stored.cas) wrong.push(i)
  }
  t.same(wrong, [], 'every get read the value and CAS of the store just before it')
  const after = Number((await m.stats()).total_connections)
  t.equal(after - before, 1, 'no new connection but the stats request\'s own')
})

t.test('an IPv6 memcached is reached with host ::1', { skip: await hasIpv6Loopback() ? false : 'this machine has no ::1' }, async (t) => {
  const v6 = await MemcachedProcess.start('::1')
  t.teardown(() => v6.stop())
  const { c } = open(t, v6.port, { host: '::1' })
  t.match(await c.store('mc:v6', 'six', { mode: 'set', ttl: 60 }), { stored: true })
  t.equal((await c.get('mc:v6'))?.value, 'six')
})

t.test('memcached restarts: the pending command fails, onLost is called once, the next command reconnects to the empty server', async (t) => {
  const restarted = await MemcachedProcess.start()
  t.teardown(() => restarted.stop())
  const { c, lost } = open(t, restarted.port)
  await c.store('mc:restart', 'v', { mode: 'set', ttl: 60 })
  // Frozen, it cannot answer: the get is surely pending when the process dies.
  process.kill(restarted.pid as number, 'SIGSTOP')
  const pending = t.rejects(c.get('mc:restart'), failure(/ECONNRESET|connection closed/))
  await restarted.stop('SIGKILL')
  await pending
  t.equal(lost.length, 1, `onLost: ${lost.join(', ')}`)

  await restarted.start()
  t.equal(await c.get('mc:restart'), undefined, 'a new connection, to an empty memcached')
  t.match(await c.store('mc:restart', 'again', { mode: 'set', ttl: 60 }), { stored: true })
  t.equal(lost.length, 1, 'still once for that connection')

  await restarted.stop('SIGKILL')
  await until(() => lost.length === 2, 2000, 'onLost for the idle connection')
  t.pass('an idle connection that ends is reported too, once')
})

t.test('a refused connect fails the command with the socket\'s error, at once, without onLost', async (t) => {
  const port = await freePort()
  const { c, lost } = open(t, port, { connectTimeoutMs: 10_000, commandTimeoutMs: 10_000 })
  await t.rejects(c.connect(), failure(`connect ECONNREFUSED 127.0.0.1:${port}`))
  await t.rejects(c.get('k'), failure(`connect ECONNREFUSED 127.0.0.1:${port}`), 'not the 10 s timeout: the refusal itself')
  t.same(lost, [], 'no connection was established, so none was lost')
})

t.test('invalid keys, TTLs and CAS are TypeErrors thrown before anything is sent; the connection goes on', async (t) => {
  const { c, lost } = open(t, m.port)
  const invalid = ['', 'k'.repeat(251), 'é'.repeat(126), 'two words', 'new\r\nline', 'tab\t', 'nul\x00', 'del\x7f', 'nbsp\u00a0']
  for (const key of invalid) {
    await t.rejects(c.get(key), TypeError, `get ${JSON.stringify(key.slice(0, 20))}`)
    await t.rejects(c.store(key, 'v', { mode: 'set', ttl: 60 }), TypeError)
    await t.rejects(c.delete(key), TypeError)
  }
  await t.rejects(c.store('k', 'v', { mode: 'set', ttl: -1 }), TypeError, 'a negative TTL')
  await t.rejects(c.store('k', 'v', { mode: 'set', ttl: 1.5 }), TypeError, 'a fractional TTL')
  await t.rejects(c.get('k', Number.NaN), TypeError, 'a touch TTL that is not a number')
  await t.rejects(c.store('k', 'v', { mode: 'set', ttl: 60, cas: '1 ME' }), TypeError, 'a CAS that would add flags')
  const longest = 'k'.repeat(250)
  t.match(await c.store(longest, 'v', { mode: 'set', ttl: 60 }), { stored: true }, 'a 250-byte key is valid')
  t.equal((await c.get(longest))?.value, 'v')
  t.same(lost, [])
})

t.test('a too-large value is a SERVER_ERROR for that command only; the stream goes on', async (t) => {
  const { c, lost } = open(t, m.port)
  const [, next] = await Promise.all([
    t.rejects(c.store('mc:big', 'x'.repeat(2 * 1024 * 1024), { mode: 'set', ttl: 60 }), failure('SERVER_ERROR object too large for cache')),
    c.store('mc:after-big', 'fine', { mode: 'set', ttl: 60 })
  ])
  t.match(next, { stored: true }, 'the command pipelined behind it is answered')
  t.same(lost, [])
})

t.test('close() fails pending commands without onLost; the next command reconnects', async (t) => {
  const { c, lost } = open(t, m.port)
  const connecting = c.get('mc:close')
  c.close()
  await t.rejects(connecting, failure('connection closed'), 'a command waiting for the connect')
  await c.connect()
  const sent = c.get('mc:close')
  c.close()
  await t.rejects(sent, failure('connection closed'), 'a command written, not yet answered')
  t.match(await c.version(), /^1\./, 'reconnected')
  t.same(lost, [])
})

/**
 * A memcached of the test's own: `answer` returns the reply to each command (its line, and for
 * `ms` its data), or undefined for none. Replies to what one read brought are written at once,
 * or one byte per write when `bytewise`.
 */
class FakeMemcached {
  connections = 0
  readonly #server: Server
  port = 0

  constructor (answer: (line: string, opaque: string) => string | undefined, bytewise = false) {
    this.#server = createServer((socket) => {
      this.connections++
      socket.on('error', () => {})
      let received = ''
      socket.setEncoding('latin1')
      socket.on('data', (text: string) => {
        received += text
        let replies = ''
        for (;;) {
          const end = received.indexOf('\r\n')
          if (end < 0) break
          const line = received.slice(0, end)
          const size = line.startsWith('ms ') ? Number(line.split(' ')[2]) + 2 : 0
          if (received.length < end + 2 + size) break
          received = received.slice(end + 2 + size)
          replies += answer(line, / (O[0-9]+)/.exec(line)?.[1] ?? '') ?? ''
        }
        if (bytewise) void writeBytewise(socket, replies)
        else if (replies !== '') socket.write(replies)
      })
    })
  }

  async start (): Promise<this> {
    this.port = await listenOnLoopback(this.#server)
    return this
  }

  async close (): Promise<void> {
    await closeServer(this.#server)
  }
}

async function writeBytewise (socket: Socket, text: string): Promise<void> {
  socket.setNoDelay(true)
  for (let i = 0; i < text.length && !socket.destroyed; i++) {
    await new Promise((resolve) => socket.write(text[i] as string, 'latin1', resolve))
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/** Answers like memcached for a store of one key `k` holding `hello`. */
function wellBehaved (line: string, opaque: string): string {
  if (line === 'version') return 'VERSION 1.6.18\r\n'
  if (line.startsWith('mg k ')) return `VA 5 c42 ${opaque}\r\nhello\r\n`
  if (line.startsWith('mg ')) return `EN ${opaque}\r\n`
  if (line.startsWith('ms ')) return `HD c43 ${opaque}\r\n`
  return `NF ${opaque}\r\n`
}

async function fake (t: Test, answer: (line: string, opaque: string) => string | undefined, bytewise = false): Promise<FakeMemcached> {
  const server = await new FakeMemcached(answer, bytewise).start()
  t.teardown(() => server.close())
  return server
}

t.test('replies split at every byte, inside \\r\\n and inside values, are put together', async (t) => {
  const server = await fake(t, wellBehaved, true)
  const { c, lost } = open(t, server.port, { commandTimeoutMs: 3000 })
  t.same(await Promise.all([c.get('k'), c.get('other'), c.store('k', 'v', { mode: 'set', ttl: 1 }), c.delete('k'), c.version(), c.get('k', 5)]),
    [{ value: 'hello', cas: '42' }, undefined, { stored: true, cas: '43' }, false, '1.6.18', { value: 'hello', cas: '42' }])
  t.same(lost, [])
})

t.test('a reply that cannot be placed fails every pending command, calls onLost, and the next command reconnects', async (t) => {
  const cases: Record<string, (line: string, opaque: string) => string | undefined> = {
    'an unknown status line': (line, opaque) => line.startsWith('mg k ') ? 'XX garbage\r\n' : wellBehaved(line, opaque),
    'a wrong opaque': (line, opaque) => line.startsWith('mg k ') ? 'EN O999\r\n' : wellBehaved(line, opaque),
    'a status that does not answer the command': (line, opaque) => line.startsWith('mg k ') ? `HD ${opaque}\r\n` : wellBehaved(line, opaque),
    'a value not ended by \\r\\n': (line, opaque) => line.startsWith('mg k ') ? `VA 2 c1 ${opaque}\r\nhello\r\n` : wellBehaved(line, opaque),
    'a bad value length': (line, opaque) => line.startsWith('mg k ') ? `VA -1 c1 ${opaque}\r\n` : wellBehaved(line, opaque)
  }
  for (const [name, answer] of Object.entries(cases)) {
    await t.test(name, async (t) => {
      let broken = true
      const server = await fake(t, (line, opaque) => broken ? answer(line, opaque) : wellBehaved(line, opaque))
      const { c, lost } = open(t, server.port)
      await c.connect()
      const pending: Array<Promise<unknown>> = [c.get('k'), c.get('other'), c.version()]
      await Promise.all(pending.map(async (command) => await t.rejects(command, failure('unparseable reply'))))
      t.same(lost, ['unparseable reply'])
      broken = false
      t.same(await c.get('k'), { value: 'hello', cas: '42' }, 'the next command works')
      t.equal(server.connections, 2, 'on a new connection')
      t.same(lost, ['unparseable reply'], 'onLost once for the dropped connection')
    })
  }
})

t.test('a status that does not answer its command is a desync: HD to version, EN to ms, EN to md', async (t) => {
  const server = await fake(t, (line, opaque) => line === 'version' ? 'HD\r\n' : `EN ${opaque}\r\n`)
  const { c, lost } = open(t, server.port)
  await t.rejects(c.version(), failure('unparseable reply'))
  await t.rejects(c.store('k', 'v', { mode: 'set', ttl: 60 }), failure('unparseable reply'))
  await t.rejects(c.delete('k'), failure('unparseable reply'))
  t.same(lost, ['unparseable reply', 'unparseable reply', 'unparseable reply'], 'each on its own connection')
})

t.test('a reply nobody asked for drops the connection', async (t) => {
  const server = await fake(t, (line, opaque) => wellBehaved(line, opaque).repeat(line.startsWith('mg') ? 2 : 1))
  const { c, lost } = open(t, server.port)
  t.equal(await c.get('other'), undefined, 'the first reply answers the command')
  await until(() => lost.length > 0, 2000, 'onLost')
  t.same(lost, ['unparseable reply'], 'the second one is a desync')
  t.equal(await c.version(), '1.6.18', 'the next command reconnects')
  t.equal(server.connections, 2)
})

t.test('a CLIENT_ERROR or ERROR (the server may be reading our data as commands) fails every pending command and drops the connection', async (t) => {
  for (const reply of ['CLIENT_ERROR bad command line format', 'ERROR']) {
    const server = await fake(t, (line, opaque) => line.startsWith('mg k ') ? `${reply}\r\n` : wellBehaved(line, opaque))
    const { c, lost } = open(t, server.port)
    const pending: Array<Promise<unknown>> = [c.get('k'), c.version()]
    await Promise.all(pending.map(async (command) => await t.rejects(command, failure(reply))))
    t.same(lost, [reply])
  }
})

t.test('a server that accepts and never answers: the command fails after commandTimeoutMs and onLost is called', async (t) => {
  const hung = await new SilentServer().start()
  t.teardown(() => hung.close())
  const { c, lost } = open(t, hung.port, { commandTimeoutMs: 100 })
  await c.connect()
  await Promise.all([
    t.rejects(c.get('k'), failure('timed out after 100 ms')),
    t.rejects(c.delete('k'), failure('timed out after 100 ms'), 'the stream is dropped: every pending command fails')
  ])
  t.same(lost, ['timed out after 100 ms'])
})

t.test('a connect that does not complete fails the commands waiting for it after connectTimeoutMs, without onLost', async (t) => {
  // A listener whose accept queue is full: the kernel drops our SYN, so the connect hangs.
  // It is a stopped process listening with a backlog of 1 (the queue holds 2), filled first.
  const child = spawn(process.execPath, ['-e', "require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () { console.log(this.address().port) })"], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const port = Number(await new Promise<string>((resolve) => child.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString()))))
  process.kill(child.pid as number, 'SIGSTOP')
  for (let i = 0; i < 2; i++) {
    const filler = connect(port, '127.0.0.1')
    filler.on('error', () => {})
    t.teardown(() => { filler.destroy() })
    await new Promise((resolve) => filler.once('connect', resolve))
  }
  const { c, lost } = open(t, port, { connectTimeoutMs: 100, commandTimeoutMs: 5000 })
  const reason = `connect to 127.0.0.1:${port} timed out after 100 ms`
  await Promise.all([t.rejects(c.connect(), failure(reason)), t.rejects(c.get('k'), failure(reason))])
  t.same(lost, [])
})

t.test('SERVER_ERROR fails that command only; the next is answered on the same connection', async (t) => {
  let failed = false
  const server = await fake(t, (line, opaque) => {
    if (failed) return wellBehaved(line, opaque)
    failed = true
    return 'SERVER_ERROR out of memory\r\n'
  })
  const { c, lost } = open(t, server.port)
  await t.rejects(c.store('k', 'v', { mode: 'set', ttl: 60 }), failure('SERVER_ERROR out of memory'))
  t.same(await c.get('k'), { value: 'hello', cas: '42' })
  t.equal(server.connections, 1)
  t.same(lost, [])
})

t.test('an invalid key sends nothing: no connection is even opened', async (t) => {
  const server = await fake(t, wellBehaved)
  const { c } = open(t, server.port)
  await t.rejects(c.get('bad key'), TypeError)
  t.equal(server.connections, 0)
})
