/**
 * Herald console: a small single-page app over Herald's own HTTP API and,
 * for live debugging, its STOMP WebSocket. No framework: one `render`
 * function per section, each building its DOM from the API's answers.
 * The admin's token lives in sessionStorage; a 401 sends you back to the
 * login form with the reason.
 */
import { Client, type IMessage, type StompSubscription } from '@stomp/stompjs';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';

const TOKEN_KEY = 'herald.token';
const view = document.getElementById('view')!;
const nav = document.getElementById('nav')!;
const banner = document.getElementById('banner')!;

// ---- helpers ---------------------------------------------------------------------

type Attrs = Record<string, string | boolean | ((e: Event) => void)>;

/** Builds an element: attributes, `on…` listeners, children (strings become text). */
function h(tag: string, attrs: Attrs = {}, ...children: (Node | string | null | undefined | false)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false) el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** A labelled control: every input has a visible label. */
function field(label: string, input: HTMLElement): HTMLElement {
  return h('label', { class: 'field' }, h('span', {}, label), input);
}

function showError(message: string): void {
  banner.textContent = message;
  banner.className = 'error';
  banner.hidden = false;
}

function showInfo(message: string): void {
  banner.textContent = message;
  banner.className = 'info';
  banner.hidden = false;
}

function clearBanner(): void {
  banner.hidden = true;
}

class ApiError extends Error {}

/** One call to Herald's API; a 401 ends the console session, other errors carry the server's message. */
async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const res = await fetch(path, {
    method,
    headers: { ...(token ? { 'x-auth-token': token } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  let parsed: { code: number; message: string; data: T };
  try {
    parsed = (await res.json()) as typeof parsed;
  } catch {
    throw new ApiError(`${method} ${path}: the server answered ${res.status} without JSON`);
  }
  if (res.status === 401 && path !== '/v1/login') {
    sessionStorage.removeItem(TOKEN_KEY);
    stopLive();
    renderLogin(`Your session has ended (${parsed.message}). Log in again.`);
    throw new ApiError(parsed.message);
  }
  if (!res.ok) throw new ApiError(parsed.message || `${method} ${path} failed with ${res.status}`);
  return parsed.data;
}

/** Asks before a destructive action (disable, delete, revoke, role change); true to go ahead. */
function confirmed(question: string): boolean {
  return window.confirm(question);
}

/** Runs an action, showing its error in the banner instead of throwing. */
async function attempt(action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    if (sessionStorage.getItem(TOKEN_KEY)) showError((err as Error).message);
  }
}

function formValues(form: HTMLFormElement): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of new FormData(form)) out[k] = String(v);
  return out;
}

function table(headers: string[], rows: (Node | string)[][], empty: string): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty);
  const head = h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', { scope: 'col' }, x))));
  const body = h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c, i) => h('td', { 'data-label': headers[i]! }, c)))));
  return h('div', { class: 'table-wrap' }, h('table', {}, head, body));
}

const time = (iso: string | number): string => new Date(iso).toLocaleString();

// ---- login -------------------------------------------------------------------------

function renderLogin(message?: string): void {
  nav.hidden = true;
  clearBanner();
  const err = h('p', { class: 'error', role: 'alert', id: 'login-error' }, message ?? '');
  if (!message) err.hidden = true;
  const form = h(
    'form',
    { class: 'card login', 'aria-label': 'Log in' },
    h('h1', {}, 'Log in to Herald'),
    err,
    field('User name', h('input', { name: 'username', autocomplete: 'username', required: true })),
    field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    h('button', { type: 'submit' }, 'Log in'),
  ) as HTMLFormElement;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const { username, password } = formValues(form);
    void (async () => {
      try {
        const data = await api<{ authToken: string; role: string }[]>('POST', '/v1/login', { username, password });
        const who = data[0]!;
        if (who.role !== 'admin') {
          err.textContent = `"${username}" is not an administrator; the console needs an admin account.`;
          err.hidden = false;
          return;
        }
        sessionStorage.setItem(TOKEN_KEY, who.authToken);
        location.hash = location.hash && location.hash !== '#login' ? location.hash : '#overview';
        route();
      } catch (e2) {
        err.textContent = (e2 as Error).message;
        err.hidden = false;
      }
    })();
  });
  view.replaceChildren(form);
}

