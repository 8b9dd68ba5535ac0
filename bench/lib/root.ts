import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root: the nearest folder above this file whose package.json is ours. */
function findRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 8; i++) {
    const pkg = join(dir, 'package.json')
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'session-sidecar') return dir
    dir = dirname(dir)
  }
  throw new Error('bench: cannot find the session-sidecar package root')
}

export const ROOT = findRoot()
/** The built CLI the sidecar scenarios run (npm run build). */
export const CLI = join(ROOT, 'dist', 'cli.js')
/** Compiled bench scripts sit beside this folder (servers/, heap.js). */
export const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)))
