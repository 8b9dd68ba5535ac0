/** A mapping read from the document, its values not yet checked. */
export type Raw = Record<string, unknown>

/**
 * Reads typed values, recording one problem line per bad value (key path and rule) and
 * returning the fallback instead, so that every problem in a config is reported at once.
 * Absent (undefined or null) values take the fallback without a problem.
 */
export class Reader {
  constructor (private readonly problems: string[]) {}

  /** A mapping whose keys must all be among `keys`. */
  section (value: unknown, path: string, keys: readonly string[]): Raw {
    if (value === undefined || value === null) return {}
    if (typeof value !== 'object' || Array.isArray(value)) {
      this.problems.push(`${path || '(root)'}: must be a mapping`)
      return {}
    }
    for (const key of Object.keys(value)) {
      if (!keys.includes(key)) this.problems.push(`${path === '' ? key : `${path}.${key}`}: unknown key (expected one of ${keys.join(', ')})`)
    }
    return value as Raw
  }

  string (value: unknown, path: string, fallback: string, pattern?: RegExp, rule?: string): string {
    if (value === undefined || value === null) return fallback
    if (typeof value !== 'string' || value === '') {
      this.problems.push(`${path}: must be a non-empty string`)
      return fallback
    }
    if (pattern !== undefined && !pattern.test(value)) {
      this.problems.push(`${path}: ${rule ?? `must match ${String(pattern)}`}`)
      return fallback
    }
    return value
  }

  /** Absent or '' is undefined. */
  optionalString (value: unknown, path: string, pattern: RegExp, rule: string): string | undefined {
    if (value === undefined || value === null || value === '') return undefined
    const s = this.string(value, path, '', pattern, rule)
    return s === '' ? undefined : s
  }

  /**
   * YAML reads an unquoted all-digit entry as a number: it is taken as its text. With
   * `commaSeparated`, one string is a list too (`a:11211,b:11211`; spaces around commas
   * ignored, empty string = empty list), so a whole list can come from one environment
   * variable (`nodes: ${MEMCACHED_NODES}`).
   */
  strings (value: unknown, path: string, fallback: readonly string[] | undefined, commaSeparated = false): string[] | undefined {
    if (value === undefined || value === null) return fallback === undefined ? undefined : [...fallback]
    if (commaSeparated && typeof value === 'string') value = value.split(',').map((v) => v.trim()).filter((v) => v !== '')
    if (!Array.isArray(value)) {
      this.problems.push(`${path}: must be a list of strings`)
      return fallback === undefined ? undefined : [...fallback]
    }
    const out: string[] = []
    value.forEach((v, i) => {
      if (typeof v === 'string' && v !== '') out.push(v)
      else if (typeof v === 'number') out.push(String(v))
      else this.problems.push(`${path}[${i}]: must be a non-empty string`)
    })
    return out
  }

  /**
   * A list of strings where '' entries (an unset `${VAR:-}`) are skipped, so a deploy file can
   * keep a slot for a value it does not always have. Each entry keeps its index in the list as
   * written, for the rules' problem lines.
   */
  sparseStrings (value: unknown, path: string): Array<{ readonly index: number, readonly value: string }> {
    if (value === undefined || value === null) return []
    if (!Array.isArray(value)) {
      this.problems.push(`${path}: must be a list of strings`)
      return []
    }
    const out: Array<{ index: number, value: string }> = []
    value.forEach((v, index) => {
      if (typeof v === 'string') {
        if (v !== '') out.push({ index, value: v })
      } else if (typeof v === 'number') {
        out.push({ index, value: String(v) })
      } else {
        this.problems.push(`${path}[${index}]: must be a string`)
      }
    })
    return out
  }

  integer (value: unknown, path: string, fallback: number, min: number, max: number): number {
    if (value === undefined || value === null) return fallback
    // Whole-value env substitutions arrive as strings: accept their numeric form.
    const n = typeof value === 'string' && /^-?[0-9]+$/.test(value.trim()) ? Number(value) : value
    if (typeof n !== 'number' || !Number.isInteger(n)) {
      this.problems.push(`${path}: must be an integer`)
      return fallback
    }
    if (n < min || n > max) {
      this.problems.push(`${path}: must be between ${min} and ${max} (got ${n})`)
      return fallback
    }
    return n
  }

  boolean (value: unknown, path: string, fallback: boolean): boolean {
    if (value === undefined || value === null) return fallback
    if (value === true || value === 'true') return true
    if (value === false || value === 'false') return false
    this.problems.push(`${path}: must be true or false`)
    return fallback
  }

  oneOf<T extends string | number> (value: unknown, path: string, fallback: T, allowed: readonly T[]): T {
    if (value === undefined || value === null) return fallback
    const v = typeof value === 'string' && typeof allowed[0] === 'number' ? Number(value) : value
    if (!allowed.includes(v as T)) {
      this.problems.push(`${path}: must be one of ${allowed.join(', ')} (got ${JSON.stringify(value)})`)
      return fallback
    }
    return v as T
  }

  /** null or '' disables (null); absent takes the fallback's source. */
  regex (value: unknown, path: string, fallback: string): RegExp | null {
    if (value === null || value === '') return null
    const source = this.string(value, path, fallback)
    try {
      return new RegExp(source)
    } catch (err) {
      this.problems.push(`${path}: invalid regular expression (${(err as Error).message})`)
      return null
    }
  }

  /** An absolute http:// or https:// URL, kept as written. */
  url (value: unknown, path: string, fallback: string): string {
    const s = this.string(value, path, fallback)
    let url: URL
    try {
      url = new URL(s)
    } catch {
      this.problems.push(`${path}: must be an absolute http:// or https:// URL`)
      return fallback
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      this.problems.push(`${path}: must be an absolute http:// or https:// URL`)
      return fallback
    }
    return s
  }
}
