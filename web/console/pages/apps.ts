/**
 * MQTT apps (device MQTT with app and user tokens): the list, a new app
 * (its secret shown once), a new secret for an app (shown once; the old one
 * and its app tokens stop working), and deleting an app.
 */
import { api, attempt } from '../api.js';
import { confirmed, field, formValues, h, showInfo, table, time, view } from '../dom.js';

interface AppRow {
  appId: string;
  name: string;
  appClientId: string;
  createdAt: string;
}

interface AppSecret {
  appId: string;
  appClientId: string;
  appClientSecret: string;
  name: string;
}

export function renderApps(): void {
  const list = h('div', { id: 'apps' });
  const secret = h('div', { id: 'app-secret' });

  /** The secret, shown this once, until the admin says it is copied. */
  const showSecret = (a: AppSecret, what: string): void => {
    secret.replaceChildren(
      h(
        'div',
        { class: 'card secret', role: 'status' },
        h('h2', {}, `${what}: ${a.name}`),
        h('p', {}, 'Copy the secret now: it is shown this once and only its hash is kept.'),
        h('dl', { class: 'facts' }, h('dt', {}, 'appId'), h('dd', {}, a.appId), h('dt', {}, 'appClientId'), h('dd', {}, h('code', {}, a.appClientId)), h('dt', {}, 'appClientSecret'), h('dd', {}, h('code', {}, a.appClientSecret))),
        h('button', { type: 'button', onclick: () => secret.replaceChildren() }, 'I have copied it'),
      ),
    );
  };

  const load = async (): Promise<void> => {
    const apps = await api<AppRow[]>('GET', '/api/apps');
    list.replaceChildren(
      table(
        ['App id', 'Name', 'appClientId', 'Created', ''],
        apps.map((a) => [
          a.appId,
          a.name,
          h('code', {}, a.appClientId),
          time(a.createdAt),
          h(
            'span',
            { class: 'actions' },
            h(
              'button',
              {
                type: 'button',
                class: 'secondary',
                onclick: () =>
                  void (async () => {
                    const detail = 'The old secret stops working at once, and so do the app tokens got with it; user tokens the app already gave out keep working until they expire.';
                    if (!(await confirmed(`Give ${a.name} a new secret?`, { action: 'New secret', detail }))) return;
                    await attempt(async () => {
                      showSecret(await api<AppSecret>('POST', `/api/apps/${encodeURIComponent(a.appId)}/rotate-secret`), 'New secret for app');
                      showInfo(`${a.name} has a new secret; the old one no longer works.`);
                    });
                  })(),
              },
              'New secret',
            ),
            h(
              'button',
              {
                type: 'button',
                class: 'danger',
                onclick: () =>
                  void (async () => {
                    const detail = 'Its app and user tokens are deleted, and its users are disconnected. This cannot be undone.';
                    if (!(await confirmed(`Delete the app ${a.name}?`, { action: 'Delete', danger: true, detail }))) return;
                    await attempt(async () => {
                      const r = await api<{ sessionsEnded: number }>('DELETE', `/api/apps/${encodeURIComponent(a.appId)}`);
                      showInfo(`Deleted the app ${a.name}; ${r.sessionsEnded} session(s) ended.`);
                      await load();
                    });
                  })(),
              },
              'Delete',
            ),
          ),
        ]),
        'No MQTT apps yet.',
      ),
    );
  };

  const addApp = h(
    'form',
    { class: 'card', 'aria-label': 'Create an MQTT app' },
    h('h2', {}, 'Create an MQTT app'),
    h('p', { class: 'note' }, 'An app gets app tokens with its client id and secret, and gives its users tokens bound to a device (see docs/mqtt.md).'),
    field('Name', h('input', { name: 'name', required: true, maxlength: '100' })),
    h('button', { type: 'submit' }, 'Create app'),
  ) as HTMLFormElement;
  addApp.addEventListener('submit', (e) => {
    e.preventDefault();
    void attempt(async () => {
      const a = await api<AppSecret>('POST', '/api/apps', formValues(addApp));
      addApp.reset();
      showSecret(a, 'App created');
      await load();
    });
  });
  view.replaceChildren(h('h1', {}, 'MQTT apps'), secret, list, addApp);
  void attempt(load);
}
