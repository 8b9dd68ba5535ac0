import { proxyScript, type Scenario } from '../lib/scenario.js'

/** Peer (j): node:http + an undici Pool, no framework: the floor of what a Node proxy costs. */
export default {
  id: 'minimal-proxy',
  ref: '(j)',
  title: 'node:http + undici Pool, no framework',
  peer: true,
  start: proxyScript('minimal-proxy')
} satisfies Scenario
