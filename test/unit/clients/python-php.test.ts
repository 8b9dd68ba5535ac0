import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { fails, PYTHON, ROOT } from '../../helpers/apps.js'
import { HEADER_CASES, type Flags } from '../../helpers/session-diffs.js'

// The Python and PHP helpers (clients/) answer the same table as the express middleware:
// each case's session goes in as the sidecar sends it (X-Session), the script leaves the new
// data in the framework's own idiom (a dict; $_SESSION, JSON objects as PHP arrays), and the
// headers it would send come out.

type Case = { from: unknown, to: unknown } & Flags

const CASES: Case[] = HEADER_CASES.map(([, from, to, flags]) => ({ from, to, ...flags }))

const PYTHON_SCRIPT = `
import base64, json, sys
sys.path.insert(0, sys.argv[1])
from session_sidecar import Session
b64 = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).decode().rstrip("=")
unb64 = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
out = []
for c in json.load(sys.stdin):
    s = Session(b64(c["from"]), "k" * 22, c["unavailable"])
    s.clear()
    s.update(c["to"])
    if c["destroy"]: s.destroy()
    if c["regenerate"]: s.regenerate()
    out.append({n.lower(): unb64(v) if n.endswith(("-Set", "-Merge")) else v for n, v in s.response_headers()})
print(json.dumps(out))
`

const PHP_SCRIPT = `
require $argv[1] . '/SessionSidecar.php';
$b64 = fn ($v) => rtrim(strtr(base64_encode(json_encode($v)), '+/', '-_'), '=');
$out = [];
foreach (json_decode(stream_get_contents(STDIN)) as $c) {
    $_SERVER['HTTP_X_SESSION'] = $b64($c->from);
    $_SERVER['HTTP_X_SESSION_UNAVAILABLE'] = $c->unavailable ? '1' : '';
    SessionSidecar::start();
    $_SESSION = json_decode(json_encode($c->to), true);
    if ($c->destroy) SessionSidecar::destroy();
    if ($c->regenerate) SessionSidecar::regenerate();
    $headers = new stdClass();
    foreach (SessionSidecar::headers() as $n => $v) {
        $headers->{strtolower($n)} = str_ends_with($n, '-Set') || str_ends_with($n, '-Merge') ? json_decode(base64_decode(strtr($v, '-_', '+/'))) : $v;
    }
    $out[] = $headers;
}
echo json_encode($out);
`

function run (command: string, args: string[]): unknown[] {
  const r = spawnSync(command, args, { input: JSON.stringify(CASES), encoding: 'utf8', timeout: 30_000 })
  if (r.status !== 0) throw new Error(`${command} exited ${String(r.status)}: ${r.stderr}${r.error?.message ?? ''}`)
  return JSON.parse(r.stdout) as unknown[]
}

// Where PHP cannot tell what the script meant: an empty array it added is sent as [].
const PHP_READS: Record<string, Record<string, unknown>> = {
  'an empty object added': { 'x-session-merge': { a: [] } }
}

const pythonMissing = fails(PYTHON, ['-c', 'import json'])
t.test('clients/python/session_sidecar.py', { skip: pythonMissing === undefined ? false : `no ${PYTHON}: ${pythonMissing}` }, async (t) => {
  const got = run(PYTHON, ['-B', '-c', PYTHON_SCRIPT, join(ROOT, 'clients', 'python')])
  HEADER_CASES.forEach(([name, , , , headers], i) => t.strictSame(got[i], headers, name))
})

const phpMissing = fails('php', ['-v'])
t.test('clients/php/SessionSidecar.php', { skip: phpMissing === undefined ? false : `no php: ${phpMissing}` }, async (t) => {
  const got = run('php', ['-r', PHP_SCRIPT, join(ROOT, 'clients', 'php')])
  HEADER_CASES.forEach(([name, , , , headers], i) => t.strictSame(got[i], PHP_READS[name] ?? headers, name))
  t.equal(JSON.stringify(got[HEADER_CASES.findIndex(([name]) => name.startsWith('an emptied session'))]), '{"x-session-set":{},"x-session-regenerate":"1"}', 'an empty session is sent as {}, never []')
})

t.test('the PHP helper names a $_SESSION member that holds bytes JSON cannot carry', { skip: phpMissing === undefined ? false : `no php: ${phpMissing}` }, async (t) => {
  const script = `
require $argv[1] . '/SessionSidecar.php';
$_SERVER['HTTP_X_SESSION'] = 'e30';
SessionSidecar::start();
$_SESSION['user'] = ['name' => 'ann', 'csrf' => "\\xff\\xfe" . 'abc'];
SessionSidecar::headers();
`
  const r = spawnSync('php', ['-d', 'display_errors=stderr', '-r', script, join(ROOT, 'clients', 'php')], { encoding: 'utf8', timeout: 30_000 })
  t.not(r.status, 0, 'the script fails: no session header is sent that would change the data')
  t.match(r.stderr, /Uncaught UnexpectedValueException: SessionSidecar: \$_SESSION\['user'\]\['csrf'\] is not UTF-8 text/, 'the first error line names the member')
  t.match(r.stderr, /bin2hex\(\) or base64_encode\(\)/, 'and says what to store instead')
})

t.test('the PHP helper sends a $_SESSION that became a list as an object, its indexes as member names', { skip: phpMissing === undefined ? false : `no php: ${phpMissing}` }, async (t) => {
  const script = `
require $argv[1] . '/SessionSidecar.php';
foreach (['e30' => fn () => $_SESSION[0] = 'first', 'eyJ1IjoxfQ' => fn () => $_SESSION = ['a', 'b']] as $from => $change) {
  $_SERVER['HTTP_X_SESSION'] = $from;
  SessionSidecar::start();
  $change();
  $headers = SessionSidecar::headers();
  echo json_encode(array_map(fn ($v) => json_decode(base64_decode(strtr($v, '-_', '+/'))), $headers)), "\\n";
}
`
  const r = spawnSync('php', ['-d', 'display_errors=stderr', '-r', script, join(ROOT, 'clients', 'php')], { encoding: 'utf8', timeout: 30_000 })
  t.equal(r.status, 0, r.stderr)
  const [first, replaced] = r.stdout.trim().split('\n').map((line) => JSON.parse(line) as unknown)
  t.same(first, { 'X-Session-Merge': { 0: 'first' } }, '$_SESSION[0] = ... on an empty session is the member "0"')
  t.same(replaced, { 'X-Session-Merge': { u: null, 0: 'a', 1: 'b' } }, 'a session replaced by a list: the old member removed, the indexes added')
})
