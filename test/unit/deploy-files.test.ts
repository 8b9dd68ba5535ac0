import t from 'tap'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { loadConfig, type SidecarConfig } from '../../src/config/index.js'
import { CookieCodec } from '../../src/session/cookie.js'
import { mintKey } from '../../src/session/key.js'
import { renderConfig } from '../helpers/processes.js'

// The example deployment files (deploy/k8s, deploy/nginx/nginx.conf, deploy/haproxy/haproxy.cfg) are what
// operators copy: they must agree with the sidecar's config schema, its ports and endpoints,
// and the image. (The e2e tests run the two load balancer configs themselves.)

type Obj = Record<string, any>
const K8S = 'deploy/k8s'
const SECRET_VALUE = 'x'.repeat(32)

const manifests: Array<Obj & { file: string }> = []
for (const name of readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f)).sort()) {
  for (const doc of parseAllDocuments(readFileSync(join(K8S, name), 'utf8'))) {
    if (doc.errors.length > 0) throw new Error(`${name}: ${doc.errors.map((e) => e.message).join('; ')}`)
    const value = doc.toJS() as Obj | null
    if (value !== null) manifests.push({ ...value, file: name })
  }
}
const ofKind = (kind: string): Obj[] => manifests.filter((m) => m.kind === kind)
const one = (kind: string, pick: (m: Obj) => boolean = () => true): Obj => {
  const found = ofKind(kind).filter(pick)
  if (found.length !== 1) throw new Error(`expected exactly one ${kind}, found ${found.length}`)
  return found[0] as Obj
}
const matches = (selector: Obj | undefined, labels: Obj | undefined): boolean =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v)

const deployment = one('Deployment')
const pod = deployment.spec.template.spec as Obj
const sidecar = (pod.containers as Obj[]).find((c) => (c.args as string[] | undefined)?.includes('--config')) as Obj
const app = (pod.containers as Obj[]).find((c) => c !== sidecar) as Obj
const headless = one('Service', (s) => s.spec.clusterIP === 'None')
const service = one('Service', (s) => s.spec.clusterIP !== 'None')
const statefulSet = one('StatefulSet')
const namedPort = (container: Obj, port: string | number): number =>
  typeof port === 'number' ? port : (container.ports as Obj[]).find((p) => p.name === port)?.containerPort
/** A Secret's value for `key`: SECRET_VALUE for SESSION_SECRET, another one for any other key. */
const secretValue = (key: string): string => key === 'SESSION_SECRET' ? SECRET_VALUE : `${key}-`.padEnd(32, 'x')
/**
 * The container's environment as the kubelet sets it, each secretKeyRef from a Secret that has
 * the key; an `optional` one only `withOptional` (without, the Secret lacks that key).
 */
const env = (container: Obj, withOptional = false): Record<string, string> =>
  Object.fromEntries(((container.env ?? []) as Obj[])
    .filter((e) => withOptional || e.valueFrom?.secretKeyRef?.optional !== true)
    .map((e) => [e.name, e.value ?? (e.valueFrom?.secretKeyRef !== undefined ? secretValue(e.valueFrom.secretKeyRef.key as string) : '')]))

