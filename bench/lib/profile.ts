import { existsSync, readFileSync } from 'node:fs'
import { SourceMap } from 'node:module'
import { fileURLToPath } from 'node:url'
import { dirname, relative, resolve } from 'node:path'
import { ROOT } from './root.js'

interface CallFrame { functionName: string, url: string, lineNumber: number, columnNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

export interface HotFunction {
  readonly name: string
  /** file:line, mapped back to src/*.ts for the built CLI. */
  readonly where: string
  readonly selfMs: number
  /** Share of busy (non-idle) samples, %. */
  readonly percent: number
}

export interface ProfileSummary {
  readonly busyMs: number
  readonly top: HotFunction[]
  /** Self time by origin: src/ file, node_modules package, node internals, GC. */
  readonly byOrigin: Array<{ origin: string, percent: number }>
  /** The project's own functions (src/) by inclusive time: what the session code costs. */
  readonly ownInclusive: HotFunction[]
}

const maps = new Map<string, SourceMap | undefined>()

function mapped (url: string, line: number, column: number): string {
  if (!url.startsWith('file://')) return url === '' ? '' : `${url}:${line + 1}`
  const file = fileURLToPath(url)
  let map = maps.get(file)
  if (!maps.has(file)) {
    map = existsSync(`${file}.map`) ? new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8'))) : undefined
    maps.set(file, map)
  }
  const entry = map?.findEntry(line, column) as { originalSource?: string, originalLine?: number } | undefined
  if (entry?.originalSource !== undefined && entry.originalLine !== undefined) {
    const source = entry.originalSource.startsWith('file://') ? fileURLToPath(entry.originalSource) : entry.originalSource
    return `${relative(ROOT, resolve(dirname(file), source))}:${entry.originalLine + 1}`
  }
  return `${relative(ROOT, file)}:${line + 1}`
}

function origin (where: string, name: string): string {
  if (name === '(garbage collector)') return 'GC'
  if (name === '(program)') return '(program)'
  if (where === '') return 'native bindings (socket writes, string encoding)'
  if (where.startsWith('node:')) return 'node internals'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(where)
  if (pkg !== null) return pkg[1] as string
  if (where.startsWith('src/')) return where.slice(0, where.lastIndexOf(':'))
  return where.slice(0, where.lastIndexOf(':'))
}

/** Top self-time functions of a .cpuprofile (from node --cpu-prof). */
export function summarize (file: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = new Map<string, { name: string, where: string, us: number }>()
  let busy = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i] as number)
    const us = profile.timeDeltas[i + 1] ?? 0
    if (node === undefined || node.callFrame.functionName === '(idle)') continue
    busy += us
    const { functionName, url, lineNumber, columnNumber } = node.callFrame
    const key = `${functionName}@${url}:${lineNumber}:${columnNumber}`
    const entry = self.get(key) ?? { name: functionName === '' ? '(anonymous)' : functionName, where: mapped(url, lineNumber, columnNumber), us: 0 }
    entry.us += us
    self.set(key, entry)
  }
  // Inclusive time of src/ functions: every sample whose stack passes through them.
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const inclusive = new Map<string, { name: string, where: string, us: number }>()
  for (let i = 0; i < profile.samples.length; i++) {
    const us = profile.timeDeltas[i + 1] ?? 0
    const seen = new Set<string>()
    for (let id: number | undefined = profile.samples[i]; id !== undefined; id = parent.get(id)) {
      const node = byId.get(id)
      if (node === undefined || node.callFrame.functionName === '(idle)') break
      const { functionName, url, lineNumber, columnNumber } = node.callFrame
      if (!url.includes('/dist/') || url.includes('node_modules')) continue
      const key = `${functionName}@${url}:${lineNumber}:${columnNumber}`
      if (seen.has(key)) continue
      seen.add(key)
      const entry = inclusive.get(key) ?? { name: functionName === '' ? '(anonymous)' : functionName, where: mapped(url, lineNumber, columnNumber), us: 0 }
      entry.us += us
      inclusive.set(key, entry)
    }
  }
  const percent = (us: number): number => busy === 0 ? 0 : Math.round((us / busy) * 1000) / 10
  const entries = [...self.values()].sort((a, b) => b.us - a.us)
  const origins = new Map<string, number>()
  for (const e of entries) origins.set(origin(e.where, e.name), (origins.get(origin(e.where, e.name)) ?? 0) + e.us)
  return {
    busyMs: Math.round(busy / 1000),
    top: entries.slice(0, top).map((e) => ({ name: e.name, where: e.where, selfMs: Math.round(e.us / 1000), percent: percent(e.us) })),
    byOrigin: [...origins.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([o, us]) => ({ origin: o, percent: percent(us) })),
    ownInclusive: [...inclusive.values()].filter((e) => e.where.startsWith('src/')).sort((a, b) => b.us - a.us).slice(0, 12)
      .map((e) => ({ name: e.name, where: e.where, selfMs: Math.round(e.us / 1000), percent: percent(e.us) }))
  }
}
