/**
 * Node health: each node's listeners and ports (TLS, connections against
 * their caps), memory and heap, event-loop delay, store and Redis, version
 * and uptime, and alarms in words, refreshed every 5 s.
 */
import { api, attempt } from '../api.js';
import { bytes, duration, facts, h, table, view } from '../dom.js';
import { onLeave } from '../live.js';

interface Alarm {
  level: 'warning' | 'critical';
  about: string;
  text: string;
}
interface NodeHealth {
  node: string;
  version: string;
  runtime: string;
  pid: number;
  uptimeSeconds: number;
  listeners: { name: string; serves: string; host: string; port: number; tls: boolean; connections: number | null; max: number }[];
  sessions: number;
  memory: { rss: number; heapUsed: number; heapTotal: number; heapLimit: number; external: number };
  eventLoop: { meanMs: number | null; maxMs: number | null; sampledAt: string | null };
  store: { kind: string; reachable: boolean; pingMs: number | null; error?: string; sizeBytes?: number; maxBytes?: number };
  redis: { connected: boolean; dropped: number } | null;
  alarms: Alarm[];
}

const ms = (v: number | null): string => (v === null ? '–' : `${v.toFixed(1)} ms`);

function alarmList(alarms: Alarm[], none: string): HTMLElement {
  if (alarms.length === 0) return h('p', { class: 'ok-note' }, none);
  return h('ul', { class: 'alarms' }, ...alarms.map((a) => h('li', { class: `alarm-${a.level}` }, h('strong', {}, a.level === 'critical' ? 'Critical: ' : 'Warning: '), a.text)));
}

function card(n: NodeHealth, self: boolean): HTMLElement {
  const store = n.store;
  return h(
    'section',
    { class: 'card wide node', 'data-node': n.node },
    h('h2', {}, `${n.node}${self ? ' (this node)' : ''}`),
    alarmList(n.alarms, 'No alarms.'),
    facts([
      ['Version', `Herald ${n.version} on Node.js ${n.runtime} (pid ${n.pid})`],
      ['Up for', duration(n.uptimeSeconds)],
      ['Sessions', String(n.sessions)],
      ['Memory', `${bytes(n.memory.rss)} resident; heap ${bytes(n.memory.heapUsed)} used of ${bytes(n.memory.heapTotal)} (limit ${bytes(n.memory.heapLimit)}); ${bytes(n.memory.external)} outside the heap`],
      ['Event loop', n.eventLoop.sampledAt ? `mean delay ${ms(n.eventLoop.meanMs)}, worst ${ms(n.eventLoop.maxMs)} over the last sample interval` : 'not sampled yet'],
      [
        'Store',
        `${store.kind === 'sqlite' ? 'SQLite' : 'PostgreSQL'}: ${store.reachable ? `answers (${ms(store.pingMs)})` : `does not answer (${store.error ?? ''})`}` +
          (store.sizeBytes !== undefined ? `; file and WAL ${bytes(store.sizeBytes)}${store.maxBytes ? ` of ${bytes(store.maxBytes)} (sqliteMaxSizeMb)` : ', no size limit'}` : ''),
      ],
      ['Redis', n.redis === null ? 'not used (a single node)' : `${n.redis.connected ? 'connected' : 'not connected'}; ${n.redis.dropped} message${n.redis.dropped === 1 ? '' : 's'} dropped while it was away`],
    ]),
    h('h3', {}, 'Listeners'),
    table(
      ['Listener', 'Serves', 'Address', 'TLS', 'Connections'],
      n.listeners.map((l) => [
        l.name,
        l.serves,
        h('code', {}, `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`),
        l.tls ? 'yes' : 'no',
        l.connections === null ? 'not counted' : `${l.connections}${l.max ? ` of ${l.max}` : ' (no cap)'}`,
      ]),
      'No listener is bound.',
    ),
  );
}

export function renderNodes(): void {
  const cluster = h('div', { id: 'cluster-alarms' });
  const nodes = h('div', { id: 'nodes' });
  const load = async (): Promise<void> => {
    const r = await api<{ nodes: NodeHealth[]; alarms: Alarm[]; missing: string[] }>('GET', '/api/admin/nodes');
    cluster.replaceChildren(h('h2', {}, 'Cluster'), alarmList(r.alarms, 'No alarms for the cluster (webhooks, nodes).'));
    nodes.replaceChildren(...r.nodes.map((n, i) => card(n, i === 0)));
  };
  view.replaceChildren(h('h1', {}, 'Node health'), cluster, nodes);
  void attempt(load);
  const timer = window.setInterval(() => void attempt(load), 5000);
  onLeave(() => clearInterval(timer));
}