/** The sidecar's config as the pod sees it: the ConfigMap key mounted where --config points. */
function sidecarConfig (withOptional = false): { config: SidecarConfig, raw: Obj, text: string } {
  const args = sidecar.args as string[]
  const path = args[args.indexOf('--config') + 1] as string
  const mount = (sidecar.volumeMounts as Obj[]).find((m) => m.mountPath === dirname(path)) as Obj
  const volume = (pod.volumes as Obj[]).find((v) => v.name === mount?.name) as Obj
  const configMap = one('ConfigMap', (c) => c.metadata.name === volume?.configMap?.name)
  const text = configMap.data[basename(path)] as string
  const dir = mkdtempSync(join(tmpdir(), 'deploy-files-'))
  try {
    writeFileSync(join(dir, 'sidecar.yaml'), text)
    // Exactly the container's environment: every ${VAR} in the config must come from it.
    const config = loadConfig(join(dir, 'sidecar.yaml'), env(sidecar, withOptional))
    return { config, raw: parseAllDocuments(text)[0]?.toJS() as Obj, text }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

t.test('deploy/k8s: every kind an operator needs, in one namespace', async (t) => {
  t.ok(manifests.length > 0)
  for (const kind of ['Namespace', 'Deployment', 'Service', 'StatefulSet', 'ConfigMap', 'PodDisruptionBudget']) {
    t.ok(ofKind(kind).length > 0, `a ${kind}`)
  }
  t.equal(headless.spec.clusterIP, 'None', 'memcached behind a headless Service')
  const secretRef = (sidecar.env as Obj[]).find((e) => e.name === 'SESSION_SECRET')?.valueFrom?.secretKeyRef
  t.ok(ofKind('Secret').length > 0 || secretRef !== undefined, 'SESSION_SECRET from a Secret')
  t.ok(secretRef?.name && secretRef?.key, 'secretKeyRef names a Secret and a key')
  const namespace = one('Namespace').metadata.name as string
  for (const m of manifests.filter((m) => m.kind !== 'Namespace')) t.equal(m.metadata.namespace, namespace, `${m.file}: ${m.kind} ${m.metadata.name as string}`)
})

t.test('deploy/k8s: the ConfigMap is a valid sidecar config that matches the pod', async (t) => {
  const { config, raw } = sidecarConfig()
  t.equal(namedPort(sidecar, 'http'), config.listen.port, 'container port "http" is listen.port')
  t.equal(namedPort(sidecar, 'admin'), config.admin.port, 'container port "admin" is admin.port')
  t.equal(config.listen.host, '0.0.0.0')
  t.equal(config.admin.host, '0.0.0.0', 'the kubelet probes the pod IP, not loopback')
  t.same(config.session.secrets, [SECRET_VALUE], 'the secret comes from the Secret')

  const readiness = sidecar.readinessProbe.httpGet as Obj
  t.equal(readiness.path, '/readyz', 'readiness: /readyz (503 while draining)')
  t.equal(namedPort(sidecar, readiness.port), config.admin.port, 'readiness on the admin port')
  const liveness = sidecar.livenessProbe.httpGet as Obj
  t.equal(liveness.path, '/healthz', 'liveness: /healthz')
  t.equal(namedPort(sidecar, liveness.port), config.admin.port, 'liveness on the admin port')

  // A probe's named port resolves within its own container only: the app's probe (through
  // the sidecar, as the app listens on loopback) needs the number.
  const appProbe = app.readinessProbe?.httpGet as Obj | undefined
  if (appProbe !== undefined) t.equal(namedPort(app, appProbe.port), config.listen.port, 'the app\'s readiness probe goes through the sidecar')

  const upstream = new URL(config.upstream.url)
  t.equal(upstream.hostname, '127.0.0.1', 'the app is reached inside the pod')
  t.equal(upstream.port, env(app).PORT, 'upstream.url is the app container\'s PORT')

  // Discovery of the headless Service; not also by stable names (that would count each pod
  // twice, by name and by IP, and could put both copies of a session on one pod).
  const memcachedPort = headless.spec.ports[0].port as number
  t.equal(config.memcached.discovery.dns, `${headless.metadata.name as string}.${headless.metadata.namespace as string}.svc.cluster.local:${memcachedPort}`,
    'memcached.discovery.dns is the headless Service')
  t.same(config.memcached.nodes, [], 'no explicit nodes beside discovery')
  // The one list from the environment (MEMCACHED_NODES), left empty while discovery places.
  t.equal((raw.memcached as Obj).nodes, '${MEMCACHED_NODES:-}', 'nodes come from MEMCACHED_NODES')
  t.equal(env(sidecar).MEMCACHED_NODES, '', 'which the pod leaves empty beside discovery')
  t.equal(config.memcached.replicas, 2, 'a backup copy of every session')
})

t.test('deploy/k8s: every ${VAR} of the config is in the sidecar\'s environment; secret rotation needs only the Secret', async (t) => {
  const { text } = sidecarConfig()
  // Comments included: an example an operator follows must work too.
  const referenced = [...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}/g)]
  t.ok(referenced.length > 0)
  const mapped = (sidecar.env ?? []) as Obj[]
  for (const [ref, name, fallback] of referenced) {
    const entry = mapped.find((e) => e.name === name)
    t.ok(entry, `${ref} is mapped in the sidecar container's env`)
    if (entry?.valueFrom?.secretKeyRef?.optional === true) t.not(fallback, undefined, `${ref}: an optional variable has a default (\${${name as string}:-...}), or the pod would exit 2 without it`)
  }
  const between = sidecarConfig(false).config.session
  t.same([between.secrets, between.verifyOnly], [[SECRET_VALUE], []], 'between rotations (no SESSION_SECRET_VERIFY_ONLY in the Secret): one secret, it signs')
  const rotating = sidecarConfig(true).config.session
  t.same([rotating.secrets, rotating.verifyOnly], [[SECRET_VALUE], [secretValue('SESSION_SECRET_VERIFY_ONLY')]], 'during a rotation: the signer and a verify-only secret')
  const verifyOnly = mapped.find((e) => e.name === 'SESSION_SECRET_VERIFY_ONLY')?.valueFrom?.secretKeyRef as Obj | undefined
  t.equal(verifyOnly?.name, mapped.find((e) => e.name === 'SESSION_SECRET')?.valueFrom?.secretKeyRef?.name, 'both from the same Secret')
  t.equal(verifyOnly?.optional, true, 'the verify-only key may be absent from the Secret')
})

