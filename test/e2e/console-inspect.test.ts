/**
 * The console's inspection API with real clients on one node: live
 * subscriptions grouped by filter (STOMP, MQTT and JSON WebSocket), one
 * session in detail (subscriptions, in flight and held, bytes, TLS,
 * credential), and ending every session of a user; over TLS, a session
 * says so and node health marks the TLS listeners.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';
import { JsonClient, jsonUrl } from '../helpers/json-ws.js';
import { tcpUrl } from '../helpers/mqtt.js';
import { makePki, opensslMissing, type TestPki } from '../helpers/tls-certs.js';

interface Group {
  kind: string;
  key: string;
  stomp?: string;
  subscribers: number;
  protocols: Record<string, number>;
  qos: number[];
  ack: string[];
  nodes: string[];
  sessions: { sessionId: string; user: string; protocol: string; destination: string; node: string }[];
}
interface Detail {
  sessionId: string;
  protocol: string;
  user: string;
  credential: string;
  tls: boolean;
  version?: string;
  clientId?: string;
  bytesIn: number;
  bytesOut: number;
  inflight: { messages: number; bytes: number };
  held: { messages: number; bytes: number };
  subscriptions: { destination: string; kind: string; key: string; qos?: number; ack?: string; unacked?: number }[];
}

describe('console inspection API: subscriptions, session detail, kicking a user', () => {
  let s: TestServer;
  let admin: string;
  let stomp: RawStomp;
  let m: MqttClient;
  let json: JsonClient;

  before(async () => {
    s = await startServer();
    admin = await login(s.url);
    await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'watcher', password: 'watcher-password' } });
    await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'viewer', password: 'viewer-password', role: 'service' } });
    stomp = await RawStomp.tcp(s.server.address('stomp').port);
    await stomp.connect({ login: 'watcher', passcode: 'watcher-password' });
    stomp.send('SUBSCRIBE\nid:1\ndestination:/topic/sensors.*.temp\nack:client\nreceipt:r1\n\n\0');
    await stomp.next('RECEIPT');
    stomp.send('SUBSCRIBE\nid:2\ndestination:/queue/jobs\nack:client-individual\nreceipt:r2\n\n\0');
    await stomp.next('RECEIPT');
    m = await mqtt.connectAsync(tcpUrl(s), { username: 'watcher', password: 'watcher-password', protocolVersion: 5, clientId: 'watcher-mqtt', reconnectPeriod: 0 });
    await m.subscribeAsync({ 'sensors/+/temp': { qos: 1 }, '$share/workers/jobs/#': { qos: 2 } });
    json = await JsonClient.open(jsonUrl(s, await login(s.url, 'watcher', 'watcher-password')) + '?device=phone');
    json.send({ action: 'subscribe', topic: 'sensors.*.temp' });
    await json.next('ok');
  });
  after(async () => {
    stomp?.close();
    await m?.endAsync().catch(() => undefined);
    json?.close();
    await s?.stop();
  });

  it('groups live subscriptions by what they are to, with subscriber counts, protocols, QoS and ack modes', async () => {
    const r = await api<{ groups: Group[]; total: number; subscriptions: number; missing: string[] }>(s.url, 'GET', '/api/admin/subscriptions', { token: admin });
    assert.equal(r.status, 200, r.body.message);
    const { groups, missing } = r.body.data;
    assert.deepEqual(missing, []);
    const temp = groups.find((g) => g.kind === 'topic' && g.key === 'sensors/+/temp');
    assert.ok(temp, JSON.stringify(groups));
    assert.equal(temp.subscribers, 3, 'STOMP, MQTT and the JSON WebSocket on one filter');
    assert.deepEqual(temp.protocols, { 'stomp-tcp': 1, 'mqtt-tcp': 1, 'json-ws': 1 });
    assert.deepEqual(temp.qos, [1]);
    assert.deepEqual(temp.ack.sort(), ['auto', 'client']);
    assert.equal(temp.stomp, '/topic/sensors.*.temp');
    assert.deepEqual(temp.sessions.map((x) => x.destination).sort(), ['/topic/sensors.*.temp', 'sensors.*.temp', 'sensors/+/temp']);
    assert.equal(groups[0], temp, 'the most subscribed first');
    const shared = groups.find((g) => g.kind === 'shared');
    assert.deepEqual([shared?.key, shared?.qos], ['jobs/#', [2]]);
    const queue = groups.find((g) => g.kind === 'queue');
    assert.deepEqual([queue?.key, queue?.ack], ['jobs', ['client-individual']]);
    assert.ok(groups.some((g) => g.kind === 'user' && g.key === 'messages'), 'the JSON WebSocket mailbox');
    // Filters: by protocol, by kind, by part of a name; a service may read them too.
    const viewer = await login(s.url, 'viewer', 'viewer-password');
    const mqttOnly = await api<{ groups: Group[] }>(s.url, 'GET', '/api/admin/subscriptions?protocol=mqtt-tcp', { token: viewer });
    assert.deepEqual(mqttOnly.body.data.groups.map((g) => g.key).sort(), ['jobs/#', 'sensors/+/temp']);
    const queues = await api<{ groups: Group[] }>(s.url, 'GET', '/api/admin/subscriptions?kind=queue', { token: admin });
    assert.deepEqual(queues.body.data.groups.map((g) => g.key), ['jobs']);
    const found = await api<{ groups: Group[] }>(s.url, 'GET', '/api/admin/subscriptions?q=SENSORS', { token: admin });
    assert.deepEqual(found.body.data.groups.map((g) => g.key), ['sensors/+/temp']);
    assert.equal((await api(s.url, 'GET', '/api/admin/subscriptions?kind=nope', { token: admin })).status, 400);
    const user = await login(s.url, 'watcher', 'watcher-password');
    assert.equal((await api(s.url, 'GET', '/api/admin/subscriptions', { token: user })).status, 403);
  });

  it('shows one session in detail: subscriptions, messages in flight, bytes, TLS and credential', async () => {
    const list = await api<{ sessionId: string; protocol: string; loginName: string }[]>(s.url, 'GET', '/api/message/getWebSocketClients', { token: admin });
    const id = (p: string) => list.body.data.find((x) => x.protocol === p && x.loginName === 'watcher')!.sessionId;
    // A queue message left unacknowledged by the STOMP client is in flight.
    await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/queue/jobs', body: 'job 1' } });
    await stomp.next('MESSAGE');
    const st = await api<Detail>(s.url, 'GET', `/api/admin/sessions/${id('stomp-tcp')}`, { token: admin });
    assert.equal(st.status, 200, st.body.message);
    const d = st.body.data;
    assert.deepEqual([d.protocol, d.user, d.credential, d.tls, d.version], ['stomp-tcp', 'watcher', 'password', false, '1.2']);
    assert.equal(d.inflight.messages, 1);
    assert.ok(d.inflight.bytes > 0);
    assert.ok(d.bytesIn > 50 && d.bytesOut > 50, `bytes counted: ${d.bytesIn} in, ${d.bytesOut} out`);
    assert.deepEqual(d.subscriptions.map((x) => [x.destination, x.kind, x.key, x.ack, x.unacked]), [
      ['/topic/sensors.*.temp', 'topic', 'sensors/+/temp', 'client', 0],
      ['/queue/jobs', 'queue', 'jobs', 'client-individual', 1],
    ]);
    const mq = (await api<Detail>(s.url, 'GET', `/api/admin/sessions/${id('mqtt-tcp')}`, { token: admin })).body.data;
    assert.deepEqual([mq.version, mq.clientId, mq.credential], ['5', 'watcher-mqtt', 'password']);
    assert.deepEqual(mq.subscriptions.map((x) => [x.destination, x.kind, x.key, x.qos]), [
      ['sensors/+/temp', 'topic', 'sensors/+/temp', 1],
      ['$share/workers/jobs/#', 'shared', 'jobs/#', 2],
    ]);
    const js = (await api<Detail>(s.url, 'GET', `/api/admin/sessions/${id('json-ws')}`, { token: admin })).body.data;
    assert.equal(js.credential, 'token');
    assert.deepEqual(js.subscriptions.map((x) => x.kind), ['user', 'topic']);
    const missing = await api(s.url, 'GET', '/api/admin/sessions/stomp-nope-1', { token: admin });
    assert.equal(missing.status, 404);
    assert.match(missing.body.message, /no session stomp-nope-1 is online/);
  });

  it('ends every session of a user on every protocol, and writes it to the audit log', async () => {
    const users = await api<{ id: string; name: string }[]>(s.url, 'GET', '/api/users', { token: admin });
    const watcher = users.body.data.find((u) => u.name === 'watcher')!.id;
    const viewer = await login(s.url, 'viewer', 'viewer-password');
    assert.equal((await api(s.url, 'POST', `/api/admin/users/${watcher}/disconnect`, { token: viewer })).status, 403, 'admins only');
    const mqttClosed = new Promise<void>((r) => m.once('close', () => r()));
    const r = await api<{ sessions: number; nodes: string[] }>(s.url, 'POST', `/api/admin/users/${watcher}/disconnect`, { token: admin });
    assert.equal(r.status, 200, r.body.message);
    assert.equal(r.body.data.sessions, 3);
    await stomp.closedPromise;
    await mqttClosed;
    await json.closed;
    const error = stomp.frames.find((f) => f.command === 'ERROR');
    assert.match(error?.headers.find(([k]) => k === 'message')?.[1] ?? '', /disconnected by admin/);
    const again = await api(s.url, 'POST', `/api/admin/users/${watcher}/disconnect`, { token: admin });
    assert.equal(again.status, 404);
    assert.match(again.body.message, /has no session online/);
    const audit = await api<{ records: { action: string; target: string; detail: { sessions: number } }[] }>(s.url, 'GET', '/api/admin/audit?action=session', { token: admin });
    const entry = audit.body.data.records.find((e) => e.action === 'session.disconnect-user');
    assert.deepEqual([entry?.target, entry?.detail.sessions], ['every session of watcher', 3]);
  });
});

describe('console inspection API over TLS', { skip: opensslMissing() }, () => {
  let s: TestServer;
  let pki: TestPki;

  before(async () => {
    pki = makePki();
    s = await startServer({ httpsPort: 0, stompTlsPort: 0, mqttTlsPort: 0, tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey });
  });
  after(async () => {
    await s?.stop();
    pki?.destroy();
  });

  it('says a session is TLS and counts its decrypted bytes; node health marks the TLS listeners', async () => {
    const admin = await login(s.url);
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${s.server.address('mqtt-tls').port}`, { username: 'admin', password: 'admin-secret-pw', ca: pki.read(pki.ca), reconnectPeriod: 0, clientId: 'over-tls' });
    await c.subscribeAsync('secure/#');
    const list = await api<{ sessionId: string; protocol: string }[]>(s.url, 'GET', '/api/message/getWebSocketClients', { token: admin });
    const id = list.body.data.find((x) => x.protocol === 'mqtt-tcp')!.sessionId;
    const d = await api<Detail>(s.url, 'GET', `/api/admin/sessions/${id}`, { token: admin });
    assert.deepEqual([d.body.data.tls, d.body.data.clientId], [true, 'over-tls']);
    // CONNECT and SUBSCRIBE as sent, not the TLS records around them (a few hundred bytes more).
    assert.ok(d.body.data.bytesIn > 20 && d.body.data.bytesIn < 200, `bytes in: ${d.body.data.bytesIn}`);
    const nodes = await api<{ nodes: { listeners: { name: string; tls: boolean }[] }[] }>(s.url, 'GET', '/api/admin/nodes', { token: admin });
    const tls = Object.fromEntries(nodes.body.data.nodes[0]!.listeners.map((l) => [l.name, l.tls]));
    assert.deepEqual(tls, { http: false, https: true, stomp: false, 'stomp-tls': true, mqtt: false, 'mqtt-tls': true });
    await c.endAsync();
  });
});
