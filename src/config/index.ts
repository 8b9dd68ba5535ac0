// The config: its shape (schema.ts), every key's default (defaults.ts), `${VAR}` substitution
// (env.ts), typed reading with one problem line per bad value (reader.ts), rules across keys
// (rules.ts), and the builder that runs them in order and freezes the result (load.ts).
export { buildConfig, loadConfig } from './load.js'
export { DEFAULT_IGNORE, DEFAULTS, Derived, Required, type DerivationInputs } from './defaults.js'
export type { Bytes, CookieConfig, Milliseconds, Seconds, SidecarConfig } from './schema.js'
