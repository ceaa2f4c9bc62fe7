/**
 * Overview: version, node, uptime and connections now; charts of this
 * node's history (GET /api/admin/history: kept by the server, so a reload
 * keeps them) over 15 min, 1 h or 24 h, appended as new samples come; and
 * the cluster's nodes.
 */
import { api, attempt } from '../api.js';
import { timeChart, type ChartSeries, type TimeChart } from '../charts.js';
import { h, table, time, view } from '../dom.js';
import { onLeave } from '../live.js';

interface Overview {
  version: string;
  node: string;
  cluster: boolean;
  uptimeSeconds: number;
  connections: Record<string, number>;
  store: { kind: string };
  nodes: { id: string; startedAt: number; connections: number; seenAt: number }[];
}

interface History {
  node: string;
  cluster: boolean;
  range: Range;
  sampleSeconds: number;
  bucketSeconds: number;
  keptSeconds: number;
  series: (ChartSeries & { chart: string })[];
  t: number[];
  values: Record<string, (number | null)[]>;
}

type Range = '15m' | '1h' | '24h';
const RANGES: [Range, string, number][] = [
  ['15m', '15 min', 15 * 60_000],
  ['1h', '1 h', 3_600_000],
  ['24h', '24 h', 86_400_000],
];
const RANGE_KEY = 'herald.range';

/** The charts, in order, with their titles; each shows the history's series of that chart. */
const CHARTS: [string, string][] = [
  ['connections', 'Connections by protocol'],
  ['messages', 'Messages per second'],
  ['problems', 'Slow-consumer cuts and errors (per minute)'],
  ['store', 'Store latency (ms)'],
  ['loop', 'Event-loop delay (ms)'],
  ['memory', 'Memory (MiB)'],
];

const total = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

function uptime(s: number): string {
  const d = Math.floor(s / 86_400);
  return `${d ? d + ' d ' : ''}${Math.floor((s % 86_400) / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function renderOverview(): void {
  const facts = h('dl', { class: 'facts', id: 'facts' });
  const nodes = h('div', { id: 'nodes' });
  const note = h('p', { class: 'note', id: 'history-note' });
  const chartsEl = h('section', { class: 'charts', 'aria-label': 'History' });
  let range: Range = (sessionStorage.getItem(RANGE_KEY) as Range | null) ?? '1h';
  if (!RANGES.some(([r]) => r === range)) range = '1h';
  const rangeButtons = RANGES.map(([r, label]) =>
    h('button', { type: 'button', 'aria-pressed': String(r === range), onclick: () => void attempt(() => choose(r)) }, label),
  );
  view.replaceChildren(
    h('h1', {}, 'Overview'),
    facts,
    h('div', { class: 'toolbar' }, h('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' }, ...rangeButtons)),
    note,
    chartsEl,
    h('h2', {}, 'Nodes'),
    nodes,
  );

  let charts: { chart: TimeChart; keys: string[] }[] = [];
  let data: History | undefined;
  /** Builds the charts for the series the server keeps (once; again if they change). */
  const build = (series: History['series']): void => {
    chartsEl.replaceChildren();
    charts = CHARTS.filter(([id]) => series.some((s) => s.chart === id)).map(([id, title]) => {
      const mine = series.filter((s) => s.chart === id);
      const chart = timeChart('chart-' + id, title, mine);
      chartsEl.append(chart.element);
      return { chart, keys: mine.map((s) => s.key) };
    });
  };
  const draw = (): void => {
    if (!data) return;
    const span = RANGES.find(([r]) => r === range)![2];
    const to = Date.now();
    for (const { chart, keys } of charts) chart.setData(data.t, keys.map((k) => data!.values[k] ?? []), to - span, to);
    const kept = data.t.length ? `, from ${time(data.t[0]!)}` : ': none yet (the first sample comes one interval after the server starts)';
    note.textContent =
      `History of node ${data.node}${data.cluster ? ' (this node only: each node of the cluster keeps its own)' : ''}, sampled every ${data.sampleSeconds} s` +
      `${data.bucketSeconds !== data.sampleSeconds ? `, shown in ${data.bucketSeconds} s averages` : ''}; kept in memory for ${Math.round(data.keptSeconds / 3600)} h${kept}.`;
  };
  /** The whole range, from the server's history. */
  const load = async (): Promise<void> => {
    const fresh = await api<History>('GET', `/api/admin/history?range=${range}`);
    if (!data || fresh.series.map((s) => s.key).join() !== data.series.map((s) => s.key).join()) build(fresh.series);
    data = fresh;
    draw();
  };
  /** New points since the last one we have (whose bucket may have grown), dropping what fell out of the range. */
  const append = async (): Promise<void> => {
    if (!data || data.t.length === 0) return load();
    const since = data.t[data.t.length - 1]!;
    const more = await api<History>('GET', `/api/admin/history?range=${range}&since=${since}`);
    if (more.series.map((s) => s.key).join() !== data.series.map((s) => s.key).join()) return load();
    const span = RANGES.find(([r]) => r === range)![2];
    const from = Date.now() - span;
    const keep = data.t.map((t, i) => (t < since && t >= from ? i : -1)).filter((i) => i >= 0);
    const d = data;
    data = {
      ...more,
      t: [...keep.map((i) => d.t[i]!), ...more.t],
      values: Object.fromEntries(more.series.map((s) => [s.key, [...keep.map((i) => d.values[s.key]![i] ?? null), ...more.values[s.key]!]])),
    };
    draw();
  };
  const choose = async (r: Range): Promise<void> => {
    range = r;
    sessionStorage.setItem(RANGE_KEY, r);
    rangeButtons.forEach((b, i) => b.setAttribute('aria-pressed', String(RANGES[i]![0] === r)));
    await load();
  };

  const now = async (): Promise<void> => {
    const o = await api<Overview>('GET', '/api/admin/overview');
    const byProtocol = Object.entries(o.connections)
      .filter(([, n]) => n > 0)
      .map(([p, n]) => `${p} ${n}`)
      .join(', ');
    facts.replaceChildren(
      ...[
        ['Version', o.version],
        ['Node', o.node + (o.cluster ? ` (one of ${o.nodes.length} in the cluster)` : '')],
        ['Uptime', uptime(o.uptimeSeconds)],
        ['Connections', `${total(o.connections)}${byProtocol ? ` (${byProtocol})` : ''}`],
        ['Store', o.store.kind],
      ].flatMap(([k, v]) => [h('dt', {}, k!), h('dd', {}, v!)]),
    );
    nodes.replaceChildren(
      table(
        ['Node', 'Connections', 'Started', 'Last heartbeat'],
        o.nodes.map((n) => [n.id + (n.id === o.node ? ' (this node)' : ''), String(n.connections), time(n.startedAt), time(n.seenAt)]),
        'No node has reported yet.',
      ),
    );
  };

  void attempt(now);
  void attempt(load);
  const factsTimer = window.setInterval(() => void attempt(now), 5000);
  // New samples come every sampleSeconds; asking a little more often than that keeps the charts current.
  let chartTimer = 0;
  let left = false;
  const schedule = (): void => {
    if (left) return;
    chartTimer = window.setTimeout(() => void attempt(append).finally(schedule), Math.max(2000, Math.min(10_000, ((data?.sampleSeconds ?? 10) * 1000) / 2)));
  };
  schedule();
  onLeave(() => ((left = true), clearInterval(factsTimer), clearTimeout(chartTimer)));
}
