import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { ROOT } from '../../harness/index.js'

// The PromQL that deploy/grafana/session-sidecar.json and deploy/prometheus/alerts.yml run,
// and the metric names and labels in it, for tests that hold them to what the sidecar exports.

export const DASHBOARD = 'deploy/grafana/session-sidecar.json'
export const ALERTS = 'deploy/prometheus/alerts.yml'

export interface Query {
  /** Where it is: a panel's title and refId, a template variable, an alert's name. */
  readonly where: string
  readonly expr: string
  /** Labels it reads besides those in `expr` (label_values' second argument). */
  readonly labels?: readonly string[]
}

/** Every query of the dashboard: panel targets (rows included) and query variables. */
export function dashboardQueries (): Query[] {
  const dashboard = JSON.parse(readFileSync(join(ROOT, DASHBOARD), 'utf8')) as Record<string, any>
  const queries: Query[] = []
  const visit = (panels: Array<Record<string, any>> | undefined): void => {
    for (const panel of panels ?? []) {
      for (const target of panel.targets ?? []) queries.push({ where: `panel "${String(panel.title)}" ${String(target.refId)}`, expr: target.expr })
      visit(panel.panels)
    }
  }
  visit(dashboard.panels)
  for (const variable of dashboard.templating?.list ?? []) {
    if (variable.type !== 'query') continue
    const text = typeof variable.query === 'string' ? variable.query : variable.query?.query
    // label_values(<series selector>, <label>): the selector is PromQL, the label is not.
    const labelValues = /^label_values\((.*),\s*([a-zA-Z_]\w*)\)$/.exec(text)
    const where = `variable ${String(variable.name)}`
    queries.push(labelValues === null ? { where, expr: text } : { where, expr: labelValues[1] as string, labels: [labelValues[2] as string] })
  }
  return queries
}

/** Every alert's expression. */
export function alertQueries (): Query[] {
  const file = parse(readFileSync(join(ROOT, ALERTS), 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string, record?: string, expr: string }> }> }
  return file.groups.flatMap((g) => g.rules.map((r) => ({ where: `alert ${r.alert ?? r.record ?? '?'}`, expr: String(r.expr) })))
}

export interface Matcher { readonly label: string, readonly op: string, readonly value: string }
export interface Selector { readonly name: string, readonly matchers: Matcher[] }

const KEYWORDS = new Set(['and', 'or', 'unless', 'offset', 'bool', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan'])

/**
 * The series selectors of a PromQL expression (metric names with their label matchers) and the
 * labels it groups or joins on. Enough PromQL for dashboards and alert rules: ranges, offsets,
 * functions, aggregations with by/without, binary operators with on/ignoring.
 */
export function parseQuery (expr: string): { selectors: Selector[], grouping: string[] } {
  const grouping: string[] = []
  let text = expr
    .replace(/\[[^\]]*\]/g, ' ') // range and subquery durations, $__rate_interval
    .replace(/\boffset\s+\S+/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_m, _k, labels: string) => {
      grouping.push(...labels.split(',').map((l) => l.trim()).filter((l) => l !== ''))
      return ' '
    })
  const selectors: Selector[] = []
  // A name (not a function: no `(` after it) with its optional {matchers}.
  const selector = /(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:])\s*(\{[^}]*\})?(?!\s*\()/g
  text = text.replace(/(?<![\w:.$])\{[^}]*\}/g, (m) => {
    // A selector with no name ({__name__=~"..."}): not used here, and refused so nobody starts.
    throw new Error(`a selector without a metric name: ${m}`)
  })
  for (const m of text.matchAll(selector)) {
    const name = m[1] as string
    if (KEYWORDS.has(name.toLowerCase())) continue
    const matchers = [...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)].map((x) => ({ label: x[1] as string, op: x[2] as string, value: x[3] as string }))
    selectors.push({ name, matchers })
  }
  return { selectors, grouping }
}
