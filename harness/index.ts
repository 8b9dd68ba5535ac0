/**
 * The harness the tests, the bench, chaos and the demo share: one copy of each helper.
 *
 * - ports: `listenOnLoopback` (port 0, read back) for servers in this process; `freePort` and
 *   `onFreePort` (a port below the ephemeral range, another if it was taken) for children that
 *   cannot report their port or are restarted on the same one; `bindable`, `closeServer`.
 * - waits: `until` (a poll, always with a deadline), `within` (an awaited event, with one).
 * - children: `waitReady`, `exitOf`, `stopChild`, `running`.
 * - the sidecar CLI: `sidecarYaml` (its config), `listeningPorts` (where it listened), `ROOT`, `CLI`.
 * - clocks: `monotonicClock` (performance.now under a test's control).
 *
 * Compiled with the demo (tsconfig.demo.json: dist/harness), the bench (dist-bench/harness) and
 * chaos (dist-chaos/harness); it imports nothing from src/ or test/.
 */
export { bindable, closeServer, freePort, listenOnLoopback, onFreePort, portOf, portTaken } from './ports.js'
export { until, within, type UntilOptions } from './wait.js'
export { exitOf, running, stopChild, waitReady } from './children.js'
export { listeningPorts, sidecarYaml, type SidecarYamlOptions } from './sidecar-config.js'
export { CLI, ROOT } from './root.js'
export { monotonicClock, type MonotonicClock } from './clock.js'