t.test('deploy/k8s: shutdown fits in the grace period, the sidecar\'s delay instead of a preStop sleep', async (t) => {
  const { config } = sidecarConfig()
  const preStop = (c: Obj): number => Number(c.lifecycle?.preStop?.sleep?.seconds ?? 0) * 1000
  const grace = Number(pod.terminationGracePeriodSeconds) * 1000
  const { delayMs, timeoutMs } = config.shutdown
  t.equal(sidecar.lifecycle?.preStop, undefined, 'no preStop hook on the sidecar: it serves on for shutdown.delayMs after SIGTERM itself')
  t.ok(delayMs >= 5000, `shutdown.delayMs (${delayMs}) covers the seconds endpoint removal takes to reach every node and ingress`)
  t.ok(grace > delayMs + timeoutMs, `terminationGracePeriodSeconds (${grace} ms) > shutdown.delayMs + shutdown.timeoutMs (${delayMs + timeoutMs})`)
  t.ok(preStop(app) >= delayMs + timeoutMs, 'the app outlives the sidecar\'s delay and drain')
  t.ok(grace > preStop(app), 'the app gets SIGTERM before the grace period ends')
})

t.test('deploy/k8s: Services, StatefulSet and budgets select the right pods', async (t) => {
  const { config } = sidecarConfig()
  const podLabels = deployment.spec.template.metadata.labels as Obj
  t.ok(matches(deployment.spec.selector.matchLabels, podLabels))
  t.ok(matches(service.spec.selector, podLabels), 'the app Service selects the app pods')
  for (const p of service.spec.ports as Obj[]) t.equal(namedPort(sidecar, p.targetPort), config.listen.port, 'the app Service targets the sidecar, never the app')

  const memcachedPod = statefulSet.spec.template as Obj
  t.equal(statefulSet.spec.serviceName, headless.metadata.name, 'the StatefulSet is governed by the headless Service')
  t.equal(statefulSet.spec.replicas, 3)
  t.ok(matches(statefulSet.spec.selector.matchLabels, memcachedPod.metadata.labels))
  t.ok(matches(headless.spec.selector, memcachedPod.metadata.labels), 'the headless Service selects the memcached pods')
  const memcached = memcachedPod.spec.containers[0] as Obj
  t.equal(namedPort(memcached, headless.spec.ports[0].targetPort ?? headless.spec.ports[0].port), headless.spec.ports[0].port, 'memcached listens where the Service says')

  for (const pdb of ofKind('PodDisruptionBudget')) {
    const selected = [podLabels, memcachedPod.metadata.labels].filter((labels) => matches(pdb.spec.selector.matchLabels, labels))
    t.equal(selected.length, 1, `PodDisruptionBudget ${pdb.metadata.name as string} selects one workload`)
  }
  t.ok(ofKind('PodDisruptionBudget').some((pdb) => matches(pdb.spec.selector.matchLabels, podLabels)), 'a budget for the app pods')
})

t.test('deploy/k8s: the image built by the Dockerfile exposes the container ports', async (t) => {
  const dockerfile = readFileSync('Dockerfile', 'utf8')
  const exposed = [...dockerfile.matchAll(/^EXPOSE\s+(.+)$/gm)].flatMap((m) => (m[1] as string).trim().split(/\s+/)).map((p) => Number(p.split('/')[0]))
  for (const p of sidecar.ports as Obj[]) t.ok(exposed.includes(p.containerPort), `EXPOSE ${p.containerPort as number} (${p.name as string})`)
  t.match(dockerfile, /^ENTRYPOINT \["node", "dist\/cli\.js"\]$/m, 'args: [--config, ...] reach the CLI')
})

const dockerConfig = loadConfig('config/docker.yaml', { SESSION_SECRET: SECRET_VALUE })