// ---- overview ----------------------------------------------------------------------

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

let liveTimer: number | undefined;
const charts: uPlot[] = [];

function stopLive(): void {
  if (liveTimer !== undefined) clearInterval(liveTimer);
  liveTimer = undefined;
  for (const c of charts.splice(0)) c.destroy();
  debugClient?.deactivate();
  debugClient = undefined;
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
  charts.push(plot);
  return {
    push(values) {
      data[0]!.push(Date.now() / 1000);
      values.forEach((v, i) => data[i + 1]!.push(v));
      if (data[0]!.length > 150) for (const d of data) d.shift();
      plot.setData(data as uPlot.AlignedData);
    },
  };
}

function renderOverview(): void {
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
  liveTimer = window.setInterval(() => void attempt(tick), 2000);
}

// ---- clients -------------------------------------------------------------------------

interface ClientRow {
  sessionId: string;
  userId: string;
  loginName: string;
  device: string;
  protocol: string;
  remoteAddress: string;
  loginTime: string;
  node?: string;
  subscriptions?: number;
  unacked?: number;
}

function renderClients(): void {
  const search = h('input', { type: 'search', name: 'filter', placeholder: 'user, device, protocol or address' }) as HTMLInputElement;
  const list = h('div', { id: 'clients' });
  let rows: ClientRow[] = [];
  const draw = (): void => {
    const q = search.value.trim().toLowerCase();
    const shown = rows.filter((r) => !q || [r.loginName, r.device, r.protocol, r.remoteAddress, r.node ?? ''].some((x) => x.toLowerCase().includes(q)));
    list.replaceChildren(
      h('p', {}, `${shown.length} of ${rows.length} sessions online`),
      table(
        ['User', 'Device', 'Protocol', 'Address', 'Since', 'Subscriptions', 'Unacked', 'Node', 'Actions'],
        shown.map((r) => [
          r.loginName,
          r.device,
          r.protocol,
          r.remoteAddress,
          time(r.loginTime),
          r.subscriptions === undefined ? '–' : String(r.subscriptions),
          r.unacked === undefined ? '–' : String(r.unacked),
          r.node ?? '',
          h(
            'span',
            { class: 'actions' },
            h('button', { type: 'button', onclick: () => void attempt(async () => (await api('POST', `/api/admin/sessions/${encodeURIComponent(r.sessionId)}/disconnect`), showInfo(`Disconnected ${r.loginName}'s ${r.protocol} session.`), await load())) }, 'Disconnect'),
            h('button', { type: 'button', class: 'danger', onclick: () => confirmed(`Revoke every token of ${r.loginName}? All their sessions end.`) && void attempt(async () => (await api('POST', `/api/users/${encodeURIComponent(r.userId)}/revoke-tokens`), showInfo(`Revoked every token of ${r.loginName}.`), await load())) }, 'Revoke tokens'),
          ),
        ]),
        'Nobody is connected.',
      ),
    );
  };
  const load = async (): Promise<void> => {
    rows = await api<ClientRow[]>('GET', '/api/message/getWebSocketClients');
    draw();
  };
  search.addEventListener('input', draw);
  view.replaceChildren(h('h1', {}, 'Clients'), h('div', { class: 'toolbar' }, field('Filter', search), h('button', { type: 'button', onclick: () => void attempt(load) }, 'Refresh')), list);
  void attempt(load);
  liveTimer = window.setInterval(() => void attempt(load), 3000);
}

// ---- messages ------------------------------------------------------------------------

interface MessageRow {
  id: string;
  title: string;
  content: string;
  type: string;
  sender: string;
  createdAt: string;
  receivers: { receiver: string; receiverName?: string; status: string }[];
}

