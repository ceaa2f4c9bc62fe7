/**
 * Persistent MQTT sessions in a cluster, where the publishing node stores
 * (protocols/mqtt/durable.ts), and the node lease beside presence: the edge
 * cases an outside review found, on two in-process nodes.
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import mqtt from 'mqtt';
import type mqttPacket from 'mqtt-packet';
import { ADMIN_PASSWORD, startServer, type TestServer } from '../helpers/server.js';
import { RawMqtt, tcpUrl } from '../helpers/mqtt.js';
import { freshClusterName, freshDatabase, postgresServerMissing, privatePostgres, REDIS_URL, servicesMissing } from '../helpers/services.js';

const skip = servicesMissing('pg', 'redis');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean | Promise<boolean>, what: string, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

function publishes(c: RawMqtt, topic?: string): mqttPacket.IPublishPacket[] {
  return c.packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish' && (topic === undefined || p.topic === topic));
}

describe('cluster: persistent MQTT sessions stored by the publishing node', { skip }, () => {
  let a: TestServer;
  let b: TestServer;
  let pub: mqtt.MqttClient;

  before(async () => {
    const db = await freshDatabase();
    const name = freshClusterName();
    a = await startServer({ databaseUrl: db, redisUrl: REDIS_URL!, clusterName: name, presenceTtlSeconds: 2 });
    b = await startServer({ databaseUrl: db, redisUrl: REDIS_URL!, clusterName: name, presenceTtlSeconds: 2 });
    await until(() => a.server.ctx.cluster!.connected && b.server.ctx.cluster!.connected, 'Redis');
    pub = await mqtt.connectAsync(tcpUrl(b), { username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0, protocolVersion: 5 });
  });

  after(async () => {
    await pub?.endAsync();
    await b?.stop();
    await a?.stop();
  });

  it('a wake-up while a retained message is in flight does not send that message again', async () => {
    await pub.publishAsync('rv1/retained', 'kept', { qos: 1, retain: true });
    const c = await RawMqtt.open(a.server.address('mqtt').port, 5);
    const ack = await c.connect('review-1', 'admin', ADMIN_PASSWORD, { clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(ack.reasonCode, 0);
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rv1/#', qos: 1 }] });
    await c.next('suback');
    await until(() => publishes(c, 'rv1/retained').length === 1, 'the retained message');
    await sleep(300); // its row (written by send(), with its packet id) is in the store now; no PUBACK from us
    // A QoS 1 message published on B: stored by B for review-1, and A is woken up (pullStored → a new replay).
    await pub.publishAsync('rv1/live', 'x', { qos: 1 });
    await until(() => publishes(c, 'rv1/live').length === 1, 'the live message through the store');
    await sleep(500);
    const retained = publishes(c, 'rv1/retained');
    assert.equal(retained.length, 1, `the in-flight retained message came ${retained.length} times: ${JSON.stringify(retained.map((p) => ({ id: p.messageId, dup: p.dup })))}`);
    c.sock.destroy();
  });

  it('a client that drops during its replay gets each message once (no second row at detach)', async () => {
    const id = 'review-2';
    // A session on A, then away: two messages wait in its stored queue.
    let c = await RawMqtt.open(a.server.address('mqtt').port, 5);
    await c.connect(id, 'admin', ADMIN_PASSWORD, { clean: false, properties: { sessionExpiryInterval: 300 } });
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rv2/t', qos: 1 }] });
    await c.next('suback');
    c.send({ cmd: 'disconnect' });
    await c.closed;
    await sleep(300);
    await pub.publishAsync('rv2/t', 'm1', { qos: 1 });
    await pub.publishAsync('rv2/t', 'm2', { qos: 1 });
    // Back on A with a window of one: the replay sends m1 and waits for its PUBACK (it never comes).
    c = await RawMqtt.open(a.server.address('mqtt').port, 5);
    await c.connect(id, 'admin', ADMIN_PASSWORD, { clean: false, properties: { sessionExpiryInterval: 300, receiveMaximum: 1 } });
    await until(() => publishes(c).length === 1, 'm1');
    // m3 is published while the replay runs: B stores its row, and A's live copy waits in waitingLive.
    await pub.publishAsync('rv2/t', 'm3', { qos: 1 });
    await sleep(500);
    c.sock.destroy(); // dropped mid-replay: waitingLive's m3 goes to detach(), which keeps it again
    await c.closed;
    await sleep(800);
    c = await RawMqtt.open(a.server.address('mqtt').port, 5);
    await c.connect(id, 'admin', ADMIN_PASSWORD, { clean: false, properties: { sessionExpiryInterval: 300 } });
    await sleep(1500);
    const got = publishes(c).map((p) => `${p.payload.toString()}${p.dup ? '(dup)' : ''}`);
    for (const p of publishes(c)) c.send({ cmd: 'puback', messageId: p.messageId! });
    const m3 = got.filter((x) => x.startsWith('m3'));
    assert.equal(m3.length, 1, `m3 came ${m3.length} times: ${got.join(', ')}`);
    c.sock.destroy();
  });

  it('a session that disconnects is marked disconnected in the store', async () => {
    const id = 'review-3';
    const c = await RawMqtt.open(a.server.address('mqtt').port, 5);
    await c.connect(id, 'admin', ADMIN_PASSWORD, { clean: false, properties: { sessionExpiryInterval: 300 } });
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rv3/t', qos: 1 }] });
    await c.next('suback');
    c.send({ cmd: 'disconnect' });
    await c.closed;
    await sleep(500);
    const record = await a.server.ctx.store.getMqttSession(id);
    assert.notEqual(record?.disconnectedAt ?? null, null, 'disconnectedAt of a session whose client left');
  });
});

describe('cluster: presence in Redis does not depend on PostgreSQL', { skip: skip || postgresServerMissing() }, () => {
  it("keeps every node's sessions in presence through a PostgreSQL outage longer than the TTL", async () => {
    const pg = await privatePostgres();
    await pg.start();
    const name = freshClusterName();
    const a = await startServer({ databaseUrl: pg.url, redisUrl: REDIS_URL!, clusterName: name, presenceTtlSeconds: 2 });
    const b = await startServer({ databaseUrl: pg.url, redisUrl: REDIS_URL!, clusterName: name, presenceTtlSeconds: 2 });
    try {
      await until(() => a.server.ctx.cluster!.connected && b.server.ctx.cluster!.connected, 'Redis');
      const c = await RawMqtt.open(a.server.address('mqtt').port, 5);
      await c.connect('review-presence', 'admin', ADMIN_PASSWORD);
      const seenFromB = async () => (await b.server.ctx.presence.sessions()).some((s) => s.device === 'review-presence');
      await until(seenFromB, 'B to see the client connected to A');
      await sleep(1500); // a lease tick has given A's sess key its TTL
      await pg.stop();
      await sleep(4000); // two TTLs without a lease tick: A's sess key is not refreshed
      const during = await seenFromB();
      await pg.start();
      await sleep(5000); // lease ticks run again
      const afterwards = await seenFromB();
      c.sock.destroy();
      assert.deepEqual({ during, afterwards }, { during: true, afterwards: true }, 'the client stayed connected to A throughout');
    } finally {
      await b.stop().catch(() => undefined);
      await a.stop().catch(() => undefined);
      await pg.destroy();
    }
  });
});

describe('cluster: two processes under one node name', { skip }, () => {
  it('do not fence each other in turn: the old one, fenced, steps back', async () => {
    const db = await freshDatabase();
    const name = freshClusterName();
    const old = await startServer({ databaseUrl: db, redisUrl: REDIS_URL!, clusterName: name, nodeName: 'same', presenceTtlSeconds: 2 });
    const fresh = await startServer({ databaseUrl: db, redisUrl: REDIS_URL!, clusterName: name, nodeName: 'same', presenceTtlSeconds: 2 });
    try {
      const owners = { old: new Set<string>(), fresh: new Set<string>() };
      const deadline = Date.now() + 6000;
      while (Date.now() < deadline) {
        owners.old.add(old.server.ctx.broker.owner);
        owners.fresh.add(fresh.server.ctx.broker.owner);
        await sleep(100);
      }
      assert.deepEqual({ old: owners.old.size, fresh: owners.fresh.size }, { old: 1, fresh: 1 }, `incarnations seen: ${JSON.stringify({ old: [...owners.old], fresh: [...owners.fresh] })}`);
    } finally {
      await fresh.stop().catch(() => undefined);
      await old.stop().catch(() => undefined);
    }
  });
});
