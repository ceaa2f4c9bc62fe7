/** Users & apps: users with their role and state, and MQTT apps (whose secret is shown once). */
import { api, attempt } from '../api.js';
import { confirmed, field, formValues, h, showInfo, table, time, view } from '../dom.js';

interface UserRow {
  id: string;
  name: string;
  role: string;
  disabled: boolean;
}

export function renderUsers(): void {
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
