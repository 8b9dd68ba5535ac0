/**
 * The sum of every sample of a Prometheus counter or gauge (all label sets) on an admin
 * listener's /metrics, or of those samples whose labels include `labels`.
 */
export async function metricValue (adminUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`${adminUrl}/metrics`)
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`)
  const text = await res.text()
  let sum = 0
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const labelText = m[2] ?? ''
    if (!Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) continue
    sum += Number(m[3])
  }
  return sum
}
