import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { GiB, MiB, RssSampler, download, settledRss, sinkServer, upload, type TransferResult } from '../helpers/large-body.js'
import { MemcachedProcess } from '../helpers/memcached.js'
import { scratch, SidecarProcess } from '../helpers/processes.js'

// Issue 8: memory does not grow with body size. Bodies stream through the built sidecar in
// both directions; its resident set size (/proc/<pid>/status) is sampled while they do. The
// bodies are generated and hashed on the fly on both ends, never held whole. Nothing here is
// timed: durations are reported, not asserted.

/** "less than 50 MB" of RSS growth, in bytes. */
const GROWTH_LIMIT = 50 * 1000 * 1000
const mb = (bytes: number): string => (bytes / 1e6).toFixed(1)
const rate = (r: TransferResult): string => `${((r.local.bytes / 1e6) / (r.ms / 1000)).toFixed(0)} MB/s`

const memcached = await MemcachedProcess.start()
t.teardown(() => memcached.stop())
const app = sinkServer()
await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
t.teardown(() => new Promise<void>((resolve) => {
  app.closeAllConnections()
  app.close(() => resolve())
}))
const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`
const { dir, cleanup } = scratch()
t.teardown(cleanup)
const sidecar = await new SidecarProcess(dir, 'large-bodies', { upstream: appUrl, nodes: [memcached.address] }).start()
t.teardown(() => sidecar.kill('SIGKILL'))
const pid = sidecar.pid as number

const fresh = await settledRss(pid)

// Warm-up: the same paths once each way with 64 MiB, so the baseline is a sidecar that has
// allocated what a transfer needs: V8's young generation grows on the first large transfer,
// and dead 64 KiB read buffers pile up until V8's external-memory GC. That one-time step does
// not depend on the body's size: from a fresh sidecar (one tiny request), the first upload
// raised the RSS by 37-52 MB on a loaded 2-CPU machine whether it was 64 MiB or 1 GiB (54-67 MB
// before the hop to the app was undici's Pool without reply-from's Agent; bare fastify +
// @fastify/http-proxy: 30-37 MB, a node:http pipe proxy: 23-26 MB). It is printed
// below as "fresh" and "after the warm-up"; the limit applies to what the large bodies add.
const warm = await upload(sidecar.url, 64 * MiB)
const warmDown = await download(sidecar.url, 64 * MiB)
if (warm.seen.sha256 !== warm.local.sha256 || warmDown.seen.sha256 !== warmDown.local.sha256) throw new Error('warm-up bodies arrived changed')
t.comment(`sidecar RSS: ${mb(fresh)} MB fresh, ${mb(await settledRss(pid))} MB after the warm-up`)

/** Runs `transfer` while sampling the sidecar's RSS; asserts the growth and reports the numbers. */
async function measured (t: Test, what: string, transfer: () => Promise<TransferResult>): Promise<TransferResult> {
  const rss = await RssSampler.start(pid)
  let result: TransferResult
  try {
    result = await transfer()
  } finally {
    const seen = rss.stop()
    const growth = seen.peak - seen.baseline
    t.comment(`${what}: sidecar RSS baseline ${mb(seen.baseline)} MB, peak ${mb(seen.peak)} MB (sampled ${mb(seen.sampledPeak)} MB over ${seen.samples} samples${seen.kernelPeak ? ', VmHWM reset at the start' : ''}), growth ${mb(growth)} MB`)
    t.ok(growth < GROWTH_LIMIT, `${what}: the sidecar's RSS grew by less than 50 MB (${mb(growth)} MB)`)
  }
  t.comment(`${what}: ${result.local.bytes.toLocaleString('en-US')} bytes in ${(result.ms / 1000).toFixed(2)} s, ${rate(result)}`)
  return result
}

t.test('a 1 GiB chunked upload streams through: the app sees every byte, RSS stays flat', async (t) => {
  const r = await measured(t, '1 GiB upload, chunked', async () => await upload(sidecar.url, GiB))
  t.equal(r.seen.bytes, GiB, 'the app received exactly 1 GiB')
  t.equal(r.seen.sha256, r.local.sha256, 'with the sha256 the client sent')
})

t.test('a 256 MiB upload with Content-Length streams through unchanged', async (t) => {
  const r = await measured(t, '256 MiB upload, Content-Length', async () => await upload(sidecar.url, 256 * MiB, { contentLength: true }))
  t.equal(r.seen.bytes, 256 * MiB, 'the app received exactly 256 MiB')
  t.equal(r.seen.sha256, r.local.sha256, 'with the sha256 the client sent')
})

t.test('a 1 GiB response streams through: the client gets every byte, RSS stays flat', async (t) => {
  const r = await measured(t, '1 GiB download', async () => await download(sidecar.url, GiB))
  t.equal(r.local.bytes, GiB, 'the client received exactly 1 GiB')
  t.equal(r.local.sha256, r.seen.sha256, 'with the sha256 the app generated')
})
