/**
 * One client in detail (#clients/{sessionId}), on whichever node holds it:
 * who and how (protocol and version, credential, TLS, address, node), its
 * subscriptions, messages in flight and held with their bytes, bytes in
 * and out, refreshed live; disconnect it, every session of its user, or
 * revoke the user's tokens.
 */
import { api, attempt, ApiError } from '../api.js';
import { bytes, confirmed, facts, h, showInfo, table, time, view } from '../dom.js';
import { onLeave } from '../live.js';
import { disconnectUser } from './clients.js';

interface Detail {
  sessionId: string;
  node: string;
  protocol: string;
  userId: string;
  user: string;
  role: string;
  device: string;
  remoteAddress: string;
  connectedAt: string;
  credential: string;
  tls: boolean;
  version?: string;
  clientId?: string;
  bytesIn: number;
  bytesOut: number;
  inflight: { messages: number; bytes: number };
  held: { messages: number; bytes: number };
  subscriptions: { destination: string; kind: string; key: string; group?: string; qos?: number; ack?: string; unacked?: number; held?: number }[];
}

const CREDENTIAL: Record<string, string> = {
  token: 'login token',
  jwt: 'JWT',
  password: 'user name and password',
  certificate: 'client certificate',
  expiring: 'app user token or connect hook',
  anonymous: 'anonymous',
};

export function renderClient(id: string): void {
  const body = h('div', { id: 'client' }, h('p', {}, 'Loading…'));
  view.replaceChildren(h('p', {}, h('a', { href: '#clients' }, '‹ All clients')), h('h1', {}, 'Client'), body);
  let timer: number | undefined;

  const load = async (): Promise<void> => {
    let d: Detail;
    try {
      d = await api<Detail>('GET', `/api/admin/sessions/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        clearInterval(timer);
        body.replaceChildren(h('p', { class: 'empty' }, `This session is not online (any more): ${err.message}.`));
        return;
      }
      throw err;
    }
    view.querySelector('h1')!.textContent = `${d.user} · ${d.protocol}`;
    const after = async (): Promise<void> => void (await load().catch(() => undefined));
    body.replaceChildren(
      h(
        'div',
        { class: 'toolbar' },
        h(
          'button',
          {
            type: 'button',
            class: 'secondary',
            onclick: () =>
              void (async () => {
                if (!(await confirmed(`Disconnect this ${d.protocol} session of ${d.user}?`, { action: 'Disconnect', detail: 'The client is told why in its protocol; it may connect again.' }))) return;
                await attempt(async () => (await api('POST', `/api/admin/sessions/${encodeURIComponent(id)}/disconnect`), showInfo(`Disconnected ${d.user}'s ${d.protocol} session.`), await after()));
              })(),
          },
          'Disconnect',
        ),
        h('button', { type: 'button', class: 'secondary', onclick: () => void disconnectUser(d.userId, d.user, after) }, 'Disconnect every session of the user'),
        d.userId.startsWith('app:')
          ? null
          : h(
              'button',
              {
                type: 'button',
                class: 'danger',
                onclick: () =>
                  void (async () => {
                    if (!(await confirmed(`Revoke every token of ${d.user}?`, { action: 'Revoke', danger: true, detail: 'All their sessions end, on every node, whether they logged in with a token, a password or a certificate.' }))) return;
                    await attempt(async () => (await api('POST', `/api/users/${encodeURIComponent(d.userId)}/revoke-tokens`), showInfo(`Revoked every token of ${d.user}; their sessions ended.`), await after()));
                  })(),
              },
              'Revoke tokens',
            ),
      ),
      facts(
        [
          ['User', `${d.user} (${d.role})`],
          ['Protocol', d.version ? `${d.protocol} (version ${d.version})` : d.protocol],
          ...(d.clientId !== undefined ? ([['MQTT client id', h('code', {}, d.clientId)]] as [string, Node | string][]) : []),
          ['Device', d.device],
          ['Address', d.remoteAddress],
          ['TLS', d.tls ? 'yes' : 'no'],
          ['Logged in with', CREDENTIAL[d.credential] ?? d.credential],
          ['Node', d.node],
          ['Connected since', time(d.connectedAt)],
          ['Session id', h('code', {}, d.sessionId)],
          ['In flight', `${d.inflight.messages} message${d.inflight.messages === 1 ? '' : 's'} sent and not yet acknowledged (${bytes(d.inflight.bytes)} held for them)`],
          ['Held', `${d.held.messages} message${d.held.messages === 1 ? '' : 's'} waiting for the client's window (${bytes(d.held.bytes)})`],
          ['Bytes in / out', `${bytes(d.bytesIn)} / ${bytes(d.bytesOut)}`],
        ],
        'client-facts',
      ),
      h('p', { class: 'note' }, 'Bytes in and out are the socket’s own counters since it opened: protocol framing and, for WebSocket clients, the HTTP upgrade included; over TLS, the decrypted bytes.'),
      h('h2', {}, `Subscriptions (${d.subscriptions.length})`),
      table(
        ['Destination', 'Kind', 'Filter or name', 'QoS', 'Ack', 'Unacked', 'Held'],
        d.subscriptions.map((s) => [h('code', {}, s.destination), s.group ? `shared (${s.group})` : s.kind, h('code', {}, s.key), s.qos === undefined ? '–' : String(s.qos), s.ack ?? '–', s.unacked === undefined ? '–' : String(s.unacked), s.held === undefined ? '–' : String(s.held)]),
        'No subscriptions.',
      ),
    );
  };
  void attempt(load);
  timer = window.setInterval(() => void attempt(load), 3000);
  onLeave(() => clearInterval(timer));
}
