import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

export { CLI, ROOT } from '../../harness/index.js'
/** Compiled bench scripts sit beside this folder (servers/, heap.js). */
export const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)))
