/** Threads: chat threads, their history with receipts, and closing one. */
import { api, attempt } from '../api.js';
import { h, table, time, view } from '../dom.js';

interface ThreadRow {
  id: string;
  topic: string;
  thread: string;
  status: string;
  lastActivityAt: string;
  members: { userId: string; role: string }[];
  lastMessage: { content?: string; type?: string } | null;
}

interface ThreadMessage {
  id: string;
  uid: string;
  type: string;
  content: string;
  createdAt: string;
  user: { uid: string };
  recalled?: boolean;
}

export function renderThreads(): void {
  const list = h('div', { id: 'threads' });
  const detail = h('section', { id: 'thread-detail' });
  const open = async (t: ThreadRow): Promise<void> => {
    const history = await api<ThreadMessage[]>('GET', `/api/v1/thread/${encodeURIComponent(t.thread)}/messages?limit=100`);
    const rows = await Promise.all(
      history
        .filter((m) => m.type !== 'READ' && m.type !== 'DELIVERED')
        .map(async (m) => {
          const receipts = await api<{ userId: string; status: string }[]>('GET', `/api/v1/thread/${encodeURIComponent(t.thread)}/messages/${encodeURIComponent(m.uid)}/receipts`);
          return [time(m.createdAt), m.user.uid, m.type, m.recalled ? h('s', {}, m.content) : m.content, receipts.map((r) => `${r.userId}: ${r.status}`).join(', ')];
        }),
    );
    detail.replaceChildren(
      h('h2', {}, `Thread ${t.topic} (${t.status})`),
      table(['Time', 'From', 'Type', 'Content', 'Receipts'], rows, 'No messages yet.'),
      t.status === 'OPEN'
        ? h('button', { type: 'button', class: 'danger', onclick: () => void attempt(async () => (await api('POST', `/api/v1/thread/${encodeURIComponent(t.thread)}/close`, {}), await load())) }, 'Close thread')
        : '',
    );
  };
  const load = async (): Promise<void> => {
    const threads = await api<ThreadRow[]>('GET', '/api/v1/threads?all=true&limit=200');
    list.replaceChildren(
      table(
        ['Thread', 'Status', 'Members', 'Last message', 'Last activity', ''],
        threads.map((t) => [
          t.topic,
          t.status,
          t.members.map((m) => `${m.userId} (${m.role})`).join(', '),
          t.lastMessage ? `${t.lastMessage.type ?? ''}: ${t.lastMessage.content ?? ''}` : '',
          time(t.lastActivityAt),
          h('button', { type: 'button', onclick: () => void attempt(() => open(t)) }, 'Open'),
        ]),
        'No threads yet.',
      ),
    );
  };
  view.replaceChildren(h('h1', {}, 'Threads'), list, detail);
  void attempt(load);
}
