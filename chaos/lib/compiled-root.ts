import { lstatSync, symlinkSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Compiled into dist-chaos/ (npm run chaos), test/helpers/processes.js takes dist-chaos/ for
 * the repository root (two folders above it) and looks there for the built CLI (dist/cli.js)
 * and the load balancer's example config (deploy/haproxy/haproxy.cfg): link both to the real ones.
 * Run from the sources (the tap test), there is nothing to do.
 */
export function linkCompiledRoot (): void {
  const out = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
  if (basename(out) !== 'dist-chaos') return
  for (const name of ['dist', 'deploy']) {
    const link = join(out, name)
    try {
      lstatSync(link)
    } catch {
      symlinkSync(join('..', name), link, 'dir')
    }
  }
}
