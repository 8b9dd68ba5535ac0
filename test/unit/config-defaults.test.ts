import t from 'tap'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { buildConfig, DEFAULTS, Derived, loadConfig, Required, type SidecarConfig } from '../../src/config/index.js'

// DEFAULTS is the one source of defaults: the builder takes them from it, and the README's
// config table states them. A default changed in one place only fails here.

/** Every key of DEFAULTS (or of a parsed document) with its value, in order: sections are walked, anything else is a key. */
function leaves (section: object, prefix = ''): Array<[string, unknown]> {
  return Object.entries(section).flatMap(([key, value]): Array<[string, unknown]> => {
    const path = prefix === '' ? key : `${prefix}.${key}`
    const isSection = value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Required) && !(value instanceof Derived)
    return isSection ? leaves(value as object, path) : [[path, value]]
  })
}

/** A default as the README's default column states it. */
function stated (value: unknown): string {
  if (value instanceof Required) return value.condition === '' ? 'required' : `required ${value.condition}`
  if (value instanceof Derived) return `derived: ${value.rule}`
  if (value === undefined) return 'unset'
  if (Array.isArray(value)) return value.length === 0 ? '`[]`' : value.map((v) => `\`${String(v)}\``).join(', ')
  return `\`${String(value)}\``
}

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
const start = readme.indexOf('## Configuration\n')
const section = readme.slice(start, readme.indexOf('\n## ', start + 1))
/** [key, default] per row of the Configuration table; `\|` inside a cell is a literal |. */
const rows = [...section.matchAll(/^\| `([^`]+)` \|(.*)\|$/gm)].map((m) => {
  const cells = (m[2] ?? '').split(/(?<!\\)\|/).map((c) => c.trim().replaceAll('\\|', '|'))
  return [m[1] as string, cells[0] ?? ''] as const
})

t.test('the README config table lists every key of DEFAULTS, in order, with its default', async (t) => {
  t.ok(rows.length > 30, 'a Configuration table')
  t.same(rows.map(([key]) => key), leaves(DEFAULTS).map(([key]) => key), 'one row per key, in DEFAULTS order')
  const table = new Map(rows)
  for (const [key, value] of leaves(DEFAULTS)) t.equal(table.get(key), stated(value), key)
})

t.test('derived and required defaults are stated, not given a value', async (t) => {
  t.same(leaves(DEFAULTS).filter(([, v]) => v instanceof Derived || v instanceof Required).map(([key]) => key),
    ['session.secrets', 'cache.revalidateMs', 'memcached.nodes', 'memcached.replicas'])
})

t.test('DEFAULTS is frozen all the way down', async (t) => {
  for (const [name, value] of [['DEFAULTS', DEFAULTS], ['listen', DEFAULTS.listen], ['trustProxies', DEFAULTS.listen.trustProxies], ['session.cookie', DEFAULTS.session.cookie], ['memcached.allow', DEFAULTS.memcached.allow], ['memcached.discovery', DEFAULTS.memcached.discovery], ['cookies.names', DEFAULTS.cookies.names]] as const) {
    t.ok(Object.isFrozen(value), `${name} is frozen`)
  }
})

/** What the assertions need of a test: tap's subtests and the root share it. */
type Assert = Pick<typeof t, 'same'>

/** The value at a dotted key path. */
const at = (o: unknown, key: string): unknown => key.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], o)

/** What `config` holds at `key` when it was not given: its DEFAULTS entry, computed if derived. */
function defaultIn (config: SidecarConfig, key: string): unknown {
  const value = at(DEFAULTS, key)
  return value instanceof Derived
    ? value.derive({ idleTimeout: config.session.idleTimeout, nodes: config.memcached.nodes, discoveryDns: config.memcached.discovery.dns })
    : value
}

/** Asserts that `config` holds the default at each key (a RegExp compared by its source). */
function assertDefaults (t: Assert, config: SidecarConfig, keys: readonly string[], what: string): void {
  for (const key of keys) {
    if (at(DEFAULTS, key) instanceof Required) continue
    const value = at(config, key)
    t.same(value instanceof RegExp ? value.source : value, defaultIn(config, key), `${what}: ${key}`)
  }
}

t.test('a config that gives no optional key gets DEFAULTS, derived ones computed as stated', async (t) => {
  const secrets = ['s'.repeat(16)]
  const all = leaves(DEFAULTS).map(([key]) => key)
  assertDefaults(t, buildConfig({ session: { secrets }, memcached: { nodes: ['a:1'] } }, {}), all, 'one node')
  assertDefaults(t, buildConfig({ session: { secrets }, memcached: { nodes: ['a:1', 'b:1'] } }, {}), all, 'two nodes')
  const given = ['session.idleTimeout', 'memcached.discovery.dns']
  assertDefaults(t, buildConfig({ session: { secrets, idleTimeout: 40 }, memcached: { discovery: { dns: 'mc.internal:11211' } } }, {}),
    all.filter((key) => !given.includes(key)), 'discovery, short idle timeout')
  t.equal(DEFAULTS.cache.revalidateMs.derive({ idleTimeout: 40 }), 20000)
  t.equal(DEFAULTS.cache.revalidateMs.derive({ idleTimeout: 1800 }), 30000)
  t.equal(DEFAULTS.memcached.replicas.derive({ nodes: ['a:1'], discoveryDns: undefined }), 1)
  t.equal(DEFAULTS.memcached.replicas.derive({ nodes: [], discoveryDns: 'mc.internal:11211' }), 2)
})

t.test('config/default.yaml agrees with DEFAULTS wherever it sets a key (on its environment defaults)', async (t) => {
  const file = fileURLToPath(new URL('../../config/default.yaml', import.meta.url))
  const set = leaves(parse(readFileSync(file, 'utf8')) as object).map(([key]) => key)
  t.ok(set.length > 30, 'it sets most keys')
  assertDefaults(t, loadConfig(file, { SESSION_SECRET: 'x'.repeat(32) }), set, 'config/default.yaml')
})
