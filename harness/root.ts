import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The repository root: the nearest folder above this file whose package.json is ours. Found
 * the same from the sources (tap), from dist/harness (the demo) and from dist-bench/ or
 * dist-chaos/ (npm run bench, npm run chaos).
 */
function findRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 8; i++) {
    const pkg = join(dir, 'package.json')
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'session-sidecar') return dir
    dir = dirname(dir)
  }
  throw new Error('cannot find the session-sidecar package root')
}

export const ROOT = findRoot()
/** The built CLI (npm run build) that e2e tests, the bench, chaos and the demo run. */
export const CLI = join(ROOT, 'dist', 'cli.js')
