/**
 * Live debug, in three tabs: a STOMP session of the admin's own (subscribe,
 * send, the /test echo), an MQTT 5 session (subscribe and publish with
 * QoS, retain and v5 properties, every packet shown), and a trace of a
 * topic filter (each message with its publisher and receivers). `#debug/mqtt`
 * and `#debug/trace` open a tab directly.
 */
import { Client, type IMessage, type StompSubscription } from '@stomp/stompjs';
import { TOKEN_KEY } from '../api.js';
import { field, formValues, h, segmented, showError, showInfo, view } from '../dom.js';
import { onLeave } from '../live.js';
import { mqttPanel } from './debug-mqtt.js';
import { tracePanel } from './debug-trace.js';

/** A list of frames or packets, newest first, at most 300. */
export function frameLog(id: string): { el: HTMLElement; note(kind: string, text: string, extra?: Node): void } {
  const el = h('ol', { class: 'frames', id, 'aria-live': 'polite' });
  return {
    el,
    note(kind, text, extra) {
      el.prepend(h('li', { class: 'frame-' + kind.split(' ')[0] }, h('time', {}, new Date().toLocaleTimeString()), ` ${kind} `, h('code', {}, text), extra ?? null));
      while (el.children.length > 300) el.lastElementChild!.remove();
    },
  };
}

function stompPanel(): HTMLElement {
  const token = sessionStorage.getItem(TOKEN_KEY)!;
  const log = frameLog('frames');
  const note = log.note;
  const state = h('p', { id: 'debug-state' }, 'Connecting…');
  const subs = new Map<string, StompSubscription>();
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
  /** A MESSAGE with its body, and its headers below (all but the destination, shown first). */
  const show = (m: IMessage): void => {
    const headers = Object.entries(m.headers).filter(([k]) => k !== 'destination');
    note('MESSAGE', `${m.headers['destination'] ?? ''}  ${m.body}`, h('span', { class: 'sub' }, headers.map(([k, v]) => `${k}: ${v}`).join('; ')));
  };

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
  return h('section', { id: 'debug-stomp', 'aria-label': 'STOMP' }, state, subForm, pubForm, echoForm, h('h2', {}, 'Frames'), log.el);
}

const TABS: [string, string][] = [
  ['stomp', 'STOMP'],
  ['mqtt', 'MQTT 5'],
  ['trace', 'Trace'],
];

export function renderDebug(arg?: string): void {
  const first = TABS.some(([id]) => id === arg) ? arg! : 'stomp';
  const panels = new Map<string, HTMLElement>();
  const holder = h('div', { id: 'debug-panels' });
  const build: Record<string, () => HTMLElement> = { stomp: stompPanel, mqtt: mqttPanel, trace: tracePanel };
  const choose = (id: string): void => {
    // Each tab starts when first shown and keeps running while the page is open.
    if (!panels.has(id)) {
      const panel = build[id]!();
      panels.set(id, panel);
      holder.append(panel);
    }
    for (const [k, p] of panels) p.hidden = k !== id;
    history.replaceState(null, '', id === 'stomp' ? '#debug' : `#debug/${id}`);
  };
  view.replaceChildren(h('h1', {}, 'Live debug'), h('div', { class: 'toolbar' }, segmented('Live debug tool', TABS, first, choose)), holder);
  choose(first);
}
