/**
 * Retained MQTT messages: browse by topic filter, view one (its payload as
 * text or hex, QoS, properties), delete it (after asking) on every node.
 */
import { api, attempt } from '../api.js';
import { bytes, confirmed, facts, field, formValues, h, segmented, showInfo, table, time, view } from '../dom.js';

interface Retained {
  topic: string;
  qos: number;
  bytes: number;
  text: string | null;
  hex: string;
  contentType: string | null;
  payloadFormat: number | null;
  userProperties: [string, string][];
  responseTopic: string | null;
  correlationData: string | null;
  expiresAt: string | null;
  setAt: string;
  volatile: boolean;
}

/** Hex in groups of two, 16 bytes a line. */
function hexLines(hex: string): string {
  const pairs = hex.match(/../g) ?? [];
  const lines: string[] = [];
  for (let i = 0; i < pairs.length; i += 16) lines.push(pairs.slice(i, i + 16).join(' '));
  return lines.join('\n');
}

export function renderRetained(): void {
  const list = h('div', { id: 'retained' });
  const detail = h('div', { id: 'retained-detail', 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'toolbar', 'aria-label': 'Find retained messages' },
    field('Topic filter', h('input', { name: 'filter', value: '#', required: true, autocomplete: 'off' })),
    h('button', { type: 'submit' }, 'Show'),
  ) as HTMLFormElement;

  const show = async (topic: string): Promise<void> => {
    const m = await api<Retained>('GET', `/api/admin/retained/message?topic=${encodeURIComponent(topic)}`);
    const payload = h('pre', { class: 'payload', id: 'retained-payload' }, m.text ?? hexLines(m.hex));
    detail.replaceChildren(
      h('section', { class: 'card wide' },
        h('h2', {}, `Retained on ${m.topic}`),
        facts([
          ['QoS', String(m.qos)],
          ['Size', bytes(m.bytes)],
          ['Retained at', time(m.setAt)],
          ['Content type', m.contentType ?? '–'],
          ['Payload format', m.payloadFormat === 1 ? 'UTF-8 text (declared)' : m.payloadFormat === 0 ? 'bytes (declared)' : '–'],
          ['Response topic', m.responseTopic ?? '–'],
          ['Correlation data', m.correlationData ? h('code', {}, hexLines(m.correlationData)) : '–'],
          ['Expires', m.expiresAt ? time(m.expiresAt) : 'never'],
          ['User properties', m.userProperties.length ? m.userProperties.map(([k, v]) => `${k}=${v}`).join(', ') : '–'],
        ]),
        m.text === null
          ? h('p', { class: 'note' }, 'The payload is not UTF-8 text: shown in hex.')
          : segmented('Show the payload as', [['text', 'Text'], ['hex', 'Hex']], 'text', (v) => (payload.textContent = v === 'text' ? m.text! : hexLines(m.hex))),
        payload,
      ),
    );
  };

  const remove = async (m: Retained): Promise<void> => {
    if (!(await confirmed(`Delete the retained message on ${m.topic}?`, { action: 'Delete', danger: true, detail: 'On every node and in the store, as an empty retained publish would: new subscribers no longer get it.' }))) return;
    await api('DELETE', `/api/admin/retained/message?topic=${encodeURIComponent(m.topic)}`);
    showInfo(`Deleted the retained message on ${m.topic}.`);
    detail.replaceChildren();
    await load();
  };

  const load = async (): Promise<void> => {
    const filter = formValues(form)['filter'] || '#';
    const r = await api<{ messages: Retained[]; more: boolean }>('GET', `/api/admin/retained?filter=${encodeURIComponent(filter)}`);
    list.replaceChildren(
      h('p', {}, `${r.messages.length}${r.more ? '+' : ''} retained message${r.messages.length === 1 && !r.more ? ' matches' : 's match'} ${filter}${r.more ? ' (the first shown; narrow the filter)' : ''}.`),
      table(
        ['Topic', 'QoS', 'Size', 'Payload', 'Retained at', 'Actions'],
        r.messages.map((m) => [
          h('code', {}, m.topic),
          String(m.qos),
          bytes(m.bytes),
          m.text !== null ? m.text.slice(0, 120) : h('span', { class: 'sub' }, `hex ${m.hex.slice(0, 48)}`),
          time(m.setAt),
          h(
            'span',
            { class: 'actions' },
            h('button', { type: 'button', class: 'secondary', onclick: () => void attempt(() => show(m.topic)) }, 'View'),
            m.volatile ? h('span', { class: 'sub' }, 'written by the server') : h('button', { type: 'button', class: 'danger', onclick: () => void attempt(() => remove(m)) }, 'Delete'),
          ),
        ]),
        'Nothing retained matches.',
      ),
    );
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void attempt(load);
  });
  view.replaceChildren(
    h('h1', {}, 'Retained messages'),
    h('p', { class: 'note' }, 'The last message published with retain on each MQTT topic, which every new subscriber gets first. # does not match the server’s $SYS topics: ask for $SYS/# to see them.'),
    form,
    list,
    detail,
  );
  void attempt(load);
}
