/**
 * Users: found by part of the name, a page at a time; created; their role
 * changed, disabled or enabled, password reset, tokens revoked, deleted.
 * Every change asks first and says what follows; the server refuses to take
 * away the last active admin, and its words are shown.
 */
import { api, attempt, ME_KEY } from '../api.js';
import { ask, confirmed, field, formValues, h, pager, showInfo, table, time, view } from '../dom.js';

interface UserRow {
  id: string;
  name: string;
  role: string;
  disabled: boolean;
  createdAt: number;
}

interface UserPage {
  records: UserRow[];
  total: number;
  current: number;
  pages: number;
}

const ROLES = ['user', 'service', 'admin'];
const PAGE_SIZE = 20;

export function renderUsers(): void {
  const me = sessionStorage.getItem(ME_KEY);
  const list = h('div', { id: 'users' });
  let page = 1;
  const search = h('input', { type: 'search', name: 'q', placeholder: 'part of a name', autocomplete: 'off' }) as HTMLInputElement;

  const load = async (): Promise<void> => {
    const params = new URLSearchParams({ page: String(page), size: String(PAGE_SIZE) });
    if (search.value.trim()) params.set('q', search.value.trim());
    const result = await api<UserPage>('GET', `/api/users/search?${params}`);
    if (result.records.length === 0 && page > 1 && result.pages > 0) {
      page = result.pages;
      return load();
    }
    list.replaceChildren(
      table(
        ['Id', 'Name', 'Role', 'State', 'Created', ''],
        result.records.map((u) => [u.id, u.name + (u.id === me ? ' (you)' : ''), roleSelect(u), u.disabled ? 'disabled' : 'active', time(u.createdAt), actions(u)]),
        search.value.trim() ? `No user's name holds "${search.value.trim()}".` : 'No users.',
      ),
      pager(page, result.pages, result.total, 'user', (p) => ((page = p), void attempt(load))),
    );
  };
  /** Runs a change, then shows what it did and the list as it now is. */
  const change = (work: () => Promise<unknown>, done: string): Promise<void> =>
    attempt(async () => {
      await work();
      showInfo(done);
      await load();
    });

  /** The role, changed in place once confirmed; dismissed, the old role shows again. */
  const roleSelect = (u: UserRow): HTMLElement => {
    const select = h('select', { 'aria-label': `Role of ${u.name}` }, ...ROLES.map((r) => h('option', { value: r, ...(r === u.role ? { selected: true } : {}) }, r))) as HTMLSelectElement;
    select.addEventListener('change', () => {
      const role = select.value;
      select.value = u.role; // until confirmed
      void (async () => {
        const self = u.id === me && u.role === 'admin';
        if (!(await confirmed(`Make ${u.name} ${role}?`, { action: `Make ${role}`, danger: self, detail: self ? 'You lose the console at your next call: it needs the admin role.' : roleDetail(role) }))) return;
        await change(() => api('PATCH', `/api/users/${u.id}`, { role }), `${u.name} is now ${role}.`);
      })();
    });
    return select;
  };

  const actions = (u: UserRow): HTMLElement =>
    h(
      'span',
      { class: 'actions' },
      h(
        'button',
        {
          type: 'button',
          class: u.disabled ? 'secondary' : 'danger',
          onclick: () =>
            void (async () => {
              if (u.disabled) return change(() => api('PATCH', `/api/users/${u.id}`, { disabled: false }), `${u.name} is enabled again.`);
              const detail = `${u.id === me ? 'That is you: your console session ends too. ' : ''}They are logged out everywhere and cannot log in until enabled again.`;
              if (await confirmed(`Disable ${u.name}?`, { action: 'Disable', danger: true, detail })) await change(() => api('PATCH', `/api/users/${u.id}`, { disabled: true }), `${u.name} is disabled.`);
            })(),
        },
        u.disabled ? 'Enable' : 'Disable',
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          onclick: () =>
            void (async () => {
              const input = h('input', { name: 'password', type: 'password', required: true, minlength: '8', maxlength: '1024', autocomplete: 'new-password' });
              const v = await ask(`Reset the password of ${u.name}`, { action: 'Set password', detail: 'Their tokens are revoked and their sessions end; they log in again with the new password.', fields: [field('New password (at least 8 characters)', input)] });
              if (v) await change(() => api('PATCH', `/api/users/${u.id}`, { password: v['password'] }), `${u.name} has a new password; their sessions ended.`);
            })(),
        },
        'Reset password',
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: () =>
            void (async () => {
              if (await confirmed(`Revoke every token of ${u.name}?`, { action: 'Revoke', danger: true, detail: 'All their sessions end, whether they logged in with a token, a password or a certificate.' }))
                await change(() => api('POST', `/api/users/${u.id}/revoke-tokens`), `Revoked every token of ${u.name}; their sessions ended.`);
            })(),
        },
        'Revoke tokens',
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: () =>
            void (async () => {
              if (await confirmed(`Delete ${u.name}?`, { action: 'Delete', danger: true, detail: `${u.id === me ? 'That is you. ' : ''}The user and their tokens are deleted and their sessions end. This cannot be undone.` }))
                await change(() => api('DELETE', `/api/users/${u.id}`), `Deleted user ${u.name}.`);
            })(),
        },
        'Delete',
      ),
    );

  const addUser = h(
    'form',
    { class: 'card', 'aria-label': 'Create a user' },
    h('h2', {}, 'Create a user'),
    field('Name', h('input', { name: 'name', required: true, autocomplete: 'off', pattern: '[A-Za-z0-9._@\\-]{1,64}', title: 'letters, digits, . _ @ and -' })),
    field('Password', h('input', { name: 'password', type: 'password', required: true, minlength: '8', autocomplete: 'new-password' })),
    field('Role', h('select', { name: 'role' }, ...ROLES.map((r) => h('option', { value: r }, r)))),
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

  const filter = h('form', { class: 'toolbar', role: 'search', 'aria-label': 'Find users' }, field('Find by name', search), h('button', { type: 'submit' }, 'Find')) as HTMLFormElement;
  filter.addEventListener('submit', (e) => {
    e.preventDefault();
    page = 1;
    void attempt(load);
  });
  view.replaceChildren(h('h1', {}, 'Users'), filter, list, addUser);
  void attempt(load);
}

function roleDetail(role: string): string {
  if (role === 'admin') return 'Admins manage users, apps and every message, here and through the API.';
  if (role === 'service') return 'Services may send to anyone and publish to any destination, but not manage users.';
  return 'Users send and receive as themselves only.';
}