function renderMessages(): void {
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
  const load = async (): Promise<void> => {
    const params = new URLSearchParams({ size: '50' });
    for (const [k, v] of Object.entries(formValues(filters))) if (v) params.set(k, v);
    const page = await api<{ records: MessageRow[]; total: number }>('GET', `/api/message/getMessagePage?${params}`);
    list.replaceChildren(
      h('p', {}, `${page.total} messages`),
      table(
        ['Id', 'Title', 'Type', 'Sender', 'Sent', 'Receivers', ''],
        page.records.map((m) => [
          m.id,
          m.title,
          m.type,
          m.sender,
          time(m.createdAt),
          h('ul', { class: 'receipts' }, ...m.receivers.map((r) => h('li', {}, `${r.receiverName ?? r.receiver}: `, h('span', { class: 'status-' + r.status.toLowerCase() }, r.status)))),
          h('button', { type: 'button', class: 'danger', onclick: () => confirmed(`Delete message ${m.id}?`) && void attempt(async () => (await api('DELETE', `/api/message/deleteMessageById?id=${encodeURIComponent(m.id)}`), await load())) }, 'Delete'),
        ]),
        'No messages match.',
      ),
    );
  };
  filters.addEventListener('submit', (e) => (e.preventDefault(), void attempt(load)));
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
      const r = await api<{ id: string; receivers: string[]; unknownReceivers: string[]; delivered: number }>('POST', '/api/message/sendMessage', {
        ...(receivers.length ? { receiver: receivers } : {}),
        title: v['title'],
        type: v['type'],
        content: v['content'],
      });
      showInfo(`Message ${r.id} sent to ${r.receivers.length} receiver(s), ${r.delivered} delivered now${r.unknownReceivers.length ? `; unknown: ${r.unknownReceivers.join(', ')}` : ''}.`);
      await load();
    });
  });
  view.replaceChildren(h('h1', {}, 'Messages'), send, filters, list);
  void attempt(load);
}

// ---- threads -------------------------------------------------------------------------

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

