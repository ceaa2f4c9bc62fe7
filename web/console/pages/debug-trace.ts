/**
 * A trace of a topic filter: each message that passes, with its publisher
 * (user, protocol, session) and its receivers, on every node of a cluster
 * (reported to the node the console talks to) or this node alone; capped
 * at a number of events a second, the rest counted as skipped. The trace
 * closes when the page is left (or, unread, after a minute by itself).
 */
import { api, attempt } from '../api.js';
import { field, formValues, h, showError, table } from '../dom.js';
import { onLeave } from '../live.js';

interface Party {
  sessionId: string;
  user: string;
  protocol: string;
}
interface TraceEvent {
  seq: number;
  at: number;
  node: string;
  messageId: string;
  topic: string;
  origin: 'published' | 'received';
  publisher: Party | null;
  receivers: Party[];
  receiverCount: number;
  qos: number;
  retain: boolean;
  bytes: number;
  contentType: string | null;
  preview: string;
}
interface Spec {
  id: string;
  filter: string;
  maxPerSecond: number;
  node: string;
  scope: 'cluster' | 'node';
}

/** One message as traced on every node: the events of one messageId together. */
interface Passage {
  first: TraceEvent;
  publisher: Party | null;
  receivers: (Party & { node: string })[];
  count: number;
  nodes: string[];
}

const MAX_ROWS = 200;
const party = (p: Party): string => (p.protocol ? `${p.user} · ${p.protocol} · ${p.sessionId}` : `${p.user || 'a shared group'} · ${p.sessionId}`);

export function tracePanel(): HTMLElement {
  const state = h('p', { id: 'trace-state' }, 'No trace is running.');
  const rows = h('div', { id: 'trace-events' });
  const passages = new Map<string, Passage>();
  let spec: Spec | undefined;
  let after = 0;
  let skipped = 0;
  let timer: number | undefined;

  const draw = (): void => {
    const list = [...passages.values()].reverse();
    state.textContent = spec
      ? `Tracing ${spec.filter} ${spec.scope === 'cluster' ? `on every node, reported to ${spec.node}` : `on this node (${spec.node})`}, at most ${spec.maxPerSecond} events a second per node: ${passages.size} message${passages.size === 1 ? '' : 's'} seen, ${skipped} skipped over the cap.`
      : state.textContent;
    rows.replaceChildren(
      table(
        ['Time', 'Topic', 'Publisher', 'Receivers', 'Payload', 'Nodes'],
        list.map((p) => [
          new Date(p.first.at).toLocaleTimeString(),
          h('span', {}, h('code', {}, p.first.topic), h('span', { class: 'sub' }, `QoS ${p.first.qos}${p.first.retain ? ', retain' : ''}`)),
          p.publisher ? party(p.publisher) : h('span', { class: 'sub' }, 'no session (the HTTP API or the server)'),
          h('span', {}, `${p.count} session${p.count === 1 ? '' : 's'}`, ...p.receivers.map((r) => h('span', { class: 'sub' }, party(r)))),
          h('span', {}, p.first.preview, h('span', { class: 'sub' }, `${p.first.bytes} bytes${p.first.contentType ? `, ${p.first.contentType}` : ''}`)),
          p.nodes.join(', '),
        ]),
        'Nothing has passed yet.',
      ),
    );
  };

  const poll = async (): Promise<void> => {
    if (!spec) return;
    const r = await api<Spec & { events: TraceEvent[]; skipped: number }>('GET', `/api/admin/traces/${spec.id}?after=${after}`);
    skipped = r.skipped;
    for (const e of r.events) {
      after = Math.max(after, e.seq);
      let p = passages.get(e.messageId);
      if (!p) passages.set(e.messageId, (p = { first: e, publisher: null, receivers: [], count: 0, nodes: [] }));
      if (e.publisher) p.publisher = e.publisher;
      p.count += e.receiverCount;
      p.receivers.push(...e.receivers.map((x) => ({ ...x, node: e.node })));
      if (!p.nodes.includes(e.node)) p.nodes.push(e.node);
    }
    while (passages.size > MAX_ROWS) passages.delete(passages.keys().next().value!);
    draw();
  };

  const stop = async (): Promise<void> => {
    clearInterval(timer);
    const was = spec;
    spec = undefined;
    startButton.hidden = false;
    stopButton.hidden = true;
    if (was) {
      state.textContent = `Stopped tracing ${was.filter}.`;
      await api('DELETE', `/api/admin/traces/${was.id}`).catch(() => undefined);
    }
  };

  const form = h(
    'form',
    { class: 'toolbar', 'aria-label': 'Trace' },
    field('Topic filter to trace', h('input', { name: 'filter', value: '#', required: true, placeholder: 'a/+/c or /topic/a.*.c' })),
    field('Most events a second', h('input', { name: 'maxPerSecond', type: 'number', min: '1', max: '100', value: '20' })),
  ) as HTMLFormElement;
  const startButton = h('button', { type: 'submit' }, 'Start trace');
  const stopButton = h('button', { type: 'button', class: 'secondary', hidden: true, onclick: () => void stop() }, 'Stop trace');
  form.append(startButton, stopButton);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(form);
    void attempt(async () => {
      await stop();
      spec = await api<Spec>('POST', '/api/admin/traces', { filter: v['filter'], maxPerSecond: Number(v['maxPerSecond'] || 20) });
      passages.clear();
      after = 0;
      skipped = 0;
      startButton.hidden = true;
      stopButton.hidden = false;
      draw();
      timer = window.setInterval(() => void poll().catch((err: Error) => (showError(err.message), void stop())), 1000);
    });
  });
  onLeave(() => void stop());
  return h(
    'section',
    { id: 'debug-trace', 'aria-label': 'Trace' },
    h('p', { class: 'note' }, 'Each message published to a topic the filter matches, as it passes: who published it and which sessions got it. Admins only; the payload’s start is shown.'),
    form,
    state,
    rows,
  );
}
