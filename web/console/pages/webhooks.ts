/**
 * Webhooks: those configured, the outbox's backlog per webhook, the dead
 * list (events that failed their last attempt) with replay, one or all,
 * and the latest deliveries.
 */
import { api, attempt } from '../api.js';
import { ago, confirmed, h, showInfo, table, time, view } from '../dom.js';
import { onLeave } from '../live.js';

interface Overview {
  webhooks: { name: string; url: string; events: string[]; topics?: string[] }[];
  backlog: { webhook: string; pending: number; dead: number; oldestPendingAt: string | null; configured: boolean }[];
}
interface Row {
  id: string;
  eventId: string;
  webhook: string;
  type: string;
  state: string;
  attempts: number;
  createdAt: string;
  nextAttemptAt: string | null;
  finishedAt: string | null;
  lastStatus: number | null;
  lastError: string | null;
}

export function renderWebhooks(): void {
  const configured = h('div', { id: 'webhooks' });
  const backlog = h('div', { id: 'webhook-backlog' });
  const dead = h('div', { id: 'webhook-dead' });
  const delivered = h('div', { id: 'webhook-delivered' });

  const replay = async (ids: string[] | 'all'): Promise<void> => {
    const what = ids === 'all' ? 'every dead event' : `dead event ${ids.join(', ')}`;
    if (!(await confirmed(`Send ${what} again?`, { action: 'Replay', detail: 'Each goes back to the outbox with the same event id and body, its attempts counted from 0; the receiver may see it twice if it had it already (dedupe on Herald-Event-Id).' }))) return;
    const r = await api<{ replayed: number }>('POST', ids === 'all' ? '/api/admin/webhooks/dead/replay' : `/api/admin/webhooks/dead/${encodeURIComponent(ids[0]!)}/replay`, ids === 'all' ? { all: true } : undefined);
    showInfo(`${r.replayed} event${r.replayed === 1 ? '' : 's'} put back in the outbox.`);
    await load();
  };

  const load = async (): Promise<void> => {
    const [o, deadRows, recent] = await Promise.all([
      api<Overview>('GET', '/api/admin/webhooks'),
      api<Row[]>('GET', '/api/admin/webhooks/dead?limit=100'),
      api<Row[]>('GET', '/api/admin/webhooks/deliveries?state=delivered&limit=20'),
    ]);
    configured.replaceChildren(
      o.webhooks.length === 0
        ? h('p', { class: 'empty' }, 'No webhook is configured (the webhooks key; see docs/backend-integration.md).')
        : table(['Name', 'URL', 'Events', 'Topics'], o.webhooks.map((w) => [w.name, h('code', {}, w.url), w.events.join(', '), w.topics?.join(', ') ?? '–']), ''),
    );
    backlog.replaceChildren(
      table(
        ['Webhook', 'Waiting', 'Dead', 'Oldest waiting', 'Configured'],
        o.backlog.map((b) => [b.webhook, String(b.pending), String(b.dead), b.oldestPendingAt ? `${ago(b.oldestPendingAt)} ago` : '–', b.configured ? 'yes' : 'no (left from an earlier configuration)']),
        'The outbox is empty: nothing waits, nothing is dead.',
      ),
    );
    dead.replaceChildren(
      ...(deadRows.length ? [h('div', { class: 'toolbar' }, h('button', { type: 'button', onclick: () => void attempt(() => replay('all')) }, 'Replay all'))] : []),
      table(
        ['Id', 'Webhook', 'Event', 'Attempts', 'Last answer', 'Given up', 'Actions'],
        deadRows.map((r) => [
          r.id,
          r.webhook,
          h('span', {}, r.type, h('span', { class: 'sub' }, r.eventId)),
          String(r.attempts),
          r.lastStatus !== null ? `HTTP ${r.lastStatus}${r.lastError ? `: ${r.lastError}` : ''}` : (r.lastError ?? '–'),
          r.finishedAt ? time(r.finishedAt) : '–',
          h('button', { type: 'button', class: 'secondary', onclick: () => void attempt(() => replay([r.id])) }, 'Replay'),
        ]),
        'The dead list is empty.',
      ),
    );
    delivered.replaceChildren(
      table(
        ['Id', 'Webhook', 'Event', 'Attempts', 'Answer', 'Delivered'],
        recent.map((r) => [r.id, r.webhook, r.type, String(r.attempts), r.lastStatus !== null ? `HTTP ${r.lastStatus}` : '–', r.finishedAt ? time(r.finishedAt) : '–']),
        'Nothing delivered recently.',
      ),
    );
  };
  view.replaceChildren(
    h('h1', {}, 'Webhooks'),
    h('h2', {}, 'Configured'),
    configured,
    h('h2', {}, 'Backlog'),
    backlog,
    h('h2', {}, 'Dead list'),
    h('p', { class: 'note' }, 'Events whose last attempt failed (webhookMaxAttempts). Replay them once the receiver works again.'),
    dead,
    h('h2', {}, 'Latest deliveries'),
    delivered,
  );
  void attempt(load);
  const timer = window.setInterval(() => void attempt(load), 5000);
  onLeave(() => clearInterval(timer));
}
