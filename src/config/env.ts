/** The environment a config's `${VAR}` references are read from. */
export type Env = Record<string, string | undefined>

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g
const UNSET_VARIABLE = ': environment variable '

/**
 * Replaces `${VAR}` and `${VAR:-default}` inside string values, never in keys or structure, in
 * one pass (a substituted value is not expanded again). A variable that is unset or empty takes
 * the default; with none, a problem naming the key path is recorded and the text becomes ''.
 */
export function substitute (value: unknown, path: string, env: Env, problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REF, (_match, name: string, fallback: string | undefined) => {
      const found = env[name]
      if (found !== undefined && found !== '') return found
      if (fallback !== undefined) return fallback
      problems.push(`${path || '(root)'}${UNSET_VARIABLE}${name} is not set`)
      return ''
    })
  }
  if (Array.isArray(value)) return value.map((v, i) => substitute(v, `${path}[${i}]`, env, problems))
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = substitute(v, path === '' ? k : `${path}.${k}`, env, problems)
    return out
  }
  return value
}

/**
 * A value whose variable is unset then also fails its own checks (empty, too short, list
 * now empty): report only the cause, once, under the key it happened at.
 */
export function withoutEchoes (problems: readonly string[]): string[] {
  const unset = problems.filter((p) => p.includes(UNSET_VARIABLE)).map((p) => p.slice(0, p.indexOf(': ')))
  return problems.filter((p) => {
    if (p.includes(UNSET_VARIABLE)) return true
    const path = p.slice(0, p.indexOf(': '))
    return !unset.some((u) => u === path || u.startsWith(`${path}[`) || u.startsWith(`${path}.`))
  })
}
