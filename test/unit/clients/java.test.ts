import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fails, ROOT } from '../../helpers/apps.js'
import { HEADER_CASES } from '../../helpers/session-diffs.js'

// The Java filter (clients/java/SessionSidecarFilter.java) answers the same table as the other
// helpers: each case's session goes in as the sidecar sends it, the app leaves the new data,
// and the headers the filter would send come out. test/e2e/java-filter.test.ts runs it in Tomcat.

const JARS = ['/usr/share/tomcat10/lib/servlet-api.jar', ...['jackson-databind', 'jackson-core', 'jackson-annotations'].map((name) => `/usr/share/java/${name}.jar`)]

const RUNNER = `
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.*;
import sessionsidecar.SessionSidecarFilter;

public class Cases {
    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        ObjectMapper json = new ObjectMapper();
        List<Object> out = new ArrayList<>();
        for (Map<String, Object> c : (List<Map<String, Object>>) json.readValue(System.in, List.class)) {
            Map<String, String> headers = SessionSidecarFilter.sessionHeaders((Map<String, Object>) c.get("from"), (Map<String, Object>) c.get("to"),
                (Boolean) c.get("destroy"), (Boolean) c.get("regenerate"), (Boolean) c.get("unavailable"), "X-Session");
            Map<String, Object> decoded = new LinkedHashMap<>();
            for (Map.Entry<String, String> h : headers.entrySet()) {
                String name = h.getKey().toLowerCase(Locale.ROOT);
                boolean data = name.endsWith("-set") || name.endsWith("-merge");
                decoded.put(name, data ? json.readValue(Base64.getUrlDecoder().decode(h.getValue()), Object.class) : h.getValue());
            }
            out.add(decoded);
        }
        json.writeValue(System.out, out);
    }
}
`

const javac = fails('javac', ['-version'])
const why = javac ?? JARS.find((jar) => !existsSync(jar))
t.test('clients/java/SessionSidecarFilter.java', { skip: why === undefined ? false : `not installed here (.ci/run installs it): ${why}` }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-java-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'Cases.java'), RUNNER)
  const classpath = [...JARS, dir].join(':')
  const built = spawnSync('javac', ['-cp', classpath, '-d', dir, join(ROOT, 'clients', 'java', 'SessionSidecarFilter.java'), join(dir, 'Cases.java')], { encoding: 'utf8', timeout: 60_000 })
  t.equal(built.status, 0, `javac: ${built.stderr}`)
  const cases = HEADER_CASES.map(([, from, to, flags]) => ({ from, to, ...flags }))
  const run = spawnSync('java', ['-cp', classpath, 'Cases'], { input: JSON.stringify(cases), encoding: 'utf8', timeout: 30_000 })
  t.equal(run.status, 0, `java: ${run.stderr}`)
  const got = JSON.parse(run.stdout) as unknown[]
  HEADER_CASES.forEach(([name, , , , headers], i) => t.strictSame(got[i], headers, name))
})