t.test('deploy/haproxy/haproxy.cfg: round-robin, health checks on the admin /readyz, retries', async (t) => {
  const cfg = renderConfig('deploy/haproxy/haproxy.cfg', { host: '', listen: 'bind :80', servers: (lines) => lines.join('\n') })
  t.match(cfg, /^\s*balance roundrobin$/m)
  t.match(cfg, /^\s*option httpchk GET \/readyz$/m, 'checks /readyz')
  t.match(cfg, /^\s*http-check expect status 200$/m)
  t.match(cfg, new RegExp(`^\\s*default-server check port ${dockerConfig.admin.port}\\b`, 'm'), 'on the sidecar\'s admin port')
  t.match(cfg, /^\s*option redispatch$/m)
  t.match(cfg, /^\s*retries [1-9]$/m)
  const servers = [...cfg.matchAll(/^\s*server \S+ (\S+)/gm)].map((m) => m[1] as string)
  t.ok(servers.length >= 2, 'example servers')
  for (const s of servers) t.match(s, new RegExp(`:${dockerConfig.listen.port}$`), `${s} is a sidecar's listen port`)
  // A stopping sidecar must leave the pool while it still serves: checks notice within fall x inter.
  const check = /^\s*default-server check .*\binter (\d+)s\b.*\bfall (\d+)\b/m.exec(cfg)
  const noticedMs = Number(check?.[1]) * 1000 * Number(check?.[2])
  t.ok(noticedMs < dockerConfig.shutdown.delayMs, `failed checks take a sidecar out (${noticedMs} ms) before its shutdown.delayMs ends (${dockerConfig.shutdown.delayMs} ms)`)
  const timeoutServer = /^\s*timeout server (\d+)s$/m.exec(cfg)
  t.ok(Number(timeoutServer?.[1]) * 1000 > dockerConfig.upstream.timeoutMs, 'timeout server > upstream.timeoutMs (the sidecar\'s 504 gets through)')
})

t.test('deploy/nginx/nginx.conf: sticky by the session key, fails over, keeps connections', async (t) => {
  const cfg = renderConfig('deploy/nginx/nginx.conf', { listen: 'listen 80;', servers: (lines) => lines.join('\n') })
  const map = /map \$cookie_(\S+) \$session_key \{\s*"~(.+)" \$key;\s*default "";\s*\}/.exec(cfg)
  t.ok(map, 'a map from the cookie to $session_key')
  t.equal(map?.[1], dockerConfig.session.cookie.name, 'on the sidecar\'s cookie name')
  // The map's regex (PCRE; this one is also valid JavaScript) extracts the key from real cookies.
  const pattern = new RegExp(map?.[2] ?? '^$')
  const key = mintKey()
  const codec = new CookieCodec([SECRET_VALUE])
  for (const backup of ['10.0.0.6:11211', undefined]) {
    for (const version of [1, 42]) {
      const cookie = codec.encode({ key, primary: 'memcached-0.memcached.web.svc.cluster.local:11211', backup, version })
      t.equal(pattern.exec(cookie)?.groups?.key, key, `the key of ${backup === undefined ? 'a single-copy' : 'a replicated'} cookie at version ${version}`)
    }
  }
  t.equal(pattern.exec('2~' + key + '~x')?.groups?.key, undefined, 'another format: no key')
  const directives = cfg.replace(/^\s*#.*\n/gm, '')
  t.match(directives, /upstream sidecars \{\s*hash \$session_key consistent;[\s\S]*keepalive \d+;\s*\}/, 'hash on the key, then keepalive (it must follow hash)')
  t.match(cfg, /^\s*proxy_next_upstream error timeout http_502;$/m)
  t.match(cfg, /^\s*client_max_body_size 0;$/m, 'body sizes left to the app')
  t.match(cfg, /^\s*proxy_http_version 1\.1;$/m, 'keepalive needs HTTP/1.1')
  t.match(cfg, /^\s*proxy_set_header Connection "";$/m, 'and no Connection: close')
  // $host drops the port: behind `8080:80` the app would see `localhost`, not the `localhost:8080` the client sent.
  t.match(cfg, /^\s*proxy_set_header Host \$http_host;$/m, 'the client\'s Host as sent, port included')
  const servers = [...cfg.matchAll(/^\s*server (\d[\d.]*:\d+)/gm)].map((m) => m[1] as string)
  t.ok(servers.length >= 2, 'example servers')
  for (const s of servers) t.match(s, new RegExp(`:${dockerConfig.listen.port}$`), `${s} is a sidecar's listen port`)
  const read = /^\s*proxy_read_timeout (\d+)s;$/m.exec(cfg)
  t.ok(Number(read?.[1]) * 1000 > dockerConfig.upstream.timeoutMs, 'proxy_read_timeout > upstream.timeoutMs')
  t.match(cfg, /\/readyz/, 'explains the /readyz check (HAProxy, nginx Plus)')
})

t.test('renderConfig refuses a file whose harness blocks do not match', async (t) => {
  t.throws(() => renderConfig('deploy/nginx/nginx.conf', { listen: '' }), /no replacement for test-harness block "servers"/)
  t.throws(() => renderConfig('deploy/nginx/nginx.conf', { listen: '', servers: '', other: '' }), /no test-harness block named other/)
})