function renderThreads(): void {
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

// ---- live debug ------------------------------------------------------------------------

let debugClient: Client | undefined;

function renderDebug(): void {
  const token = sessionStorage.getItem(TOKEN_KEY)!;
  const log = h('ol', { class: 'frames', id: 'frames', 'aria-live': 'polite' });
  const state = h('p', { id: 'debug-state' }, 'Connecting…');
  const subs = new Map<string, StompSubscription>();
  const note = (kind: string, text: string): void => {
    log.prepend(h('li', { class: 'frame-' + kind }, h('time', {}, new Date().toLocaleTimeString()), ` ${kind} `, h('code', {}, text)));
    while (log.children.length > 300) log.lastElementChild!.remove();
  };
  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/stomp?__token=${encodeURIComponent(token)}`;
  const client = new Client({
    brokerURL: wsUrl,
    reconnectDelay: 0,
    onConnect: (f) => {
      state.textContent = `Connected (STOMP ${f.headers['version'] ?? ''}, server ${f.headers['server'] ?? ''})`;
      note('CONNECTED', JSON.stringify(f.headers));
      // Refusals of /test and /app sends come back here.
      client.subscribe('/user/queue/errors', (m) => note('ERROR', m.body));
    },
    onStompError: (f) => {
      state.textContent = `Error: ${f.headers['message'] ?? ''}`;
      note('ERROR', `${f.headers['message'] ?? ''} ${f.body}`);
    },
    onWebSocketClose: (e) => {
      state.textContent = `Disconnected (${e.code}${e.reason ? ': ' + e.reason : ''})`;
    },
  });
  debugClient = client;
  client.activate();
  const show = (m: IMessage): void => note('MESSAGE', `${m.headers['destination'] ?? ''}  ${m.body}`);

  const subForm = h('form', { class: 'toolbar', 'aria-label': 'Subscribe' }, field('Destination', h('input', { name: 'destination', value: '/topic/demo.#', required: true })), h('button', { type: 'submit' }, 'Subscribe')) as HTMLFormElement;
  subForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const d = formValues(subForm)['destination']!;
    if (!client.connected) return showError('Not connected yet.');
    if (subs.has(d)) return showInfo(`Already subscribed to ${d}.`);
    subs.set(d, client.subscribe(d, show));
    note('SUBSCRIBE', d);
  });
  const pubForm = h(
    'form',
    { class: 'toolbar', 'aria-label': 'Publish' },
    field('Destination', h('input', { name: 'destination', value: '/topic/demo.hello', required: true })),
    field('Body', h('input', { name: 'body', value: 'hello from the console' })),
    h('button', { type: 'submit' }, 'Send'),
  ) as HTMLFormElement;
  pubForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(pubForm);
    if (!client.connected) return showError('Not connected yet.');
    client.publish({ destination: v['destination']!, body: v['body'] ?? '' });
    note('SEND', `${v['destination']}  ${v['body']}`);
  });
  const echoForm = h('form', { class: 'toolbar', 'aria-label': 'Test echo' }, field('Echo text (the /test debug destination)', h('input', { name: 'msg', value: 'ping', required: true })), h('button', { type: 'submit' }, 'Run /test echo')) as HTMLFormElement;
  echoForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const msg = formValues(echoForm)['msg']!;
    if (!client.connected) return showError('Not connected yet.');
    const queue = 'console-echo';
    if (!subs.has('echo')) subs.set('echo', client.subscribe(`/user/${token}/queue/${queue}`, (m) => note('ECHO', m.body)));
    client.publish({ destination: '/test', body: JSON.stringify({ queue, msg }) });
    note('SEND', `/test ${JSON.stringify({ queue, msg })}`);
  });
  view.replaceChildren(h('h1', {}, 'Live debug'), state, subForm, pubForm, echoForm, h('h2', {}, 'Frames'), log);
}

// ---- users and apps ---------------------------------------------------------------------

interface UserRow {
  id: string;
  name: string;
  role: string;
  disabled: boolean;
}

function renderUsers(): void {
  const users = h('div', { id: 'users' });
  const apps = h('div', { id: 'apps' });
  const secret = h('div', { id: 'app-secret' });
  /** The role, changeable in place. */
  const roleSelect = (u: UserRow): HTMLElement => {
    const select = h('select', { 'aria-label': `Role of ${u.name}` }, ...['user', 'service', 'admin'].map((r) => h('option', { value: r, ...(r === u.role ? { selected: true } : {}) }, r))) as HTMLSelectElement;
    select.addEventListener('change', () => {
      if (!confirmed(`Make ${u.name} ${select.value}?`)) {
        select.value = u.role;
        return;
      }
      void attempt(async () => {
        await api('PATCH', `/api/users/${u.id}`, { role: select.value });
        showInfo(`${u.name} is now ${select.value}.`);
        await load();
      });
    });
    return select;
  };
  const load = async (): Promise<void> => {
    const list = await api<UserRow[]>('GET', '/api/users');
    users.replaceChildren(
      table(
        ['Id', 'Name', 'Role', 'State', ''],
        list.map((u) => [
          u.id,
          u.name,
          roleSelect(u),
          u.disabled ? 'disabled' : 'active',
          h(
            'span',
            { class: 'actions' },
            h('button', { type: 'button', onclick: () => (u.disabled || confirmed(`Disable ${u.name}? They are logged out everywhere.`)) && void attempt(async () => (await api('PATCH', `/api/users/${u.id}`, { disabled: !u.disabled }), await load())) }, u.disabled ? 'Enable' : 'Disable'),
            h('button', { type: 'button', class: 'danger', onclick: () => confirmed(`Revoke every token of ${u.name}? All their sessions end.`) && void attempt(async () => (await api('POST', `/api/users/${u.id}/revoke-tokens`), showInfo(`Revoked every token of ${u.name}.`))) }, 'Revoke tokens'),
          ),
        ]),
        'No users.',
      ),
    );
    const appList = await api<{ appId: string; name: string; appClientId: string; createdAt: string }[]>('GET', '/api/apps');
    apps.replaceChildren(table(['App id', 'Name', 'appClientId', 'Created'], appList.map((a) => [a.appId, a.name, a.appClientId, time(a.createdAt)]), 'No MQTT apps yet.'));
  };
  const addUser = h(
    'form',
    { class: 'card', 'aria-label': 'Create a user' },
    h('h2', {}, 'Create a user'),
    field('Name', h('input', { name: 'name', required: true, autocomplete: 'off' })),
    field('Password', h('input', { name: 'password', type: 'password', required: true, autocomplete: 'new-password' })),
    field('Role', h('select', { name: 'role' }, ...['user', 'service', 'admin'].map((r) => h('option', { value: r }, r)))),
    h('button', { type: 'submit' }, 'Create user'),
  ) as HTMLFormElement;
  addUser.addEventListener('submit', (e) => {
    e.preventDefault();
    void attempt(async () => {
      const u = await api<UserRow>('POST', '/api/users', formValues(addUser));
      showInfo(`Created user ${u.name} (id ${u.id}).`);
      addUser.reset();
      await load();
    });
  });
  const addApp = h('form', { class: 'card', 'aria-label': 'Create an MQTT app' }, h('h2', {}, 'Create an MQTT app (device MQTT with app and user tokens)'), field('Name', h('input', { name: 'name', required: true })), h('button', { type: 'submit' }, 'Create app')) as HTMLFormElement;
  addApp.addEventListener('submit', (e) => {
    e.preventDefault();
    void attempt(async () => {
      const a = await api<{ appId: string; appClientId: string; appClientSecret: string; name: string }>('POST', '/api/apps', formValues(addApp));
      addApp.reset();
      secret.replaceChildren(
        h(
          'div',
          { class: 'card secret', role: 'status' },
          h('h3', {}, `App ${a.name} created`),
          h('p', {}, 'Copy the secret now: it is shown this once and only its hash is kept.'),
          h('dl', { class: 'facts' }, h('dt', {}, 'appId'), h('dd', {}, a.appId), h('dt', {}, 'appClientId'), h('dd', {}, h('code', {}, a.appClientId)), h('dt', {}, 'appClientSecret'), h('dd', {}, h('code', {}, a.appClientSecret))),
          h('button', { type: 'button', onclick: () => secret.replaceChildren() }, 'I have copied it'),
        ),
      );
      await load();
    });
  });
  view.replaceChildren(h('h1', {}, 'Users & apps'), addUser, users, h('h2', {}, 'MQTT apps'), addApp, secret, apps);
  void attempt(load);
}

// ---- routing ----------------------------------------------------------------------------

const SECTIONS: Record<string, () => void> = {
  overview: renderOverview,
  clients: renderClients,
  messages: renderMessages,
  threads: renderThreads,
  debug: renderDebug,
  users: renderUsers,
};

function route(): void {
  stopLive();
  clearBanner();
  if (!sessionStorage.getItem(TOKEN_KEY)) return renderLogin();
  nav.hidden = false;
  const name = location.hash.slice(1) || 'overview';
  const render = SECTIONS[name] ?? renderOverview;
  for (const a of nav.querySelectorAll('a')) a.toggleAttribute('aria-current', a.getAttribute('href') === '#' + name);
  render();
}

document.getElementById('logout')!.addEventListener('click', () => {
  void fetch('/v1/logout', { method: 'POST', headers: { 'x-auth-token': sessionStorage.getItem(TOKEN_KEY) ?? '' } }).catch(() => undefined);
  sessionStorage.removeItem(TOKEN_KEY);
  stopLive();
  renderLogin('You are logged out.');
});
window.addEventListener('hashchange', route);
route();
