/** Audit log: what administrators did (who, what, when, from where), newest first, a page at a time. */
import { api, attempt } from '../api.js';
import { field, formValues, h, pager, table, time, view } from '../dom.js';

interface AuditRow {
  id: string;
  at: string;
  actorName: string;
  action: string;
  target: string;
  detail: Record<string, unknown>;
  address: string;
  node: string;
}

const AREAS: [string, string][] = [
  ['', 'all actions'],
  ['user', 'users'],
  ['app', 'MQTT apps'],
  ['session', 'sessions'],
  ['message', 'messages'],
  ['thread', 'threads'],
  ['acl', 'rules'],
  ['retained', 'retained messages'],
  ['trace', 'traces'],
  ['webhook', 'webhooks'],
];

/** The detail object in words: `role: admin, password: reset`. */
function details(d: Record<string, unknown>): string {
  return Object.entries(d)
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`)
    .join('; ');
}

export function renderAudit(): void {
  const list = h('div', { id: 'audit' });
  let page = 1;
  const filters = h(
    'form',
    { class: 'toolbar', 'aria-label': 'Filter the audit log' },
    field('Action', h('select', { name: 'action' }, ...AREAS.map(([v, label]) => h('option', { value: v }, label)))),
    field('By (user name)', h('input', { name: 'actor', autocomplete: 'off' })),
    h('button', { type: 'submit' }, 'Show'),
  ) as HTMLFormElement;
  const load = async (): Promise<void> => {
    const params = new URLSearchParams({ page: String(page), size: '50' });
    for (const [k, v] of Object.entries(formValues(filters))) if (v.trim()) params.set(k, v.trim());
    const r = await api<{ records: AuditRow[]; total: number; pages: number }>('GET', `/api/admin/audit?${params}`);
    list.replaceChildren(
      table(
        ['When', 'Who', 'Action', 'Target', 'Details', 'From'],
        r.records.map((e) => [time(e.at), e.actorName, h('code', {}, e.action), e.target, details(e.detail), h('span', {}, e.address, h('span', { class: 'sub' }, `node ${e.node}`))]),
        'Nothing recorded yet.',
      ),
      pager(page, r.pages, r.total, ['entry', 'entries'], (p) => ((page = p), void attempt(load))),
    );
  };
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    page = 1;
    void attempt(load);
  });
  view.replaceChildren(
    h('h1', {}, 'Audit log'),
    h('p', { class: 'note' }, 'Changes made by administrators through the console or the API, kept 90 days (at most 100 000 entries).'),
    filters,
    list,
  );
  void attempt(load);
}
