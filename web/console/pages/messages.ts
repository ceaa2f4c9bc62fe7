/** Messages: the message service's records with their receivers' status, a page at a time; send and delete. */
import { api, attempt } from '../api.js';
import { confirmed, field, formValues, h, pager, showInfo, table, time, view } from '../dom.js';

const PAGE_SIZE = 25;

interface MessageRow {
  id: string;
  title: string;
  content: string;
  type: string;
  sender: string;
  createdAt: string;
  receivers: { receiver: string; receiverName?: string; status: string }[];
}

export function renderMessages(): void {
  const filters = h(
    'form',
    { class: 'toolbar', 'aria-label': 'Filter messages' },
    field('Status', h('select', { name: 'status' }, h('option', { value: '' }, 'any'), ...['PENDING', 'DELIVERED', 'READ'].map((s) => h('option', { value: s }, s)))),
    field('Sender', h('input', { name: 'sender' })),
    field('Receiver id', h('input', { name: 'receiver' })),
    field('Type', h('input', { name: 'type' })),
    h('button', { type: 'submit' }, 'Search'),
  ) as HTMLFormElement;
  const list = h('div', { id: 'messages' });
  let page = 1;
  const load = async (): Promise<void> => {
    const params = new URLSearchParams({ page: String(page), size: String(PAGE_SIZE) });
    for (const [k, v] of Object.entries(formValues(filters))) if (v) params.set(k, v);
    const result = await api<{ records: MessageRow[]; total: number; pages: number }>('GET', `/api/message/getMessagePage?${params}`);
    // The last page emptied (its messages deleted): show the one before.
    if (result.records.length === 0 && page > 1 && result.pages > 0) {
      page = result.pages;
      return load();
    }
    list.replaceChildren(
      table(
        ['Id', 'Title', 'Type', 'Sender', 'Sent', 'Receivers', ''],
        result.records.map((m) => [
          m.id,
          m.title,
          m.type,
          m.sender,
          time(m.createdAt),
          h('ul', { class: 'receipts' }, ...m.receivers.map((r) => h('li', {}, `${r.receiverName ?? r.receiver}: `, h('span', { class: 'status-' + r.status.toLowerCase() }, r.status)))),
          h(
            'button',
            {
              type: 'button',
              class: 'danger',
              onclick: () =>
                void (async () => {
                  if (!(await confirmed(`Delete message ${m.id} ("${m.title}")?`, { action: 'Delete', danger: true, detail: 'Its record and every receiver’s status are deleted; receivers who have not collected it never will.' }))) return;
                  await attempt(async () => (await api('DELETE', `/api/message/deleteMessageById?id=${encodeURIComponent(m.id)}`), showInfo(`Deleted message ${m.id}.`), await load()));
                })(),
            },
            'Delete',
          ),
        ]),
        'No messages match.',
      ),
      pager(page, result.pages, result.total, 'message', (p) => ((page = p), void attempt(load))),
    );
  };
  filters.addEventListener('submit', (e) => (e.preventDefault(), (page = 1), void attempt(load)));
  const send = h(
    'form',
    { class: 'card', 'aria-label': 'Send a message' },
    h('h2', {}, 'Send a message'),
    field('Receivers (ids or names, comma-separated; empty = everyone online)', h('input', { name: 'receivers' })),
    field('Title', h('input', { name: 'title', required: true })),
    field('Type', h('input', { name: 'type', value: 'NOTICE', required: true })),
    field('Content', h('textarea', { name: 'content', rows: '3', required: true })),
    h('button', { type: 'submit' }, 'Send'),
  ) as HTMLFormElement;
  send.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(send);
    const receivers = v['receivers']!.split(',').map((x) => x.trim()).filter(Boolean);
    void attempt(async () => {
      if (receivers.length === 0 && !(await confirmed('Send to everyone online?', { action: 'Send to everyone', detail: 'No receivers are named: every user connected now gets this message.' }))) return;
      const r = await api<{ id: string; receivers: string[]; unknownReceivers: string[]; delivered: number }>('POST', '/api/message/sendMessage', {
        ...(receivers.length ? { receiver: receivers } : {}),
        title: v['title'],
        type: v['type'],
        content: v['content'],
      });
      showInfo(`Message ${r.id} sent to ${r.receivers.length} receiver(s), ${r.delivered} delivered now${r.unknownReceivers.length ? `; unknown: ${r.unknownReceivers.join(', ')}` : ''}.`);
      // Sent: the form is ready for the next message (the type stays as chosen).
      const type = v['type']!;
      send.reset();
      (send.elements.namedItem('type') as HTMLInputElement).value = type;
      page = 1;
      await load();
    });
  });
  view.replaceChildren(h('h1', {}, 'Messages'), send, filters, list);
  void attempt(load);
}
