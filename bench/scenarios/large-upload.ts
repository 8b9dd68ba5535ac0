import { GiB, MiB, RssSampler, settledRss, upload } from '../../test/helpers/large-body.js'
import type { TransferScenario } from '../lib/scenario.js'
import { startScript } from '../lib/servers.js'
import { SidecarChild } from '../lib/sidecar.js'

const ID = 'large-upload'
const REF = '(h)'
const TITLE = '1 GiB upload (chunked), app directly vs through the sidecar'
const BYTES = GiB
const mbps = (bytes: number, ms: number): number => Math.round((bytes / 1e6) / (ms / 1000))
const mb = (bytes: number): number => Math.round(bytes / 1e5) / 10

/**
 * (h) A 1 GiB upload (chunked, generated and hashed on the fly by the runner) to a sink app
 * that reads and hashes it: straight to the app, then through the sidecar while its RSS is
 * sampled (/proc/<pid>/status every 50 ms, and its VmHWM reset at the start), from a baseline
 * taken after a 64 MiB warm-up upload. Opt-in: runs only when named (--only large-upload);
 * it moves 2 GiB and is not an autocannon workload.
 */
export default {
  id: ID,
  ref: REF,
  title: TITLE,
  measure: async (ctx, progress) => {
    const app = await startScript(ctx.children, 'sink', [])
    let sidecar: SidecarChild | undefined
    try {
      sidecar = await new SidecarChild(ctx.dir, { name: ID, upstream: app.url, nodes: ctx.nodes, nodeFlags: ctx.nodeFlags }).start(ctx.children)
      const pid = sidecar.pid as number
      const fresh = await settledRss(pid)
      // Warm-up: the same path with 64 MiB, so the baseline is a sidecar that has compiled
      // and allocated what a transfer needs (V8's young generation grows on the first one).
      await upload(sidecar.url, 64 * MiB)
      progress(' directly...')
      const direct = await upload(app.url, BYTES)
      progress(` ${mbps(BYTES, direct.ms)} MB/s; through the sidecar...`)
      const rss = await RssSampler.start(pid)
      const through = await upload(sidecar.url, BYTES).catch((err: unknown) => { rss.stop(); throw err })
      const memory = rss.stop()
      for (const [where, r] of [['directly', direct], ['through the sidecar', through]] as const) {
        if (r.seen.bytes !== BYTES || r.seen.sha256 !== r.local.sha256) throw new Error(`${where}: the app saw ${r.seen.bytes} bytes, sha256 ${r.seen.sha256}; sent ${BYTES}, ${r.local.sha256}`)
      }
      return {
        id: ID,
        ref: REF,
        title: TITLE,
        bytes: BYTES,
        directSeconds: Math.round(direct.ms) / 1000,
        directMBps: mbps(BYTES, direct.ms),
        sidecarSeconds: Math.round(through.ms) / 1000,
        sidecarMBps: mbps(BYTES, through.ms),
        ratioToDirect: Math.round((direct.ms / through.ms) * 100) / 100,
        rssFreshMB: mb(fresh),
        rssBaselineMB: mb(memory.baseline),
        rssPeakMB: mb(memory.peak),
        rssGrowthMB: mb(memory.peak - memory.baseline),
        rssSamples: memory.samples,
        sha256: through.local.sha256
      }
    } finally {
      await sidecar?.stop()
      await app.stop()
    }
  }
} satisfies TransferScenario
