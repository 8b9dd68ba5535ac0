import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { onFreePort, stopChild, waitReady } from '../../harness/index.js'
import { announced, type Children } from './children.js'
import { BENCH_DIR, ROOT } from './root.js'

/** A server process the benchmark started: where it listens and how to stop it. */
export interface Server {
  readonly url: string
  readonly pid: number | undefined
  stop: () => Promise<void>
}

/** One of bench/servers/*.ts (compiled), in its own node process. */
export async function startScript (children: Children, script: 'upstream' | 'bare-proxy' | 'minimal-proxy' | 'express-session' | 'balancer' | 'sink', args: readonly string[], nodeFlags: readonly string[] = []): Promise<Server> {
  const child = children.spawn(script, process.execPath, [...nodeFlags, join(BENCH_DIR, 'servers', `${script}.js`), ...args], { cwd: ROOT })
  const { port } = await announced<{ port: number }>(script, child)
  return serverOf(child, `http://127.0.0.1:${port}`)
}

function serverOf (child: ChildProcess, url: string): Server {
  return { url, pid: child.pid, stop: async () => { await stopChild(child, 'SIGTERM', 5000) } }
}

export const HAPROXY = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy'].find((p) => existsSync(p))

/**
 * Round-robin, not sticky, over `backends`: HAProxy when installed (one thread, keep-alive to
 * the sidecars), else bench/servers/balancer.ts.
 */
export async function startBalancer (children: Children, dir: string, backends: readonly string[]): Promise<Server & { kind: string }> {
  if (HAPROXY === undefined) return { ...await startScript(children, 'balancer', [backends.join(',')]), kind: 'node:http balancer (no HAProxy)' }
  // HAProxy cannot report a port it picked: a free one, another if it was taken meanwhile.
  return await onFreePort(async (port) => await haproxyOn(children, dir, backends, port))
}

async function haproxyOn (children: Children, dir: string, backends: readonly string[], port: number): Promise<Server & { kind: string }> {
  const file = join(dir, 'haproxy.cfg')
  writeFileSync(file, `global
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend web
    bind 127.0.0.1:${port}
    default_backend sidecars
backend sidecars
    balance roundrobin
${backends.map((b, i) => `    server s${i} ${new URL(b).host}`).join('\n')}
`)
  return { ...await startConfigured(children, 'haproxy', HAPROXY as string, ['-f', file, '-db'], `http://127.0.0.1:${port}`), kind: 'HAProxy' }
}

export const NGINX = ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find((p) => existsSync(p))
/** nginx's temporary folders, all kept in the scratch prefix (the defaults are system paths). */
const TEMP_PATHS = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']

/**
 * nginx as users run it in front of an app: `proxy_pass` to an upstream block with keepalive
 * connections (HTTP/1.1, Connection cleared), no access log; one process, as one worker (each
 * Node proxy here is one event loop too). Its prefix (config, pid, error log, temp folders) is in `dir`.
 * Requests per kept-alive connection are not capped (nginx's default closes it after 1000),
 * as no Node proxy here caps them.
 */
export async function startNginx (children: Children, dir: string, upstream: string): Promise<Server> {
  if (NGINX === undefined) throw new Error('nginx is not installed (apt-get install nginx-light)')
  // nginx cannot report a port it picked: a free one, another if it was taken meanwhile.
  return await onFreePort(async (port) => await nginxOn(children, dir, upstream, port))
}

async function nginxOn (children: Children, dir: string, upstream: string, port: number): Promise<Server> {
  const prefix = join(dir, 'nginx')
  // nginx opens <prefix>/logs/error.log before it reads the config.
  mkdirSync(join(prefix, 'logs'), { recursive: true })
  const file = join(prefix, 'nginx.conf')
  // One process in the foreground (master_process off): the runner kills it by pid.
  writeFileSync(file, `daemon off;
master_process off;
error_log ${prefix}/logs/error.log warn;
pid ${prefix}/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
${TEMP_PATHS.map((t) => `    ${t}_temp_path ${prefix}/${t};`).join('\n')}
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream app {
        server ${new URL(upstream).host};
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:${port};
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`)
  return await startConfigured(children, 'nginx', NGINX as string, ['-c', file, '-p', prefix], `http://127.0.0.1:${port}`)
}

/** A server binary with a generated config: started, and ready once `url` answers (it fails early if the process exits). */
async function startConfigured (children: Children, what: string, command: string, args: readonly string[], url: string): Promise<Server> {
  const child = children.spawn(what, command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { output += c.toString() })
  await waitReady(child, what, async () => await fetch(`${url}/`).then(() => true, () => false), 10_000, () => output)
  return serverOf(child, url)
}
