/** Live debug: a STOMP session of the admin's own, to subscribe, send, and run the /test echo, showing every frame. */
import { Client, type IMessage, type StompSubscription } from '@stomp/stompjs';
import { TOKEN_KEY } from '../api.js';
import { field, formValues, h, showError, showInfo, view } from '../dom.js';
import { onLeave } from '../live.js';

export function renderDebug(): void {
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
  onLeave(() => void client.deactivate());
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
