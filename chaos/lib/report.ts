import { FINDING_LABELS, faultText, ms, type Finding, type FindingKind, type Verdict } from './checks.js'
import type { ChaosResult } from './experiment.js'
import type { Exchange } from './history.js'
import { FAULT_LABELS, type FaultKind } from './schedule.js'
import { answered } from './users.js'

/** Left-aligned first column, right-aligned numbers. */
export function table (rows: ReadonlyArray<readonly string[]>): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => { widths[i] = Math.max(widths[i] ?? 0, cell.length) })
  return rows.map((row) => row.map((cell, i) => i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')
}

const count = (list: readonly Exchange[], keep: (e: Exchange) => boolean): number => list.reduce((n, e) => n + (keep(e) ? 1 : 0), 0)

/** Findings by kind and verdict. */
export function tally (findings: readonly Finding[]): Record<FindingKind, Record<Verdict, number>> {
  const out = Object.fromEntries(Object.keys(FINDING_LABELS).map((k) => [k, { within: 0, beyond: 0, 'async-window': 0 }])) as Record<FindingKind, Record<Verdict, number>>
  for (const f of findings) out[f.kind][f.verdict]++
  return out
}

export function summary (r: ChaosResult): string {
  const o = r.options
  const lines: string[] = []
  const mode = o.overlap
    ? 'overlapping faults allowed (beyond the guarantee)'
    : `inside the guarantee (one fault at a time, >= ${o.revalidateMs} ms after the previous one healed)`
  lines.push(`session-sidecar chaos: seed ${o.seed}, write: ${o.write}, ${(o.durationMs / 1000).toFixed(0)} s of faults ${mode}, cache.revalidateMs ${o.revalidateMs}, ${o.users} users`)
  lines.push(`topology: memcached ${r.topology.memcached.join(' -> ')}, sidecars ${r.topology.sidecars.join(' -> ')} (the added sidecars alone list the added nodes), HAProxy round-robin, 127.0.0.1`)
  lines.push(`took ${(r.elapsedMs / 1000).toFixed(1)} s (fault phase ${(r.faultPhaseMs / 1000).toFixed(1)} s)${r.skipped > 0 ? `; ${r.skipped} planned faults not run (time cap)` : ''}`)
  lines.push('')

  const kinds = Object.keys(FAULT_LABELS) as FaultKind[]
  lines.push(table([
    ['fault', 'planned', 'run', 'failed'],
    ...kinds.map((k) => [FAULT_LABELS[k], String(r.schedule.faults.filter((f) => f.kind === k).length), String(r.faults.filter((f) => f.kind === k).length), String(r.faults.filter((f) => f.kind === k && f.error !== undefined).length)])
  ]))
  lines.push('')

  const ex = r.exchanges
  const of = (kind: Exchange['kind']): Exchange[] => ex.filter((e) => e.kind === kind)
  const appends = of('append')
  const replays = of('replay')
  const acked = count(appends, (e) => answered(e) && e.view?.key !== undefined)
  const refused = count(appends, (e) => answered(e) && e.view?.key === undefined && e.view?.unavailable === true)
  lines.push(table([
    ['traffic', 'count', ''],
    ['requests', String(ex.length), `${count(ex, answered)} answered by the app`],
    ['logins acknowledged (sessions)', String(r.sessions.length), `${r.sessions.filter((s) => s.endedBy === 'logout').length} ended by logout, ${r.sessions.filter((s) => s.endedBy === 'login').length} by a new login, ${r.sessions.filter((s) => s.abandonedAt !== undefined).length} given up`],
    ['appends', String(appends.length), `${acked} acknowledged, ${refused} refused (X-Session-Unavailable), ${appends.length - count(appends, answered)} unanswered or 5xx`],
    ['replays of ended sessions', String(replays.length), `${r.notes.servedInWindow} served inside revalidateMs of the end (allowed)`]
  ]))
  lines.push('')

  const t = tally(r.findings)
  const rows = (Object.keys(FINDING_LABELS) as FindingKind[]).map((k) => [FINDING_LABELS[k], String(t[k].within), String(t[k].beyond), String(t[k]['async-window'])])
  const total = (v: Verdict): string => String(r.findings.filter((f) => f.verdict === v).length)
  lines.push(table([['check (anomalies)', 'within guarantee', 'beyond guarantee', 'async window'], ...rows, ['total', total('within'), total('beyond'), total('async-window')]]))
  lines.push('')
  lines.push(`sessions that went beyond the guarantee at some point (two copies lost within revalidateMs): ${r.notes.sessionsBeyond} of ${r.sessions.length}`)
  lines.push(`documented degradation, no session but X-Session-Unavailable and the cookie kept: ${r.notes.unavailable.within} within the guarantee, ${r.notes.unavailable.beyond} beyond`)
  if (r.notes.asyncDelays.length > 0) {
    const d = [...r.notes.asyncDelays].sort((a, b) => a - b)
    lines.push(`async window: ${d.length} anomalies excused, kill -9 from ${d[0]?.toFixed(1)} to ${d[d.length - 1]?.toFixed(1)} ms after the answer (window ${o.asyncWindowMs} ms)`)
  }
  if (r.notes.ackedWithoutNewVersion > 0) lines.push(`appends answered with the session but no new cookie version: ${r.notes.ackedWithoutNewVersion}`)
  if (r.notes.unverified > 0) lines.push(`acknowledged updates after the session's last read (not checked): ${r.notes.unverified}`)
  lines.push(`product counters (every sidecar process, last reading before it died): ${Object.entries(r.counters).map(([k, v]) => `${k} ${v}`).join(', ')}`)
  for (const p of r.problems) lines.push(`problem: ${p}`)
  return lines.join('\n')
}

/** The first `limit` anomalies, each with the faults around it. */
export function details (r: ChaosResult, limit = 20): string {
  if (r.findings.length === 0) return 'no anomalies'
  const out: string[] = []
  const ordered = [...r.findings].sort((a, b) => verdictRank(a.verdict) - verdictRank(b.verdict) || a.to - b.to)
  for (const f of ordered.slice(0, limit)) {
    out.push(`[${f.verdict}] ${FINDING_LABELS[f.kind]}: user u${f.user}, session ${f.session} (key ${f.key})${f.item === undefined ? '' : `, item ${f.item}`}, first seen by request ${f.rid} at ${ms(f.to)}, ${f.observations} observation(s)`)
    out.push(`    ${f.detail}`)
    out.push(`    why: ${f.reason}`)
  }
  if (ordered.length > limit) out.push(`(+${ordered.length - limit} more)`)
  return out.join('\n')
}

/** The faults as they ran. */
export function timeline (r: ChaosResult): string {
  return r.faults.map((f) => `${faultText(f)}${f.error === undefined ? '' : ` FAILED: ${f.error}`}`).join('\n')
}

function verdictRank (v: Verdict): number {
  return v === 'within' ? 0 : v === 'beyond' ? 1 : 2
}
