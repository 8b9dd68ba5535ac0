import t from 'tap'
import { EmbeddedMemcached } from '../../demo/embedded-memcached.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { RawConnection } from '../helpers/raw-socket.js'

// The demo's embedded server against a real memcached (1.6.18 here): both fresh, so their CAS
// counters both start at 1, and one connection to each takes the same script of raw protocol
// bytes. Every step's reply must be the same to the byte, nothing normalised. Where the reply
// is part of the meta protocol the sidecar's client relies on, the step also names it, which
// checks the script against memcached itself (and that the two agree on something real).
// Each step is followed by `mg end-of-step-<n> k`, a miss whose `EN kend-of-step-<n>` marks the
// end of the step's replies (and is left out of them: a quiet command's silence shows as '').

interface Step {
  readonly name: string
  /** Written one chunk per TCP write, with a pause between (a command or value split across writes). */
  readonly send: ReadonlyArray<string | Buffer>
  /** memcached's reply, where the script states it. */
  readonly expect?: string
}

const long = 'k'.repeat(251)
const opaque32 = 'O' + '1'.repeat(31)
const opaque33 = 'O' + '1'.repeat(32)
/** memcached -I 1m on 64-bit: the largest value of key `big` with flags 0 (1 MiB less item header, key, CAS). */
const BIG_MAX = 1048514
const big = (n: number): string => `${'x'.repeat(n)}\r\n`

