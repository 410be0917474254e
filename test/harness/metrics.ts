// Reading Prometheus text exposition in tests: one sample's value by metric name and labels.

/** The value of the first sample of `name` carrying every label in `labels`; undefined if none. */
export function metricSample(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!rest.startsWith('{') && !rest.startsWith(' ')) continue;
    if (!Object.entries(labels).every(([k, v]) => rest.includes(`${k}="${v}"`))) continue;
    return Number(line.split(' ').at(-1));
  }
  return undefined;
}
