import t from 'tap'
import { readFileSync } from 'node:fs'
import semver from 'semver'

// package.json `engines` is honest: every Node the project supports (the CI machines run Node
// 20, the image Node 24) satisfies it, and every package the sidecar installs in production
// accepts each of them (an npm install on Node 20 warns EBADENGINE otherwise).

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } }
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, { version?: string, dev?: boolean, engines?: { node?: string } | string[] }> }
const SUPPORTED = ['20.19.0', '22.12.0', '24.0.0']

t.test('engines.node admits every supported Node, and nothing older than the oldest', async (t) => {
  for (const version of SUPPORTED) t.ok(semver.satisfies(version, pkg.engines.node), `${version} satisfies "${pkg.engines.node}"`)
  t.notOk(semver.satisfies('18.20.0', pkg.engines.node), 'Node 18 is not claimed')
})

t.test('every production dependency accepts every supported Node', async (t) => {
  let checked = 0
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '' || entry.dev === true || Array.isArray(entry.engines)) continue
    const range = entry.engines?.node
    if (range === undefined) continue
    checked++
    for (const version of SUPPORTED) {
      if (!semver.satisfies(version, range)) t.fail(`${path}@${entry.version ?? '?'} wants node "${range}", not ${version}`)
    }
  }
  t.ok(checked > 10, `${checked} production packages declare engines.node`)
})
