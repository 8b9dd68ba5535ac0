import { proxyScript, type Scenario } from '../lib/scenario.js'

/** (b) fastify + @fastify/http-proxy with no session work: the reference for the ratios. */
export default {
  id: 'bare-proxy',
  ref: '(b)',
  title: 'bare fastify + @fastify/http-proxy',
  start: proxyScript('bare-proxy')
} satisfies Scenario
