import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { loadConfig } from '../../src/config/index.js'
import type { ConfigError } from '../../src/errors.js'

// The shipped configs are used by `npm start` and the container: they must stay valid.
const env = { SESSION_SECRET: 'x'.repeat(32) }

t.test('config/default.yaml is valid on its defaults', async (t) => {
  const config = loadConfig('config/default.yaml', env)
  t.equal(config.listen.port, 8080)
  t.equal(config.upstream.url, 'http://127.0.0.1:3000')
  t.same(config.memcached.nodes, ['127.0.0.1:11211'])
  t.equal(config.session.cookie.secure, true)
  t.equal(loadConfig('config/default.yaml', { ...env, COOKIE_SECURE: 'false' }).session.cookie.secure, false)
})

t.test('config/default.yaml refuses to start without SESSION_SECRET', async (t) => {
  try {
    loadConfig('config/default.yaml', {})
    t.fail('loaded without a secret')
  } catch (err) {
    t.same((err as ConfigError).problems, ['session.secrets[0]: environment variable SESSION_SECRET is not set'])
  }
})

t.test('config/docker.yaml, the Dockerfile and docker-compose.yml agree', async (t) => {
  const config = loadConfig('config/docker.yaml', env)
  const dockerfile = readFileSync('Dockerfile', 'utf8')
  const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, any> }
  t.match(dockerfile, new RegExp(`EXPOSE ${config.listen.port} ${config.admin.port}`), 'the image exposes the listen and admin ports')
  t.match(dockerfile, /CMD \["--config", "config\/docker.yaml"\]/, 'the image runs config/docker.yaml')
  t.match(dockerfile, /HEALTHCHECK[\s\S]*\/healthz/, 'the health check probes /healthz')
  t.match(dockerfile, /^USER node$/m, 'not root')
  t.equal(config.admin.host, '0.0.0.0', 'admin reachable for scraping inside the pod network')
  const nodes = Object.keys(compose.services).filter((s) => s.startsWith('memcached-')).map((s) => `${s}:11211`)
  const sidecarEnv = compose.services['sidecar-1'].environment as Record<string, string>
  const composed = loadConfig('config/docker.yaml', { ...env, ...sidecarEnv })
  t.same([...composed.memcached.nodes].sort(), nodes.sort(), 'the sidecars use the compose file\'s memcached services')
  t.equal(composed.upstream.url, 'http://127.0.0.1:3000')
  for (const name of ['sidecar-1', 'sidecar-2']) {
    const grace = /^(\d+)s$/.exec(String(compose.services[name].stop_grace_period))?.[1]
    t.ok(Number(grace) * 1000 > composed.shutdown.delayMs + composed.shutdown.timeoutMs, `${name}: stop_grace_period (${String(grace)} s) covers shutdown.delayMs + timeoutMs`)
  }
  for (const app of ['app-1', 'app-2']) {
    t.same(compose.services[app].entrypoint, ['node', 'dist/demo/app.js'], `${app} runs the demo app from the image`)
    t.equal(compose.services[app].environment.PORT, '3000', `${app} listens where the sidecar forwards`)
  }
  t.match(dockerfile, /tsc -p tsconfig\.demo\.json/, 'the image builds the demo app')
  t.ok(existsSync('demo/app.ts') && existsSync('tsconfig.demo.json'), 'what the image builds exists')
  const nginx = readFileSync('deploy/nginx/nginx-compose.conf', 'utf8')
  t.match(nginx, new RegExp(`server app-1:${config.listen.port};`), 'nginx reaches sidecar-1 through app-1\'s network namespace')
  t.match(nginx, new RegExp(`server app-2:${config.listen.port};`))
  t.match(nginx, /proxy_set_header Host \$http_host;/, 'the app sees the Host the browser sent, port included (8080:80)')
})

t.test('the container: a supported Node LTS, node itself as the entrypoint, a build context without the local trees', async (t) => {
  const dockerfile = readFileSync('Dockerfile', 'utf8')
  const bases = [...dockerfile.matchAll(/^FROM node:(\d+)-/gm)].map((m) => Number(m[1]))
  t.ok(bases.length >= 2 && bases.every((v) => v === 22 || v === 24), `every stage on Node 22 or 24 (${bases.join(', ')})`)
  t.match(dockerfile, /^ENTRYPOINT \["node", "dist\/cli\.js"\]$/m, 'node runs the CLI directly: no npm in the signal path')
  const ignored = readFileSync('.dockerignore', 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
  for (const tree of ['node_modules', 'dist', '.git', 'test', '.env']) t.ok(ignored.includes(tree), `.dockerignore leaves out ${tree}`)
  for (const copied of [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => (m[1] as string).split(' '))) {
    t.notOk(ignored.includes(copied), `what the Dockerfile copies (${copied}) is in the context`)
  }
})

t.test('config/docker.yaml: the memcached node list is one variable, and scaling it needs nothing else', async (t) => {
  const three = loadConfig('config/docker.yaml', { ...env, MEMCACHED_NODES: 'memcached-1:11211,memcached-2:11211,memcached-3:11211' })
  t.same(three.memcached.nodes, ['memcached-1:11211', 'memcached-2:11211', 'memcached-3:11211'], 'a third compose node')
  t.equal(three.memcached.replicas, 2)
  const one = loadConfig('config/docker.yaml', { ...env, MEMCACHED_NODES: 'memcached-1:11211' })
  t.equal(one.memcached.replicas, 1, 'replicas derived from the list')
  t.same(loadConfig('config/docker.yaml', { ...env, MEMCACHED_NODES: 'cache-a.memcached.internal:11211', MEMCACHED_ALLOW: '*.memcached.internal' }).memcached.allow, ['*.memcached.internal'])
})
