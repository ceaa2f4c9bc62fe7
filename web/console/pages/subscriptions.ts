/**
 * Subscriptions: every live subscription on every node, grouped by what it
 * is to (a topic filter, a shared group, a queue, a mailbox), the most
 * subscribed first, with protocols, QoS and ack modes; open a group for its
 * sessions, each a link to its client page.
 */
import { api, attempt } from '../api.js';
import { field, formValues, h, table, view } from '../dom.js';
import { onLeave } from '../live.js';

interface Group {
  kind: string;
  key: string;
  group?: string;
  stomp?: string;
  subscribers: number;
  protocols: Record<string, number>;
  qos: number[];
  ack: string[];
  nodes: string[];
  sessions: { sessionId: string; user: string; protocol: string; destination: string; node: string; qos?: number; ack?: string }[];
}

const PROTOCOLS = ['stomp-ws', 'stomp-tcp', 'json-ws', 'mqtt-tcp', 'mqtt-ws'];
const KINDS: [string, string][] = [
  ['topic', 'topics'],
  ['shared', 'shared subscriptions'],
  ['queue', 'queues'],
  ['user', 'user mailboxes'],
];

export function renderSubscriptions(): void {
  const list = h('div', { id: 'subscriptions' });
  const form = h(
    'form',
    { class: 'toolbar', 'aria-label': 'Filter the subscriptions' },
    field('Filter, destination or user', h('input', { type: 'search', name: 'q', placeholder: 'sensors or /topic/a.*', autocomplete: 'off' })),
    field('Protocol', h('select', { name: 'protocol' }, h('option', { value: '' }, 'all'), ...PROTOCOLS.map((p) => h('option', { value: p }, p)))),
    field('Kind', h('select', { name: 'kind' }, h('option', { value: '' }, 'all'), ...KINDS.map(([v, t]) => h('option', { value: v }, t)))),
    h('button', { type: 'submit' }, 'Show'),
  ) as HTMLFormElement;
  /** Groups opened by the reader stay open across refreshes. */
  const opened = new Set<string>();

  const load = async (): Promise<void> => {
    const q = new URLSearchParams(Object.entries(formValues(form)).filter(([, v]) => v !== ''));
    const r = await api<{ groups: Group[]; total: number; subscriptions: number; missing: string[] }>('GET', `/api/admin/subscriptions?${q}`);
    list.replaceChildren(
      h('p', {}, `${r.subscriptions} subscription${r.subscriptions === 1 ? '' : 's'} to ${r.total} destination${r.total === 1 ? '' : 's'}${r.groups.length < r.total ? ` (the ${r.groups.length} most subscribed shown)` : ''}.`),
      ...(r.missing.length ? [h('p', { class: 'error' }, `Not counted: ${r.missing.join(', ')} did not answer in time.`)] : []),
      table(
        ['Subscribed to', 'Kind', 'Subscribers', 'Protocols', 'QoS', 'Ack', 'Nodes', 'Sessions'],
        r.groups.map((g) => {
          const id = `${g.kind} ${g.group ?? ''} ${g.key}`;
          const details = h(
            'details',
            { ...(opened.has(id) ? { open: true } : {}) },
            h('summary', {}, g.sessions.length < g.subscribers ? `the first ${g.sessions.length} of ${g.subscribers}` : `${g.subscribers} session${g.subscribers === 1 ? '' : 's'}`),
            h(
              'ul',
              { class: 'plain' },
              ...g.sessions.map((s) => h('li', {}, h('a', { href: `#clients/${encodeURIComponent(s.sessionId)}` }, s.user), ` · ${s.protocol} · `, h('code', {}, s.destination), g.nodes.length > 1 ? ` · ${s.node}` : '')),
            ),
          );
          details.addEventListener('toggle', () => ((details as HTMLDetailsElement).open ? opened.add(id) : opened.delete(id)));
          return [
            h('span', {}, h('code', {}, g.key), g.stomp ? h('span', { class: 'sub' }, `STOMP ${g.stomp}`) : null),
            g.group ? `shared (group ${g.group})` : g.kind,
            String(g.subscribers),
            Object.entries(g.protocols).map(([p, n]) => `${p} ${n}`).join(', '),
            g.qos.length ? g.qos.join(', ') : '–',
            g.ack.length ? g.ack.join(', ') : '–',
            g.nodes.join(', '),
            details,
          ];
        }),
        'No subscriptions match.',
      ),
    );
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void attempt(load);
  });
  view.replaceChildren(
    h('h1', {}, 'Subscriptions'),
    h('p', { class: 'note' }, 'Live subscriptions on every node, grouped by what they are to. A STOMP /topic/a.* and an MQTT a/+ are the same filter. Refreshed every 5 s.'),
    form,
    list,
  );
  void attempt(load);
  const timer = window.setInterval(() => void attempt(load), 5000);
  onLeave(() => clearInterval(timer));
}
