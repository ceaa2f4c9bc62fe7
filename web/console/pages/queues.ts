/**
 * Queues and mailboxes: point-to-point queues (depth, waiting and claimed,
 * consumers, in flight, the oldest's age), persistent MQTT sessions'
 * stored messages, and user mailboxes (undelivered, parked, subscribers);
 * open one for its held and unacknowledged messages.
 */
import { api, attempt } from '../api.js';
import { ago, bytes, h, table, time, view } from '../dom.js';
import { onLeave } from '../live.js';

interface Queue {
  name: string;
  messages: number;
  claimed: number;
  waiting: number;
  redelivered: number;
  oldestAt: string | null;
  bytes: number;
  consumers: number;
  ready: number;
  inflight: number;
  nodes: string[];
}
interface MqttSession {
  clientId: string;
  messages: number;
  sent: number;
  held: number;
  oldestAt: string | null;
  bytes: number;
  connected: boolean;
  node: string | null;
}
interface Mailbox {
  userId: string;
  user: string;
  name: string;
  pending: number;
  oldestAt: string | null;
  subscribers: number;
  parked: number;
}
interface Message {
  id: string;
  createdAt: string;
  state?: string;
  claimedBy?: string | null;
  redelivered?: boolean;
  topic?: string;
  qos?: number;
  title?: string;
  sender?: string;
  bytes: number;
  text: string | null;
  hex?: string;
}

const STATE: Record<string, string> = {
  waiting: 'waiting for a consumer',
  claimed: 'claimed: held by a node or unacknowledged',
  held: 'held: not sent yet',
  unacknowledged: 'sent, unacknowledged',
  released: 'QoS 2: awaiting PUBCOMP',
};

export function renderQueues(): void {
  const queues = h('div', { id: 'queues' });
  const sessions = h('div', { id: 'mqtt-sessions' });
  const mailboxes = h('div', { id: 'mailboxes' });
  const detail = h('div', { id: 'queue-detail', 'aria-live': 'polite' });

  const open = async (title: string, path: string, key: 'messages'): Promise<void> => {
    const r = await api<Record<typeof key, Message[]>>('GET', path);
    const rows = r[key];
    detail.replaceChildren(
      h(
        'section',
        { class: 'card wide' },
        h('h2', {}, title),
        table(
          ['Id', 'Since', 'State', 'Topic or title', 'Size', 'Payload'],
          rows.map((m) => [
            m.id,
            `${time(m.createdAt)} (${ago(m.createdAt)} ago)`,
            m.state ? `${STATE[m.state] ?? m.state}${m.claimedBy ? ` (${m.claimedBy})` : ''}${m.redelivered ? ', redelivered' : ''}` : 'undelivered',
            m.topic ? `${m.topic} (QoS ${m.qos ?? 0})` : (m.title ?? '–'),
            bytes(m.bytes),
            m.text ?? h('span', { class: 'sub' }, `hex ${m.hex ?? ''}`.slice(0, 60)),
          ]),
          'No messages.',
        ),
      ),
    );
    detail.scrollIntoView({ block: 'nearest' });
  };
  const button = (label: string, run: () => Promise<void>): HTMLElement => h('button', { type: 'button', class: 'secondary', onclick: () => void attempt(run) }, label);

  const load = async (): Promise<void> => {
    const r = await api<{ queues: Queue[]; mqttSessions: MqttSession[]; mailboxes: Mailbox[]; missing: string[] }>('GET', '/api/admin/queues');
    queues.replaceChildren(
      ...(r.missing.length ? [h('p', { class: 'error' }, `Live figures missing from ${r.missing.join(', ')}: no answer in time.`)] : []),
      table(
        ['Queue', 'Messages', 'Waiting', 'Claimed', 'In flight', 'Consumers', 'Oldest', 'Size', 'Nodes', 'Actions'],
        r.queues.map((q) => [
          h('code', {}, `/queue/${q.name}`),
          String(q.messages),
          String(q.waiting),
          `${q.claimed}${q.redelivered ? ` (${q.redelivered} redelivered)` : ''}`,
          String(q.inflight),
          String(q.consumers),
          q.oldestAt ? ago(q.oldestAt) : '–',
          bytes(q.bytes),
          q.nodes.join(', ') || '–',
          button('Messages', () => open(`Messages on /queue/${q.name}`, `/api/admin/queues/${encodeURIComponent(q.name)}/messages`, 'messages')),
        ]),
        'No queue holds messages or has consumers.',
      ),
    );
    sessions.replaceChildren(
      table(
        ['Client id', 'Messages', 'Held', 'Unacknowledged', 'Oldest', 'Size', 'Connected', 'Node', 'Actions'],
        r.mqttSessions.map((s) => [
          h('code', {}, s.clientId),
          String(s.messages),
          String(s.held),
          String(s.sent),
          s.oldestAt ? ago(s.oldestAt) : '–',
          bytes(s.bytes),
          s.connected ? 'yes' : 'no',
          s.node ?? '–',
          button('Messages', () => open(`Messages stored for ${s.clientId}`, `/api/admin/mqtt-sessions/${encodeURIComponent(s.clientId)}/messages`, 'messages')),
        ]),
        'No persistent MQTT session has messages waiting.',
      ),
    );
    mailboxes.replaceChildren(
      table(
        ['User', 'Mailbox', 'Undelivered', 'Parked', 'Subscribers', 'Oldest', 'Actions'],
        r.mailboxes.map((m) => [
          m.user,
          h('code', {}, m.name === 'messages' ? 'messages (the message service)' : `/user/queue/${m.name}`),
          String(m.pending),
          String(m.parked),
          String(m.subscribers),
          m.oldestAt ? ago(m.oldestAt) : '–',
          m.pending > 0 ? button('Messages', () => open(`Undelivered messages of ${m.user}`, `/api/admin/mailboxes/${encodeURIComponent(m.userId)}/messages`, 'messages')) : '',
        ]),
        'No mailbox has subscribers or waiting messages.',
      ),
    );
  };
  view.replaceChildren(
    h('h1', {}, 'Queues and mailboxes'),
    h('p', { class: 'note' }, 'Stored figures come from the store; consumers, in-flight and parked counts from every node. Refreshed every 5 s.'),
    h('h2', {}, 'Queues (/queue/…)'),
    queues,
    h('h2', {}, 'Persistent MQTT sessions'),
    sessions,
    h('h2', {}, 'User mailboxes'),
    mailboxes,
    detail,
  );
  void attempt(load);
  const timer = window.setInterval(() => void attempt(load), 5000);
  onLeave(() => clearInterval(timer));
}
