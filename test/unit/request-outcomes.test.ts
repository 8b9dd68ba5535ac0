import { readFileSync } from 'node:fs'
import t from 'tap'
import { REQUEST_OUTCOMES } from '../../src/metrics.js'

// One vocabulary for how a request's session was found: the store's load outcomes, the request
// flow's and the metric's labels are the same words, and the README lists exactly those.
const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')

t.test('the README lists every sidecar_requests_total outcome, and no other', async (t) => {
  const listed = /`sidecar_requests_total\{outcome\}` \(outcome: ([^)]*)\)/.exec(readme.replace(/\s+/g, ' '))
  t.ok(listed, 'the README has the outcome list beside the metric')
  const names = [...(listed?.[1] ?? '').matchAll(/`([a-z-]+)`/g)].map((m) => m[1]).filter((name) => name !== 'session.ignore')
  t.same(names, [...REQUEST_OUTCOMES])
})
