/**
 * Threads: the chat threads with their members by name and their last
 * message in words; open one for its history with receipts and recalls;
 * close it (after asking). A thread is named as the chat client names it
 * (`org1/visitor/v1`), with the STOMP topic it is published on beside it.
 */
import { api, attempt } from '../api.js';
import { confirmed, h, showInfo, table, time, view } from '../dom.js';

interface Member {
  userId: string;
  role: string;
  name?: string;
}

interface ThreadRow {
  id: string;
  topic: string;
  thread: string;
  status: string;
  lastActivityAt: string;
  members: Member[];
  lastMessage: ThreadMessage | null;
}

interface ThreadMessage {
  uid?: string;
  type?: string;
  content?: string;
  createdAt?: string;
  extra?: unknown;
  user?: { uid?: string; nickname?: string };
  recalled?: boolean;
}

/** Turns a member's user id into their name (ids other than members' stay as they are). */
type Names = (id: string) => string;

/** Who sent a message: the nickname the client gave, else its uid (a name, or a member's id shown as their name). */
const sender = (m: ThreadMessage, name: Names): string => m.user?.nickname || (m.user?.uid ? name(m.user.uid) : 'someone');

function extraOf(m: ThreadMessage): Record<string, unknown> {
  if (m.extra && typeof m.extra === 'object') return m.extra as Record<string, unknown>;
  if (typeof m.extra !== 'string' || !m.extra) return {};
  try {
    const parsed = JSON.parse(m.extra) as unknown;
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** A message in words, as a person reads it: receipts, recalls, ratings and left messages say what they are, not their ids. */
export function describe(m: ThreadMessage, name: Names): string {
  const who = sender(m, name);
  const x = extraOf(m);
  switch (m.type) {
    case 'TEXT':
      return m.recalled ? `${m.content ?? ''} (recalled)` : (m.content ?? '');
    case 'IMAGE':
      return `${who} sent an image`;
    case 'FILE':
      return `${who} sent a file`;
    case 'READ':
      return `${who} read a message`;
    case 'DELIVERED':
      return `a message reached ${who}`;
    case 'RECALL':
      return `${who} recalled a message`;
    case 'RATE_SUBMIT':
      return `${who} rated the service ${typeof x['score'] === 'number' ? `${x['score']}/5` : ''}${x['resolved'] === false ? ' (not resolved)' : x['resolved'] === true ? ' (resolved)' : ''}`.trim();
    case 'LEAVE_MSG_SUBMIT':
      return `${who} left a message${typeof x['content'] === 'string' && x['content'] ? `: ${x['content']}` : ''}${typeof x['contact'] === 'string' && x['contact'] ? ` (contact: ${x['contact']})` : ''}`;
    case 'TRANSFER':
      return `${who} asked to transfer the chat`;
    case 'TRANSFER_ACCEPT':
      return `${who} took over the chat`;
    case 'TRANSFER_REJECT':
      return `${who} declined the transfer`;
    case 'INVITE_VISITOR':
      return `${who} invited the visitor`;
    case 'AUTO_CLOSED':
      return 'closed after a time without messages';
    default:
      return `${m.type ?? 'message'}: ${m.content ?? ''}`;
  }
}

export function renderThreads(): void {
  const list = h('div', { id: 'threads' });
  const detail = h('section', { id: 'thread-detail', 'aria-live': 'polite' });
  const nameIn = (t: ThreadRow) => (id: string): string => t.members.find((m) => m.userId === id)?.name ?? id;

  const open = async (t: ThreadRow): Promise<void> => {
    const history = await api<(ThreadMessage & { uid: string })[]>('GET', `/api/v1/thread/${encodeURIComponent(t.thread)}/messages?limit=100`);
    const name = nameIn(t);
    const rows = await Promise.all(
      history
        .filter((m) => m.type !== 'READ' && m.type !== 'DELIVERED')
        .map(async (m) => {
          const receipts = m.type === 'TEXT' ? await api<{ userId: string; status: string }[]>('GET', `/api/v1/thread/${encodeURIComponent(t.thread)}/messages/${encodeURIComponent(m.uid)}/receipts`) : [];
          const text = describe(m, name);
          return [m.createdAt ? time(m.createdAt) : '', sender(m, name), m.type ?? '', m.recalled ? h('s', {}, text) : text, receipts.map((r) => `${r.status === 'READ' ? 'read by' : 'delivered to'} ${name(r.userId)}`).join(', ')];
        }),
    );
    detail.replaceChildren(
      h('h2', {}, `Thread ${t.thread} (${t.status === 'OPEN' ? 'open' : 'closed'})`),
      table(['Time', 'From', 'Type', 'Message', 'Receipts'], rows, 'No messages yet.'),
      t.status === 'OPEN'
        ? h(
            'button',
            {
              type: 'button',
              class: 'danger',
              onclick: () =>
                void (async () => {
                  if (!(await confirmed(`Close the thread ${t.thread}?`, { action: 'Close thread', danger: true, detail: 'Its members can no longer send to it; its history stays.' }))) return;
                  await attempt(async () => {
                    await api('POST', `/api/v1/thread/${encodeURIComponent(t.thread)}/close`, {});
                    showInfo(`Closed the thread ${t.thread}.`);
                    const fresh = (await load()).find((x) => x.thread === t.thread);
                    if (fresh) await open(fresh);
                  });
                })(),
            },
            'Close thread',
          )
        : '',
    );
  };

  const load = async (): Promise<ThreadRow[]> => {
    const threads = await api<ThreadRow[]>('GET', '/api/v1/threads?all=true&limit=200');
    list.replaceChildren(
      table(
        ['Thread', 'Status', 'Members', 'Last message', 'Last activity', ''],
        threads.map((t) => [
          h('span', {}, t.thread, h('span', { class: 'sub' }, `STOMP /topic/${t.topic}`)),
          t.status === 'OPEN' ? 'open' : 'closed',
          t.members.map((m) => `${m.name ?? m.userId} (${m.role})`).join(', '),
          t.lastMessage ? describe(t.lastMessage, nameIn(t)) : 'no messages yet',
          time(t.lastActivityAt),
          h('button', { type: 'button', onclick: () => void attempt(() => open(t)) }, 'Open'),
        ]),
        'No threads yet.',
      ),
    );
    return threads;
  };
  view.replaceChildren(h('h1', {}, 'Threads'), list, detail);
  void attempt(async () => void (await load()));
}