const steps: Step[] = [
  // The meta commands as the sidecar's client uses them.
  { name: 'ms sets with a TTL and returns the CAS', send: ['ms k1 2 c T60 O8\r\nhi\r\n'], expect: 'HD c1 O8\r\n' },
  { name: 'mg hit', send: ['mg k1 v c O7\r\n'], expect: 'VA 2 c1 O7\r\nhi\r\n' },
  { name: 'mg miss', send: ['mg nokey v c O7\r\n'], expect: 'EN O7\r\n' },
  { name: 'mg T touches (CAS kept), t reads the TTL left', send: ['mg k1 v c T100 O9\r\nmg k1 c t\r\n'], expect: 'VA 2 c1 O9\r\nhi\r\nHD c1 t100\r\n' },
  { name: 'flags returned in the order asked', send: ['mg k1 k v c O123\r\nmg k1 O1 s f c k\r\n'], expect: 'VA 2 kk1 c1 O123\r\nhi\r\nHD O1 s2 f0 c1 kk1\r\n' },
  { name: 'ms ME (add) on an existing key', send: ['ms k1 2 ME c O9\r\nhi\r\n'], expect: 'NS c0 O9\r\n' },
  { name: 'ms C with the current CAS', send: ['ms k1 2 C1 c O10\r\nhi\r\n'], expect: 'HD c2 O10\r\n' },
  { name: 'ms C with a stale CAS', send: ['ms k1 2 C1 c O10\r\nhi\r\n'], expect: 'EX c0 O10\r\n' },
  { name: 'ms C on a missing key', send: ['ms nokey 3 C5 c O13\r\nbad\r\n'], expect: 'NF c0 O13\r\n' },
  {
    name: 'one CAS counter for classic and meta commands; touch, gat and gats keep the CAS',
    send: ['gets k1\r\ncas k1 0 0 2 2\r\nho\r\nmg k1 v c\r\ntouch k1 100\r\ngat 50 k1\r\ngats 60 k1\r\nmg k1 c t\r\n'],
    expect: 'VALUE k1 0 2 2\r\nhi\r\nEND\r\nSTORED\r\nVA 2 c3\r\nho\r\nTOUCHED\r\nVALUE k1 0 2\r\nho\r\nEND\r\nVALUE k1 0 2 3\r\nho\r\nEND\r\nHD c3 t60\r\n'
  },
  { name: 'md: CAS mismatch, delete, missing', send: ['md k1 C2 O20\r\nmd k1 O11\r\nmd k1 O12\r\n'], expect: 'EX O20\r\nHD O11\r\nNF O12\r\n' },
  { name: 'mn', send: ['mn\r\n'], expect: 'MN\r\n' },
  { name: 'mg q on a miss: no reply', send: ['mg k1 v c q O14\r\n'], expect: '' },
  {
    name: 'q hides only the nominal reply: a hit, NF, NS and EX are sent',
    send: ['ms k1 2 q\r\nhi\r\nmg k1 v q O15\r\nmg k1 q\r\nms k1 2 C9 q\r\nhi\r\nmd k1 C9 q\r\nmd k1 q\r\nmd k1 q O16\r\nms k1 2 MR q\r\nhi\r\nms k1 2 C9 q\r\nhi\r\n'],
    expect: 'VA 2 O15\r\nhi\r\nHD\r\nEX\r\nEX\r\nNF O16\r\nNS\r\nNF\r\n'
  },
  // ms modes.
  { name: 'replace, append and prepend need an item', send: ['ms k2 1 MR\r\nx\r\nms k2 1 MA c\r\nx\r\nms k2 1 MP k\r\nx\r\n'], expect: 'NS\r\nNS c0\r\nNS kk2\r\n' },
  {
    name: 'add, append and prepend (which keep the flags and TTL), replace, set',
    send: ['ms k2 1 ME F5 T0 c\r\nx\r\nms k2 1 MA F9 c\r\ny\r\nms k2 1 MP T1 c\r\nw\r\nmg k2 v f s t c\r\nms k2 2 MR c F3\r\nzz\r\nmg k2 v f\r\nms k2 1 MS c\r\nq\r\nmg k2 v f\r\n'],
    expect: 'HD c5\r\nHD c6\r\nHD c7\r\nVA 3 f5 s3 t-1 c7\r\nwxy\r\nHD c8\r\nVA 2 f3\r\nzz\r\nHD c9\r\nVA 1 f0\r\nq\r\n'
  },
  {
    name: 'C with append and replace; add ignores C',
    send: ['ms k2 1 MA C1\r\nz\r\nms k2 1 MA C9 c\r\nz\r\nms k2 1 MR C1 c\r\nr\r\nms k2 1 MR C10 c\r\nr\r\nms k2 1 ME C11 c\r\nq\r\nmd k2 q\r\nms k2 1 ME C11 c\r\nq\r\n'],
    expect: 'EX\r\nHD c10\r\nEX c0\r\nHD c11\r\nNS c0\r\nHD c12\r\n'
  },
  { name: 'T absent or T0: no expiry; T-1: expired at once', send: ['ms k3 1\r\na\r\nmg k3 t\r\nms k3 1 T0\r\na\r\nmg k3 t\r\nmg k3 T-1 c\r\nmg k3 t\r\nms k3 1 T-1 c\r\na\r\nmg k3\r\n'], expect: 'HD\r\nHD t-1\r\nHD\r\nHD t-1\r\nHD c14\r\nEN\r\nHD c15\r\nEN\r\n' },
  { name: 'classic set, meta reads; meta set, classic reads', send: ['set k4 7 0 1\r\na\r\nmg k4 f v c s\r\nms k4 2 F8\r\nbb\r\nget k4\r\n'], expect: 'STORED\r\nVA 1 f7 c16 s1\r\na\r\nHD\r\nVALUE k4 8 2\r\nbb\r\nEND\r\n' },
  // Numbers as memcached's C parsing reads them.
  {
    name: 'numbers: 32-bit truncation, signs, leading zeros',
    send: ['ms fl 1 F4294967297 T4294967396\r\nz\r\nmg fl f t\r\nms fl 1 T+5 F-0\r\nz\r\nmg fl f t\r\nms fl 4294967297 c\r\nz\r\nms fl 02 c\r\nzz\r\nmg fl v\r\n'],
    expect: 'HD\r\nHD f1 t100\r\nHD\r\nHD f0 t5\r\nHD c20\r\nHD c21\r\nVA 2\r\nzz\r\n'
  },
  { name: 'numbers refused', send: ['ms fl 1 F-1\r\nz\r\nms fl 1 C-1\r\nz\r\nms fl 1 T99999999999999999999\r\nz\r\nms fl 1 C18446744073709551616\r\nz\r\nms fl 1 Tx\r\nz\r\nms fl 1 T\r\nz\r\nmg fl T5x\r\n'] },
  // F-(2^64 - 1) is 1; C-(2^64 - 22) is CAS 22, the ms's.
  { name: 'a negative unsigned that does not pass 2^63 wraps', send: ['ms fl 1 F-18446744073709551615\r\nz\r\nmg fl f\r\nmd fl C-18446744073709551594\r\n'], expect: 'HD\r\nHD f1\r\nHD\r\n' },
  // Errors.
  { name: 'a key over 250 bytes: ms leaves its data line to be read as a command', send: [`ms ${long} 2\r\nhi\r\nmg ${long} v\r\nmd ${long} q\r\n`], expect: 'CLIENT_ERROR bad command line format\r\nERROR\r\nCLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n' },
  { name: 'a 250-byte key', send: [`ms ${'k'.repeat(250)} 1 k\r\nz\r\nmg ${'k'.repeat(250)} k v\r\nmd ${'k'.repeat(250)}\r\n`] },
  { name: 'short and unknown commands', send: ['mg\r\nms\r\nmd\r\nms k1\r\nmx k\r\nm\r\nmn extra\r\n'], expect: 'ERROR\r\nERROR\r\nERROR\r\nCLIENT_ERROR bad command line format\r\nERROR\r\nERROR\r\nMN\r\n' },
  { name: 'duplicate and unknown flags', send: ['ms k5 1\r\nz\r\nmg k5 v v\r\nmg k5 v Z\r\nmg k5 \x80\r\nmd k5 Z\r\nmd k5 q q\r\nms k5 1 c c\r\nz\r\nms k5 1 Z\r\nz\r\n'] },
  { name: 'known flags that do nothing here, and empty numbers', send: ['mg k5 v c s t f k O q T u P L C F M J D\r\nmg k5 u P L J1 D2 C3 F4 M5\r\nmd k5 v T1 F1 M1 u\r\nmg k5\r\n'] },
  { name: 'opaques up to 32 bytes', send: [`ms k5 1\r\nz\r\nmg k5 ${opaque32}\r\nmg k5 ${opaque33}\r\nmg k5 T100 ${opaque33}\r\nmg k5 t\r\nmg nokey ${opaque33}\r\nms k5 1 ${opaque33}\r\nz\r\nmd k5 ${opaque33}\r\nmg k5 v\r\n`] },
  { name: 'ms flag errors swallow the data block', send: ['ms k5 1 Fx\r\nz\r\nms k5 1 Fx Tx\r\nz\r\nms k5 1 Tx Fx\r\nz\r\nms k5 1 MEE\r\nz\r\nms k5 1 Me\r\nz\r\nms k5 1 MZ Tx\r\nz\r\nms k5 1 MZ O\r\nz\r\nms k5 1 MZ ' + opaque33 + '\r\nz\r\n'] },
  { name: 'a bad datalen leaves the data line to be read as a command', send: ['ms k5 x\r\nz\r\nms k5 -1\r\nz\r\nms k5 2147483646\r\nz\r\n'] },
  { name: 'too many tokens', send: [`mg k5 ${'v '.repeat(18)}\r\nmg k5 ${'v '.repeat(17)}\r\nmd k5 ${'q '.repeat(18)}\r\nms k5 1 ${'c '.repeat(17)}\r\nz\r\nms k5 1 ${'c '.repeat(16)}\r\nz\r\n`] },
  { name: 'a data block longer than announced (q or not)', send: ['ms k5 1 c\r\nxy\r\nms k5 1 q\r\nxyz\r\nmg k5 v\r\n'], expect: 'CLIENT_ERROR bad data chunk\r\nERROR\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\nVA 1\r\nz\r\n' },
  { name: 'lines ended by LF alone', send: ['mg k5 v\nms k6 1 c\nz\r\nmd k6\n\n\r\n'] },
  // Items at and over memcached's 1 MiB.
  { name: 'the largest value that fits', send: [`ms big ${BIG_MAX} c\r\n`, big(BIG_MAX), 'mg big s\r\n'] },
  { name: 'one byte more: refused, its data swallowed, the old item dropped', send: [`ms big ${BIG_MAX + 1}\r\n`, big(BIG_MAX + 1), 'mg big s\r\n'] },
  { name: 'with flags the limit is 4 bytes lower', send: [`ms big ${BIG_MAX - 3} F1\r\n`, big(BIG_MAX - 3), `ms big ${BIG_MAX - 4} F1\r\n`, big(BIG_MAX - 4), 'mg big s f\r\n'] },
  { name: 'an append that would not fit: NS', send: ['ms big 1 MA\r\nz\r\nmg big s\r\n'] },
  { name: 'classic add too large keeps the item, set too large drops it', send: [`add big 0 0 ${BIG_MAX + 1}\r\n`, big(BIG_MAX + 1), 'mg big s\r\n', `set big 0 0 ${BIG_MAX + 1}\r\n`, big(BIG_MAX + 1), 'mg big s\r\n'] },
  // Pipelining and split writes.
  {
    name: 'a pipelined batch in one write',
    send: ['ms p1 3 T0 c\r\none\r\nms p2 3 q\r\ntwo\r\nget p1 p2 p3\r\nmg p1 v k\r\nmg p3 v k q\r\nmg p2 s v\r\nmd p1 q\r\nmd p1\r\nms p2 1 MA c\r\n!\r\ngets p2\r\nmn\r\nmg p2 v c\r\n']
  },
  { name: 'a value split across writes', send: ['ms s1 11 c', ' T0\r\nhel', 'lo', ' worl', 'd\r', '\nmg s1 v c\r\n'] },
  { name: 'a command sent a byte at a time', send: [...'mg s1 v c k s\r\n'] },
  { name: 'a bad data block split across writes', send: ['ms s1 2\r\nab', 'c', '\r\nmg s1 v\r\n'] }
]

