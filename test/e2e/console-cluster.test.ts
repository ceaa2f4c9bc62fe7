/**
 * The console's inspection API in a cluster of two nodes (PostgreSQL and
 * Redis, scripts/test-services.sh): subscriptions, a session in detail,
 * kicking a user, retained messages, queues, node health and traces all
 * speak for both nodes, whichever node is asked.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { api, login, startServer, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';
import { JsonClient, jsonUrl } from '../helpers/json-ws.js';
import { freshClusterName, freshDatabase, REDIS_URL, servicesMissing } from '../helpers/services.js';

const skip = servicesMissing('pg', 'redis');

async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface Group {
  kind: string;
  key: string;
  subscribers: number;
  protocols: Record<string, number>;
  nodes: string[];
  sessions: { sessionId: string; node: string; protocol: string }[];
}

describe('console inspection across a cluster of two nodes', { skip }, () => {
  let a: TestServer;
  let b: TestServer;
  let admin: string;
  let stomp: RawStomp;
  let m: MqttClient;
  let json: JsonClient;

  before(async () => {
    const db = await freshDatabase();
    const clusterName = freshClusterName();
    a = await startServer({ databaseUrl: db, redisUrl: REDIS_URL!, clusterName, presenceTtlSeconds: 2 });
    b = await startServer({ databaseUrl: db, redisUrl: REDIS_URL!, clusterName, presenceTtlSeconds: 2 });
    await until(() => a.server.ctx.cluster!.connected && b.server.ctx.cluster!.connected, 'both nodes to reach Redis');
    await until(async () => (await a.server.ctx.presence.nodes()).length === 2 && (await b.server.ctx.presence.nodes()).length === 2, 'each node to see the other');
    admin = await login(a.url);
    await api(a.url, 'POST', '/api/users', { token: admin, body: { name: 'roamer', password: 'roamer-password' } });
    stomp = await RawStomp.tcp(a.server.address('stomp').port);
    await stomp.connect({ login: 'roamer', passcode: 'roamer-password' });
    stomp.send('SUBSCRIBE\nid:1\ndestination:/topic/floor.*\nreceipt:r\n\n\0');
    await stomp.next('RECEIPT');
    m = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.server.address('mqtt').port}`, { username: 'roamer', password: 'roamer-password', reconnectPeriod: 0, clientId: 'roamer-b' });
    await m.subscribeAsync('floor/+', { qos: 1 });
    json = await JsonClient.open(jsonUrl(b, await login(b.url, 'roamer', 'roamer-password')));
    json.send({ action: 'subscribe', topic: 'floor.*' });
    await json.next('ok');
  });
  after(async () => {
    stomp?.close();
    await m?.endAsync().catch(() => undefined);
    json?.close();
    await a?.stop();
    await b?.stop();
  });

  it('lists every node\'s subscriptions from either node, and a session of the other node in detail', async () => {
    for (const [node, other] of [[a, b], [b, a]] as const) {
      const r = await api<{ groups: Group[]; missing: string[] }>(node.url, 'GET', '/api/admin/subscriptions?q=floor', { token: admin });
      assert.equal(r.status, 200, r.body.message);
      assert.deepEqual(r.body.data.missing, []);
      const floor = r.body.data.groups.find((g) => g.key === 'floor/+');
      assert.ok(floor, JSON.stringify(r.body.data));
      assert.equal(floor.subscribers, 3);
      assert.deepEqual(floor.protocols, { 'stomp-tcp': 1, 'mqtt-tcp': 1, 'json-ws': 1 });
      assert.deepEqual(floor.nodes.sort(), [a.server.ctx.nodeId, b.server.ctx.nodeId].sort());
      const remote = floor.sessions.find((x) => x.node === other.server.ctx.nodeId)!;
      const d = await api<{ node: string; protocol: string; subscriptions: { key: string }[]; bytesIn: number }>(node.url, 'GET', `/api/admin/sessions/${remote.sessionId}`, { token: admin });
      assert.equal(d.status, 200, d.body.message);
      assert.equal(d.body.data.node, other.server.ctx.nodeId);
      assert.equal(d.body.data.protocol, remote.protocol);
      assert.ok(d.body.data.subscriptions.some((x) => x.key === 'floor/+'));
      assert.ok(d.body.data.bytesIn > 0);
    }
  });

  it('shows both nodes\' health, and a retained message set on one node is seen and deleted from the other', async () => {
    const nodes = await api<{ nodes: { node: string; redis: { connected: boolean } | null; store: { kind: string } }[]; missing: string[] }>(a.url, 'GET', '/api/admin/nodes', { token: admin });
    assert.equal(nodes.status, 200, nodes.body.message);
    assert.deepEqual(nodes.body.data.nodes.map((n) => n.node), [a.server.ctx.nodeId, b.server.ctx.nodeId]);
    assert.deepEqual(nodes.body.data.nodes.map((n) => [n.redis?.connected, n.store.kind]), [[true, 'postgres'], [true, 'postgres']]);
    await m.publishAsync('floor/3', 'lights on', { qos: 1, retain: true });
    const listed = async (node: TestServer) => (await api<{ messages: { topic: string }[] }>(node.url, 'GET', '/api/admin/retained?filter=floor/%23', { token: admin })).body.data.messages.map((x) => x.topic);
    await until(async () => (await listed(a)).includes('floor/3'), 'the retained message on node a');
    assert.equal((await api(a.url, 'DELETE', '/api/admin/retained/message?topic=floor%2F3', { token: admin })).status, 200);
    await until(async () => (await listed(b)).length === 0, 'the deletion to reach node b');
  });

  it('traces on every node: a publish on b to subscribers on both is reported to a with its publisher and receivers', async () => {
    const open = await api<{ id: string; scope: string }>(a.url, 'POST', '/api/admin/traces', { token: admin, body: { filter: 'floor/#' } });
    assert.deepEqual([open.status, open.body.data.scope], [200, 'cluster']);
    // The other node starts tracing when it hears of it.
    await until(() => (b.server.ctx.broker as unknown as { tap: unknown }).tap !== undefined, 'node b to trace');
    await m.publishAsync('floor/7', 'from b', { qos: 1 });
    await stomp.next('MESSAGE');
    type Ev = { node: string; origin: string; messageId: string; publisher: { protocol: string } | null; receivers: { protocol: string }[]; receiverCount: number };
    let events: Ev[] = [];
    await until(async () => {
      events = (await api<{ events: Ev[] }>(a.url, 'GET', `/api/admin/traces/${open.body.data.id}`, { token: admin })).body.data.events;
      return events.length >= 2;
    }, 'events from both nodes');
    const fromB = events.find((e) => e.node === b.server.ctx.nodeId)!;
    const onA = events.find((e) => e.node === a.server.ctx.nodeId)!;
    assert.equal(fromB.messageId, onA.messageId, 'one message, one id on both nodes');
    assert.deepEqual([fromB.origin, fromB.publisher?.protocol, fromB.receiverCount], ['published', 'mqtt-tcp', 2]);
    assert.deepEqual(fromB.receivers.map((r) => r.protocol).sort(), ['json-ws', 'mqtt-tcp']);
    assert.deepEqual([onA.origin, onA.publisher, onA.receivers.map((r) => r.protocol)], ['received', null, ['stomp-tcp']]);
    assert.equal((await api(b.url, 'GET', `/api/admin/traces/${open.body.data.id}`, { token: admin })).status, 404, 'read where it was opened');
    assert.equal((await api(a.url, 'DELETE', `/api/admin/traces/${open.body.data.id}`, { token: admin })).status, 200);
    await until(() => (b.server.ctx.broker as unknown as { tap: unknown }).tap === undefined, 'node b to stop tracing');
  });

  it('shows a queue consumed on the other node, and ends a user\'s sessions on both nodes', async () => {
    const consumer = await RawStomp.tcp(b.server.address('stomp').port);
    await consumer.connect({ login: 'admin', passcode: ADMIN_PASSWORD });
    consumer.send('SUBSCRIBE\nid:1\ndestination:/queue/cluster-work\nack:client\nreceipt:r\n\n\0');
    await consumer.next('RECEIPT');
    const q = async () => (await api<{ queues: { name: string; consumers: number; nodes: string[] }[]; missing: string[] }>(a.url, 'GET', '/api/admin/queues', { token: admin })).body.data;
    const work = (await q()).queues.find((x) => x.name === 'cluster-work');
    assert.deepEqual([work?.consumers, work?.nodes], [1, [b.server.ctx.nodeId]]);
    consumer.close();
    const users = await api<{ id: string; name: string }[]>(a.url, 'GET', '/api/users', { token: admin });
    const roamer = users.body.data.find((u) => u.name === 'roamer')!.id;
    const r = await api<{ sessions: number; nodes: string[] }>(b.url, 'POST', `/api/admin/users/${roamer}/disconnect`, { token: admin });
    assert.equal(r.status, 200, r.body.message);
    assert.equal(r.body.data.sessions, 3);
    assert.deepEqual(r.body.data.nodes.sort(), [a.server.ctx.nodeId, b.server.ctx.nodeId].sort());
    await stomp.closedPromise;
    await json.closed;
    await until(() => !m.connected, 'the MQTT client on b to be ended');
  });
});
