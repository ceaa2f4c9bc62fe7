/**
 * Live debug over MQTT 5 (WebSocket /mqtt, the admin's token as password):
 * subscribe with a QoS, unsubscribe, publish with QoS, retain and v5
 * properties (content type, response topic, correlation data, message
 * expiry, user properties), and every packet each way with its properties.
 */
import { TOKEN_KEY } from '../api.js';
import { field, formValues, h, showError } from '../dom.js';
import { onLeave } from '../live.js';
import { hex, MqttWsClient, props, type PublishPacket } from '../mqtt-client.js';
import { reasonText, type Properties, type QoS } from '../mqtt-codec.js';
import { frameLog } from './debug.js';

const qosSelect = (name: string): HTMLElement => h('select', { name }, ...[0, 1, 2].map((q) => h('option', { value: String(q) }, `QoS ${q}`)));

/** `name=value` lines → user properties; a line without `=` is refused. */
function userProperties(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const i = line.indexOf('=');
    if (i <= 0) throw new Error(`user property "${line}" is not name=value`);
    out.push([line.slice(0, i).trim(), line.slice(i + 1).trim()]);
  }
  return out;
}

export function mqttPanel(): HTMLElement {
  const token = sessionStorage.getItem(TOKEN_KEY)!;
  const log = frameLog('mqtt-frames');
  const state = h('p', { id: 'mqtt-state' }, 'Connecting…');
  const subList = h('ul', { class: 'plain', id: 'mqtt-subscriptions' });
  const subscribed = new Set<string>();
  let client: MqttWsClient | undefined;
  const clientId = `console-${Math.random().toString(36).slice(2, 10)}`;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mqtt`;
  const text = new TextDecoder('utf-8', { fatal: true });

  const showMessage = (p: PublishPacket): void => {
    let body: string;
    try {
      body = text.decode(p.payload);
    } catch {
      body = `(hex) ${hex(p.payload)}`;
    }
    log.note('MESSAGE', `${p.topic}  ${body}`, h('span', { class: 'sub' }, `QoS ${p.qos}${p.retain ? ', retained' : ''}${props(p.properties)}`));
  };

  void MqttWsClient.connect(url, { clientId, username: 'console', password: token }, {
    message: showMessage,
    packet: (dir, summary) => log.note(dir === 'in' ? '← in' : '→ out', summary),
    closed: (why) => {
      state.textContent = `Disconnected: ${why}`;
      client = undefined;
    },
  }).then(
    (r) => {
      client = r.client;
      state.textContent = `Connected (MQTT 5 over WebSocket, client id ${r.properties.assignedClientIdentifier ?? clientId})`;
    },
    (err: Error) => {
      state.textContent = `Not connected: ${err.message}`;
    },
  );
  onLeave(() => client?.end());

  const drawSubs = (): void => {
    if (subscribed.size === 0) return void subList.replaceChildren(h('li', { class: 'empty' }, 'None yet.'));
    subList.replaceChildren(
      ...[...subscribed].map((f) =>
        h('li', {}, h('code', {}, f), ' ', h('button', { type: 'button', class: 'secondary', onclick: () => void unsubscribe(f) }, 'Unsubscribe')),
      ),
    );
  };
  const unsubscribe = async (filter: string): Promise<void> => {
    if (!client) return showError('Not connected.');
    const code = await client.unsubscribe(filter);
    subscribed.delete(filter);
    drawSubs();
    if (code >= 0x80) showError(`UNSUBSCRIBE ${filter}: ${reasonText(code)}`);
  };

  drawSubs();
  const subForm = h(
    'form',
    { class: 'toolbar', 'aria-label': 'MQTT subscribe' },
    field('Topic filter', h('input', { name: 'filter', value: 'demo/#', required: true })),
    field('QoS', qosSelect('qos')),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'noLocal', value: '1' }), ' No local (not my own messages)'),
    h('button', { type: 'submit' }, 'Subscribe'),
  ) as HTMLFormElement;
  subForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(subForm);
    const filter = v['filter']!;
    if (!client) return showError('Not connected.');
    void client.subscribe(filter, { qos: Number(v['qos']) as QoS, noLocal: v['noLocal'] === '1' }).then(
      (r) => {
        if (r.code >= 0x80) return showError(`The server refused the subscription to ${filter}: ${r.reason ?? reasonText(r.code)}`);
        subscribed.add(filter);
        drawSubs();
      },
      (err: Error) => showError(err.message),
    );
  });

  const pubForm = h(
    'form',
    { class: 'grid-form', 'aria-label': 'MQTT publish' },
    field('Topic', h('input', { name: 'topic', value: 'demo/hello', required: true })),
    field('QoS', qosSelect('qos')),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'retain', value: '1' }), ' Retain'),
    h('div', { class: 'span-all' }, field('Payload', h('textarea', { name: 'payload', rows: '3' }, 'hello from the console'))),
    field('Content type', h('input', { name: 'contentType', placeholder: 'text/plain' })),
    field('Response topic', h('input', { name: 'responseTopic' })),
    field('Correlation data', h('input', { name: 'correlation' })),
    field('Message expiry (seconds)', h('input', { name: 'expiry', type: 'number', min: '1', max: '4294967295' })),
    h('div', { class: 'span-all' }, field('User properties (name=value, one a line)', h('textarea', { name: 'userProperties', rows: '2' }))),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Publish')),
  ) as HTMLFormElement;
  pubForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(pubForm);
    if (!client) return showError('Not connected.');
    const properties: Properties = {};
    try {
      const up = userProperties(v['userProperties'] ?? '');
      if (up.length) properties.userProperties = up;
    } catch (err) {
      return showError((err as Error).message);
    }
    if (v['contentType']) properties.contentType = v['contentType'];
    if (v['responseTopic']) properties.responseTopic = v['responseTopic'];
    if (v['correlation']) properties.correlationData = new TextEncoder().encode(v['correlation']);
    if (v['expiry']) properties.messageExpiryInterval = Number(v['expiry']);
    const topic = v['topic']!;
    void client.publish(topic, new TextEncoder().encode(v['payload'] ?? ''), { qos: Number(v['qos']) as QoS, retain: v['retain'] === '1', properties }).then(
      (outcome) => log.note(outcome.startsWith('refused') ? 'ERROR' : 'PUBLISHED', `${topic}: ${outcome}`),
      (err: Error) => showError(err.message),
    );
  });

  const panel = h(
    'section',
    { id: 'debug-mqtt', 'aria-label': 'MQTT 5' },
    state,
    subForm,
    h('h2', {}, 'Subscriptions'),
    subList,
    h('h2', {}, 'Publish'),
    pubForm,
    h('h2', {}, 'Packets'),
    log.el,
  );
  return panel;
}