t.test('the embedded memcached answers the meta and classic commands byte for byte as memcached', async (t) => {
  const real = await MemcachedProcess.start()
  t.teardown(async () => await real.stop())
  const embedded = new EmbeddedMemcached()
  await embedded.listen(0)
  t.teardown(async () => await embedded.close())
  const version = (await real.command('version\r\n')).trim()
  t.comment(`against ${version}`)

  const realConnection = await open(real.port)
  const embeddedConnection = await open(embedded.port)
  t.teardown(() => { realConnection.destroy(); embeddedConnection.destroy() })

  for (const [n, step] of steps.entries()) {
    const [theirs, ours] = await Promise.all([exchange(realConnection, step.send, n), exchange(embeddedConnection, step.send, n)])
    if (step.expect !== undefined) t.equal(theirs, step.expect, `${step.name}: memcached's reply`)
    t.equal(ours, theirs, step.name)
  }
})

async function open (port: number): Promise<RawConnection> {
  const connection = await RawConnection.open(`tcp://127.0.0.1:${port}`)
  connection.socket.setNoDelay(true)
  return connection
}

/** Writes step `n`'s chunks (a pause between, so each is its own TCP segment) and its end marker; its replies. */
async function exchange (connection: RawConnection, chunks: ReadonlyArray<string | Buffer>, n: number): Promise<string> {
  const start = connection.received.length
  for (const [i, chunk] of chunks.entries()) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 15))
    await connection.write(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk)
  }
  await connection.write(`mg end-of-step-${n} k\r\n`)
  const end = `EN kend-of-step-${n}\r\n`
  await connection.until((received) => received.endsWith(end), 10_000, `the end of step ${n}`)
  return connection.received.slice(start, -end.length)
}
