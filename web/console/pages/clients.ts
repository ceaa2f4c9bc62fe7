/** Clients: the sessions online on every protocol, refreshed live, with details, disconnect (one, or every one of a user) and revoke. */
import { api, attempt } from '../api.js';
import { confirmed, field, h, showInfo, table, time, view } from '../dom.js';
import { onLeave } from '../live.js';

/** Ends every session of a user on every node, after asking (Clients and a client's page). */
export async function disconnectUser(userId: string, name: string, after: () => Promise<void>): Promise<void> {
  if (!(await confirmed(`Disconnect every session of ${name}?`, { action: 'Disconnect all', danger: true, detail: 'Every session of this user ends, on every protocol and node; each client is told why. Their credentials stay valid, so they may connect again (revoke their tokens to stop that).' }))) return;
  await attempt(async () => {
    const r = await api<{ sessions: number }>('POST', `/api/admin/users/${encodeURIComponent(userId)}/disconnect`);
    showInfo(`Disconnected ${r.sessions} session${r.sessions === 1 ? '' : 's'} of ${name}.`);
    await after();
  });
}

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

export function renderClients(): void {
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
            h('a', { class: 'button secondary', href: `#clients/${encodeURIComponent(r.sessionId)}` }, 'Details'),
            h(
              'button',
              {
                type: 'button',
                class: 'secondary',
                onclick: () =>
                  void (async () => {
                    if (!(await confirmed(`Disconnect ${r.loginName}'s ${r.protocol} session?`, { action: 'Disconnect', detail: 'The client is told why in its protocol; it may connect again.' }))) return;
                    await attempt(async () => (await api('POST', `/api/admin/sessions/${encodeURIComponent(r.sessionId)}/disconnect`), showInfo(`Disconnected ${r.loginName}'s ${r.protocol} session.`), await load()));
                  })(),
              },
              'Disconnect',
            ),
            h('button', { type: 'button', class: 'secondary', onclick: () => void disconnectUser(r.userId, r.loginName, load) }, 'Disconnect user'),
            // An app's users have no Herald account whose tokens could be revoked (deleting the app ends them).
            r.userId.startsWith('app:')
              ? null
              : h(
                  'button',
                  {
                    type: 'button',
                    class: 'danger',
                    onclick: () =>
                      void (async () => {
                        if (!(await confirmed(`Revoke every token of ${r.loginName}?`, { action: 'Revoke', danger: true, detail: 'All their sessions end, on every node, whether they logged in with a token, a password or a certificate.' }))) return;
                        await attempt(async () => (await api('POST', `/api/users/${encodeURIComponent(r.userId)}/revoke-tokens`), showInfo(`Revoked every token of ${r.loginName}; their sessions ended.`), await load()));
                      })(),
                  },
                  'Revoke tokens',
                ),
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
  const timer = window.setInterval(() => void attempt(load), 3000);
  onLeave(() => clearInterval(timer));
}
