/** Overview: version, node, uptime, live charts of connections, message rates and store latency, and the nodes. */
import uPlot from 'uplot';
import { api, attempt } from '../api.js';
import { h, table, time, view } from '../dom.js';
import { onLeave } from '../live.js';

interface Overview {
  version: string;
  node: string;
  cluster: boolean;
  uptimeSeconds: number;
  connections: Record<string, number>;
  messagesIn: Record<string, number>;
  messagesOut: Record<string, number>;
  store: { kind: string; calls: number; seconds: number };
  nodes: { id: string; startedAt: number; connections: number; seenAt: number }[];
}

const total = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

function chart(title: string, series: string[], target: HTMLElement): { push(values: number[]): void } {
  const data: number[][] = [[], ...series.map(() => [])];
  const width = Math.max(280, Math.min(target.clientWidth || 600, 900));
  const colors = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c'];
  const plot = new uPlot(
    { title, width, height: 180, series: [{}, ...series.map((label, i) => ({ label, stroke: colors[i % colors.length]!, width: 2 }))], axes: [{}, { size: 60 }] },
    data as uPlot.AlignedData,
    target,
  );
  onLeave(() => plot.destroy());
  return {
    push(values) {
      data[0]!.push(Date.now() / 1000);
      values.forEach((v, i) => data[i + 1]!.push(v));
      if (data[0]!.length > 150) for (const d of data) d.shift();
      plot.setData(data as uPlot.AlignedData);
    },
  };
}

export function renderOverview(): void {
  const facts = h('dl', { class: 'facts' });
  const nodes = h('div');
  const connEl = h('div', { class: 'chart', id: 'chart-connections' });
  const rateEl = h('div', { class: 'chart', id: 'chart-rates' });
  const storeEl = h('div', { class: 'chart', id: 'chart-store' });
  view.replaceChildren(h('h1', {}, 'Overview'), facts, h('section', { class: 'charts' }, connEl, rateEl, storeEl), h('h2', {}, 'Nodes'), nodes);
  let protocols: string[] = [];
  let connChart: { push(v: number[]): void } | undefined;
  const rateChart = chart('Messages per second', ['in', 'out'], rateEl);
  const storeChart = chart('Store latency (ms, average)', ['store'], storeEl);
  let last: { at: number; o: Overview } | undefined;
  const tick = async (): Promise<void> => {
    const o = await api<Overview>('GET', '/api/admin/overview');
    const now = Date.now();
    const names = Object.keys(o.connections).sort();
    if (!connChart || names.join() !== protocols.join()) {
      protocols = names;
      connEl.replaceChildren();
      connChart = chart('Connections by protocol', names.length ? names : ['all protocols'], connEl);
    }
    connChart.push(names.length ? names.map((n) => o.connections[n] ?? 0) : [0]);
    if (!last) {
      // A first point at zero, so the rate charts have a line from the second poll on.
      rateChart.push([0, 0]);
      storeChart.push([0]);
    } else {
      const dt = (now - last.at) / 1000;
      rateChart.push([(total(o.messagesIn) - total(last.o.messagesIn)) / dt, (total(o.messagesOut) - total(last.o.messagesOut)) / dt]);
      const calls = o.store.calls - last.o.store.calls;
      storeChart.push([calls > 0 ? ((o.store.seconds - last.o.store.seconds) / calls) * 1000 : 0]);
    }
    last = { at: now, o };
    facts.replaceChildren(
      ...[
        ['Version', o.version],
        ['Node', o.node + (o.cluster ? ' (cluster)' : '')],
        ['Uptime', `${Math.floor(o.uptimeSeconds / 3600)} h ${Math.floor((o.uptimeSeconds % 3600) / 60)} min ${o.uptimeSeconds % 60} s`],
        ['Connections', String(total(o.connections))],
        ['Store', o.store.kind],
      ].flatMap(([k, v]) => [h('dt', {}, k!), h('dd', {}, v!)]),
    );
    nodes.replaceChildren(
      table(
        ['Node', 'Connections', 'Started', 'Last heartbeat'],
        o.nodes.map((n) => [n.id, String(n.connections), time(n.startedAt), time(n.seenAt)]),
        'No node has reported yet.',
      ),
    );
  };
  void attempt(tick);
  const timer = window.setInterval(() => void attempt(tick), 2000);
  onLeave(() => clearInterval(timer));
}
