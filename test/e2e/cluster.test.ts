/**
 * Cluster mode: several Herald nodes on one PostgreSQL and one Redis behave
 * as one server. Nodes run in this process (HeraldServer.start) except where
 * a node must die by SIGKILL, which needs a process of its own.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { describe, it, before, after } from 'node:test';
import mqtt from 'mqtt';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { api, login, startServer, ADMIN_PASSWORD, tempDir, type TestServer } from '../helpers/server.js';
import { RawStomp, frameHeader, wsUrl } from '../helpers/stomp.js';
import { JsonClient } from '../helpers/json-ws.js';
import { runCommand, runHerald, type HeraldProcess } from '../helpers/process.js';
import { freePort, freshClusterName, freshDatabase, REDIS_URL, servicesMissing } from '../helpers/services.js';

const skip = servicesMissing('pg', 'redis');
const ADMIN = { login: 'admin', passcode: ADMIN_PASSWORD };
const ADMIN_MQTT = { username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 };
const TTL = 2;

interface TestCluster {
  db: string;
  name: string;
  nodes: TestServer[];
  start(): Promise<TestServer>;
  stop(): Promise<void>;
}

async function startCluster(n: number): Promise<TestCluster> {
  const c: TestCluster = {
    db: await freshDatabase(),
    name: freshClusterName(),
    nodes: [],
    async start() {
      const node = await startServer({ databaseUrl: c.db, redisUrl: REDIS_URL!, clusterName: c.name, presenceTtlSeconds: TTL });
      c.nodes.push(node);
      return node;
    },
    async stop() {
      for (const node of c.nodes) await node.stop();
    },
  };
  for (let i = 0; i < n; i++) await c.start();
  await untilTrue(async () => c.nodes.every((node) => node.server.ctx.cluster!.connected), 'nodes to reach Redis');
  return c;
}

async function untilTrue(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A node's herald_bus_messages_total{direction="in",kind}, read from its /metrics like a scraper would. */
async function busIn(node: TestServer, kind: 'message' | 'queue' | 'control'): Promise<number> {
  const text = await (await fetch(node.url + '/metrics')).text();
  const m = new RegExp(`^herald_bus_messages_total\\{direction="in",kind="${kind}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** Subscriptions reach Redis a round trip after SUBSCRIBE; give them that. */
const busSettle = () => new Promise((r) => setTimeout(r, 300));

async function stompTcp(node: TestServer, headers: Record<string, string> = ADMIN): Promise<RawStomp> {
  const c = await RawStomp.tcp(node.server.address('stomp').port);
  const f = await c.connect(headers);
  assert.equal(f.command, 'CONNECTED', f.body.toString());
  return c;
}

function mqttUrl(node: TestServer): string {
  return `mqtt://127.0.0.1:${node.server.address('mqtt').port}`;
}

/** An mqtt.js client whose messages are collected from the first packet on (a session's queue comes right after CONNACK). */
async function mqttPeer(node: TestServer, opts: mqtt.IClientOptions): Promise<{ client: mqtt.MqttClient; got: [string, string][]; sessionPresent: boolean; next(timeoutMs?: number): Promise<[string, string]> }> {
  const client = mqtt.connect(mqttUrl(node), opts);
  const got: [string, string][] = [];
  let taken = 0;
  client.on('message', (t, p) => got.push([t, p.toString()]));
  const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
    client.once('connect', (p) => resolve(p));
    client.once('error', reject);
    setTimeout(() => reject(new Error('no CONNACK in 5 s')), 5000);
  });
  return {
    client,
    got,
    sessionPresent: connack.sessionPresent,
    async next(timeoutMs = 5000) {
      await untilTrue(() => got.length > taken, 'an MQTT message', timeoutMs);
      return got[taken++]!;
    },
  };
}

async function addUser(node: TestServer, admin: string, name: string): Promise<{ id: string; token: string }> {
  const r = await api<{ id: string }>(node.url, 'POST', '/api/users', { token: admin, body: { name, password: name + '-password', role: 'user' } });
  assert.equal(r.status, 200, r.body.message);
  return { id: r.body.data.id, token: await login(node.url, name, name + '-password') };
}

describe('cluster: three nodes on one PostgreSQL and one Redis', { skip }, () => {
  let cl: TestCluster;
  let a: TestServer;
  let b: TestServer;
  let c: TestServer;
  let admin: string;
  before(async () => {
    cl = await startCluster(3);
    [a, b, c] = cl.nodes as [TestServer, TestServer, TestServer];
    admin = await login(a.url);
  });
  after(async () => {
    await cl.stop();
  });

  it('reports ready with the cluster, and each node by its own id', async () => {
    const ids = new Set<string>();
    for (const node of cl.nodes) {
      const r = await api<{ status: string; store: string; node: string; cluster: boolean }>(node.url, 'GET', '/readyz');
      assert.equal(r.status, 200);
      assert.equal(r.body.data.store, 'postgres');
      assert.equal(r.body.data.cluster, true);
      ids.add(r.body.data.node);
    }
    assert.equal(ids.size, 3);
  });

  it('delivers to a STOMP subscriber on A what MQTT publishes on B and HTTP on C, and nothing twice', async () => {
    const sub = await stompTcp(a);
    sub.send('SUBSCRIBE\nid:1\ndestination:/topic/news.*\nreceipt:r1\n\n\0');
    await sub.next('RECEIPT');
    await busSettle();
    const pub = await mqtt.connectAsync(mqttUrl(b), { username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 });
    await pub.publishAsync('news/mqtt', 'from mqtt on B', { qos: 1 });
    const m1 = await sub.next('MESSAGE');
    assert.equal(frameHeader(m1, 'destination'), '/topic/news.mqtt');
    assert.equal(m1.body.toString(), 'from mqtt on B');
    const r = await api(c.url, 'POST', '/api/publish', { token: admin, body: { destination: '/topic/news.http', body: 'from http on C' } });
    assert.equal(r.status, 200, r.body.message);
    const m2 = await sub.next('MESSAGE');
    assert.equal(frameHeader(m2, 'destination'), '/topic/news.http');
    assert.equal(m2.body.toString(), 'from http on C');
    // A local publish on A reaches A's subscriber once (not again through the bus).
    await api(a.url, 'POST', '/api/publish', { token: admin, body: { destination: '/topic/news.local', body: 'local' } });
    assert.equal((await sub.next('MESSAGE')).body.toString(), 'local');
    await busSettle();
    assert.deepEqual(sub.frames.filter((f) => f.command === 'MESSAGE'), [], 'no duplicates');
    await pub.endAsync();
    sub.close();
  });

  it('subscribes each node only to what its clients need', async () => {
    const bus = b.server.ctx.cluster!.bus;
    const before = bus.dropped;
    const sub = await stompTcp(a);
    sub.send('SUBSCRIBE\nid:1\ndestination:/topic/only.a\nreceipt:r\n\n\0');
    await sub.next('RECEIPT');
    await busSettle();
    const [aBefore, cBefore] = [await busIn(a, 'message'), await busIn(c, 'message')];
    await api(b.url, 'POST', '/api/publish', { token: admin, body: { destination: '/topic/only.a', body: 'x' } });
    assert.equal((await sub.next('MESSAGE')).body.toString(), 'x');
    await busSettle();
    assert.equal(await busIn(a, 'message'), aBefore + 1, 'A, with the subscriber, got it through the bus');
    assert.equal(await busIn(c, 'message'), cBefore, 'C has no subscriber for it and never sees it');
    assert.equal(bus.dropped, before);
    sub.close();
  });

  it('re-sends an unacknowledged user message at reconnect on another node, and not after it is acked', async () => {
    const bob = await addUser(a, admin, 'bob');
    const s1 = await stompTcp(a, { passcode: bob.token });
    s1.send('SUBSCRIBE\nid:m\ndestination:/user/queue/messages\nack:client-individual\nreceipt:r\n\n\0');
    await s1.next('RECEIPT');
    await busSettle();
    const sent = await api<{ id: string }>(b.url, 'POST', '/api/message/sendMessage', {
      token: admin,
      body: { receiver: [bob.id], title: 'hello', content: 'sent on B', type: 'NOTICE' },
    });
    assert.equal(sent.status, 200, sent.body.message);
    const first = await s1.next('MESSAGE');
    assert.match(first.body.toString(), /sent on B/);
    s1.close(); // no ACK
    await s1.closedPromise;
    const s2 = await stompTcp(c, { passcode: bob.token });
    s2.send('SUBSCRIBE\nid:m\ndestination:/user/queue/messages\nack:client-individual\n\n\0');
    const again = await s2.next('MESSAGE');
    assert.match(again.body.toString(), /sent on B/);
    s2.send(`ACK\nid:${frameHeader(again, 'ack')}\nreceipt:acked\n\n\0`);
    await s2.next('RECEIPT');
    await untilTrue(async () => {
      const page = await api<{ records: { id: string; receivers: { status: string }[] }[] }>(a.url, 'GET', '/api/message/getMessagePage?size=10', { token: admin });
      return page.body.data.records.find((m) => m.id === sent.body.data.id)?.receivers[0]?.status === 'DELIVERED';
    }, 'the DELIVERED status');
    s2.close();
    const s3 = await stompTcp(b, { passcode: bob.token });
    s3.send('SUBSCRIBE\nid:m\ndestination:/user/queue/messages\nack:client-individual\nreceipt:r\n\n\0');
    await s3.next('RECEIPT');
    await busSettle();
    assert.deepEqual(s3.frames.filter((f) => f.command === 'MESSAGE'), [], 'acked: not sent again');
    s3.close();
  });

  it('lists sessions of every node in presence, and broadcasts to users online anywhere', async () => {
    const carol = await addUser(a, admin, 'carol');
    const dave = await addUser(a, admin, 'dave');
    const sa = await stompTcp(a, { passcode: carol.token });
    sa.send('SUBSCRIBE\nid:1\ndestination:/topic/presence.a\nreceipt:r1\n\n\0');
    sa.send('SUBSCRIBE\nid:2\ndestination:/topic/presence.b\nreceipt:r2\n\n\0');
    await sa.next('RECEIPT');
    await sa.next('RECEIPT');
    const mb = await mqtt.connectAsync(mqttUrl(b), { username: 'dave', password: 'dave-password', clientId: 'dave-phone', reconnectPeriod: 0 });
    const jc = await JsonClient.open(c.url.replace(/^http/, 'ws') + '/websocket/' + carol.token);
    type Listed = { loginName: string; node: string; protocol: string; subscriptions?: number; unacked?: number };
    let listed: Listed[] = [];
    await untilTrue(async () => {
      const r = await api<Listed[]>(b.url, 'GET', '/api/message/getWebSocketClients', { token: admin });
      listed = r.body.data.filter((s) => s.loginName === 'carol' || s.loginName === 'dave');
      return listed.length === 3 && new Set(listed.map((s) => s.node)).size === 3;
    }, 'three sessions on three nodes in presence');
    // Live figures come for other nodes' sessions too (asked for over the bus): carol's STOMP session on A has 2 subscriptions.
    const onA = listed.find((s) => s.node === a.server.ctx.nodeId && s.protocol === 'stomp-tcp');
    assert.deepEqual([onA?.subscriptions, onA?.unacked], [2, 0], JSON.stringify(listed));
    assert.ok(listed.every((s) => typeof s.subscriptions === 'number'), JSON.stringify(listed));
    // A broadcast (no receivers) goes to everyone online, wherever connected.
    const sent = await api<{ receivers: string[] }>(c.url, 'POST', '/api/message/sendMessage', { token: admin, body: { title: 'all', content: 'everyone', type: 'NOTICE' } });
    assert.equal(sent.status, 200, sent.body.message);
    assert.ok(sent.body.data.receivers.includes(carol.id) && sent.body.data.receivers.includes(dave.id), JSON.stringify(sent.body.data));
    sa.close();
    await mb.endAsync();
    jc.close();
    await untilTrue(async () => {
      const r = await api<{ loginName: string }[]>(a.url, 'GET', '/api/message/getWebSocketClients', { token: admin });
      return !r.body.data.some((s) => s.loginName === 'carol' || s.loginName === 'dave');
    }, 'the sessions to leave presence');
  });

  it('honours a token issued on A at once on B, and a logout on A closes its sockets on B and C', async () => {
    const erin = await addUser(a, admin, 'erin');
    const onB = await RawStomp.ws(wsUrl(b.url, '/v1/ws?__token=' + erin.token));
    assert.equal((await onB.connect({})).command, 'CONNECTED');
    const onC = await JsonClient.open(c.url.replace(/^http/, 'ws') + '/websocket/' + erin.token);
    const r = await api(a.url, 'POST', '/v1/logout', { token: erin.token });
    assert.equal(r.status, 200);
    const err = await onB.next('ERROR');
    assert.equal(frameHeader(err, 'message'), 'token revoked');
    await onB.closedPromise;
    await onC.closed;
    assert.equal(onC.closeCode, 4403);
    const again = await api(c.url, 'GET', '/v1/me', { token: erin.token });
    assert.equal(again.status, 401);
  });

  it("ends a user's password sessions on every node when their tokens are revoked on one, and leaves the audit entry in the shared store", async () => {
    const gina = await addUser(a, admin, 'gina');
    const onB = await stompTcp(b, { login: 'gina', passcode: 'gina-password' });
    const onC = await mqtt.connectAsync(mqttUrl(c), { username: 'gina', password: 'gina-password', reconnectPeriod: 0 });
    const mqttClosed = new Promise<void>((resolve) => onC.on('close', () => resolve()));
    const r = await api(a.url, 'POST', `/api/users/${gina.id}/revoke-tokens`, { token: admin });
    assert.equal(r.status, 200, r.body.message);
    const err = await onB.next('ERROR');
    assert.equal(frameHeader(err, 'message'), 'an administrator revoked the logins of "gina"; connect again with valid credentials');
    await onB.closedPromise;
    await mqttClosed;
    // Every node reads the one audit log.
    const log = await api<{ records: { action: string; target: string; node: string }[] }>(c.url, 'GET', '/api/admin/audit?action=user.revoke', { token: admin });
    assert.equal(log.body.data.records[0]?.target, `user "gina" (id ${gina.id})`);
    assert.equal(log.body.data.records[0]?.node, a.server.ctx.nodeId);
    await onC.endAsync(true);
  });

  it('hands each /queue/ message to exactly one consumer across nodes', async () => {
    const consumers: RawStomp[] = [];
    for (const node of [a, b, c, a, b, c]) {
      const s = await stompTcp(node);
      s.send('SUBSCRIBE\nid:q\ndestination:/queue/jobs\nack:client-individual\nreceipt:r\n\n\0');
      await s.next('RECEIPT');
      consumers.push(s);
    }
    await busSettle();
    const N = 240;
    const publishers = await Promise.all([a, b, c].map((node) => stompTcp(node)));
    for (let i = 0; i < N; i++) publishers[i % 3]!.send(`SEND\ndestination:/queue/jobs\n${i === N - 1 ? 'receipt:last\n' : ''}\n${i}\0`);
    const got: string[] = [];
    const perConsumer = consumers.map(() => 0);
    const deadline = Date.now() + 20_000;
    while (got.length < N && Date.now() < deadline) {
      await Promise.all(
        consumers.map(async (s, i) => {
          const f = await s.next('MESSAGE', 100).catch(() => undefined);
          if (!f) return;
          got.push(f.body.toString());
          perConsumer[i]!++;
          s.send(`ACK\nid:${frameHeader(f, 'ack')}\n\n\0`);
        }),
      );
    }
    await busSettle();
    for (const s of consumers) for (const f of s.frames.filter((x) => x.command === 'MESSAGE')) got.push(f.body.toString());
    assert.equal(got.length, N, `got ${got.length} of ${N}`);
    assert.equal(new Set(got).size, N, 'no message delivered twice');
    assert.ok(perConsumer.filter((n) => n > 0).length >= 3, `consumers on several nodes took part: ${perConsumer.join(',')}`);
    for (const s of [...consumers, ...publishers]) s.close();
  });

  it('keeps MQTT retained messages, persistent sessions and shared subscriptions whole across nodes', async () => {
    const opts = { username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 };
    // Retained on B, seen by a new subscriber on C.
    const pb = await mqttPeer(b, opts);
    await pb.client.publishAsync('status/door', 'open', { qos: 1, retain: true });
    // The announcement reaches C within a bus round trip: a new subscriber there gets the retained message.
    await untilTrue(async () => {
      const sc = await mqttPeer(c, opts);
      await sc.client.subscribeAsync('status/#', { qos: 1 });
      const got = await sc.next(500).catch(() => undefined);
      await sc.client.endAsync();
      return got?.[0] === 'status/door' && got[1] === 'open';
    }, 'the retained message on C');

    // A persistent session made on A, fed from B while away, resumed on C.
    const s1 = await mqttPeer(a, { ...opts, clientId: 'sensor-7', clean: false });
    await s1.client.subscribeAsync('cmd/sensor-7', { qos: 1 });
    await s1.client.endAsync();
    await busSettle();
    await pb.client.publishAsync('cmd/sensor-7', 'reboot', { qos: 1 });
    await busSettle();
    const s2 = await mqttPeer(c, { ...opts, clientId: 'sensor-7', clean: false });
    assert.equal(s2.sessionPresent, true, 'the session made on A is present on C');
    assert.deepEqual(await s2.next(), ['cmd/sensor-7', 'reboot']);

    // The same client id connecting on B takes over from C.
    const closedOnC = new Promise<void>((resolve) => s2.client.on('close', () => resolve()));
    const s3 = await mqttPeer(b, { ...opts, clientId: 'sensor-7', clean: false });
    await closedOnC;
    s2.client.end(true);
    assert.equal(s3.sessionPresent, true);
    await busSettle();
    await pb.client.publishAsync('cmd/sensor-7', 'second', { qos: 1 });
    assert.deepEqual(await s3.next(), ['cmd/sensor-7', 'second']);
    await s3.client.endAsync();

    // A shared group with members on A and B: each message goes to exactly one of them.
    const ma = await mqttPeer(a, opts);
    const mb = await mqttPeer(b, opts);
    await ma.client.subscribeAsync('$share/workers/work/#', { qos: 1 });
    await mb.client.subscribeAsync('$share/workers/work/#', { qos: 1 });
    await busSettle();
    const pc = await mqttPeer(c, opts);
    for (let i = 0; i < 40; i++) await pc.client.publishAsync(`work/${i}`, String(i), { qos: 1 });
    await untilTrue(() => ma.got.length + mb.got.length >= 40, '40 shared deliveries');
    await busSettle();
    const seen = [...ma.got, ...mb.got].map(([, p]) => p);
    assert.equal(seen.length, 40, 'no message twice');
    assert.equal(new Set(seen).size, 40);
    assert.ok(ma.got.length > 0 && mb.got.length > 0, `both nodes' members got a share: ${ma.got.length},${mb.got.length}`);
    for (const x of [ma, mb, pc, pb]) await x.client.endAsync();
  });

  it('lets a thread created on A be used from B and C at once, and refused to non-members everywhere', async () => {
    const agent = await addUser(a, admin, 'agent1');
    const visitor = await addUser(a, admin, 'visitor1');
    const stranger = await addUser(a, admin, 'stranger1');
    // Before the thread exists, B sees a plain topic (in a cluster it does not remember "no thread": one may appear any moment).
    const early = await stompTcp(b, { passcode: stranger.token });
    early.send('SUBSCRIBE\nid:t\ndestination:/topic/org9.visitor.v1\nreceipt:r\n\n\0');
    await early.next('RECEIPT');
    early.close();
    const r = await api(a.url, 'POST', '/api/v1/thread', {
      token: admin,
      body: { thread: 'org9/visitor/v1', members: [{ user: 'agent1', role: 'agent' }, { user: 'visitor1', role: 'visitor' }] },
    });
    assert.equal(r.status, 200, r.body.message);
    const late = await stompTcp(b, { passcode: stranger.token });
    late.send('SUBSCRIBE\nid:t\ndestination:/topic/org9.visitor.v1\n\n\0');
    const refused = await late.next('ERROR');
    assert.match(refused.body.toString(), /not a member of thread org9\.visitor\.v1/, 'B learned of the thread made on A');
    // B now has the thread cached; a member added on A reaches B's copy through the announcement.
    const added = await api(a.url, 'POST', '/api/v1/thread/org9%2Fvisitor%2Fv1/members', { token: admin, body: { user: 'stranger1', role: 'agent' } });
    assert.equal(added.status, 200, added.body.message);
    await untilTrue(async () => {
      const again = await stompTcp(b, { passcode: stranger.token });
      again.send('SUBSCRIBE\nid:t\ndestination:/topic/org9.visitor.v1\nreceipt:r\n\n\0');
      const f = await again.next();
      again.close();
      return f.command === 'RECEIPT';
    }, 'B to let the new member in', 3000);
    const onB = await stompTcp(b, { passcode: visitor.token });
    onB.send('SUBSCRIBE\nid:t\ndestination:/topic/org9.visitor.v1\nreceipt:r\n\n\0');
    await onB.next('RECEIPT');
    await busSettle();
    const onC = await stompTcp(c, { passcode: agent.token });
    const msg = { uid: 'u-1', type: 'TEXT', content: 'hi from C', status: 'SENDING', createdAt: new Date().toISOString(), channel: 'WEB', extra: '{}', thread: { topic: 'org9/visitor/v1' }, user: { uid: 'agent1' } };
    onC.send(`SEND\ndestination:/app/org9.visitor.v1\ncontent-type:application/json\n\n${JSON.stringify(msg)}\0`);
    const got = await onB.next('MESSAGE');
    assert.match(got.body.toString(), /hi from C/);
    onB.close();
    onC.close();
  });

  it('lets the command line manage users and tokens in the cluster\'s PostgreSQL', async () => {
    const env = { HERALD_DATABASE_URL: cl.db, HERALD_LOG_LEVEL: 'warn' };
    const add = await runCommand(['user', 'add', 'cli-made', '--password', 'cli-made-password'], env);
    assert.equal(add.code, 0, add.stderr);
    await login(b.url, 'cli-made', 'cli-made-password');
    const issued = await runCommand(['token', 'issue', 'cli-made'], env);
    assert.equal(issued.code, 0, issued.stderr);
    const me = await api<{ name: string }>(c.url, 'GET', '/v1/me', { token: issued.stdout.trim() });
    assert.equal(me.body.data.name, 'cli-made');
  });

  // Last: it blocks logins from 127.0.0.1 for the rest of the window.
  it('counts failed logins across nodes', async () => {
    await addUser(a, admin, 'frank');
    const nodes = [a, b, c];
    let last = 0;
    // loginMaxAttempts is 10: spread over three nodes, no node alone sees more than 4.
    for (let i = 0; i < 11; i++) {
      const r = await api(nodes[i % 3]!.url, 'POST', '/v1/login', { body: { username: 'frank', password: 'wrong' } });
      last = r.status;
    }
    assert.equal(last, 429, 'the eleventh failure, spread over three nodes, is refused as a flood');
  });

  it('does not let another user on another node take over a connected MQTT client id', async () => {
    const bob = await addUser(a, admin, 'bob-cid');
    const eve = await addUser(a, admin, 'eve-cid');
    const owner = await mqttPeer(a, { username: 'bob-cid', password: bob.token, clientId: 'device@shared', clean: true, reconnectPeriod: 0 });
    let ownerClosed = false;
    owner.client.on('close', () => (ownerClosed = true));
    // Eve on node B with Bob's client id: Bob's connection on node A stays.
    const intruder = mqtt.connect(mqttUrl(b), { username: 'eve-cid', password: eve.token, clientId: 'device@shared', clean: true, reconnectPeriod: 0 });
    await new Promise<void>((resolve) => {
      intruder.once('connect', () => resolve());
      intruder.once('error', () => resolve());
      intruder.once('close', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(ownerClosed, false, "bob's connection was not ended by eve's CONNECT");
    await owner.client.subscribeAsync('cid/check');
    await owner.client.publishAsync('cid/check', 'still here');
    assert.deepEqual(await owner.next(), ['cid/check', 'still here']);
    intruder.end(true);
    await owner.client.endAsync();
  });
});

describe('cluster: a node killed with SIGKILL', { skip }, () => {
  let db: string;
  let name: string;
  let survivor: TestServer;
  let victim: HeraldProcess;
  let victimDir: string;
  before(async () => {
    db = await freshDatabase();
    name = freshClusterName();
    survivor = await startServer({ databaseUrl: db, redisUrl: REDIS_URL!, clusterName: name, presenceTtlSeconds: TTL });
    victimDir = tempDir();
    victim = runHerald(['serve'], {
      HERALD_DATABASE_URL: db,
      HERALD_REDIS_URL: REDIS_URL!,
      HERALD_CLUSTER_NAME: name,
      HERALD_PRESENCE_TTL_SECONDS: String(TTL),
      HERALD_HOST: '127.0.0.1',
      HERALD_HTTP_PORT: '0',
      HERALD_STOMP_PORT: '0',
      HERALD_MQTT_PORT: '0',
      HERALD_DATA_DIR: victimDir,
      HERALD_LOG_LEVEL: 'warn',
    });
  });
  after(async () => {
    if (victim.child.exitCode === null && victim.child.signalCode === null) victim.child.kill('SIGKILL');
    await victim.exited;
    rmSync(victimDir, { recursive: true, force: true });
    await survivor.stop();
  });

  it('loses no acknowledged message, publishes its MQTT clients\' wills, and its sessions leave presence within the TTL', async () => {
    const httpPort = (await victim.waitFor(/listening http \S+:(\d+)/))[1]!;
    const stompPort = Number((await victim.waitFor(/listening stomp \S+:(\d+)/))[1]);
    const mqttPort = Number((await victim.waitFor(/listening mqtt \S+:(\d+)/))[1]);
    const victimUrl = `http://127.0.0.1:${httpPort}`;
    const admin = await login(survivor.url);
    const gina = await addUser(survivor, admin, 'gina');
    // Sessions on the victim, seen from the survivor.
    const onVictim = await RawStomp.tcp(stompPort);
    assert.equal((await onVictim.connect(ADMIN)).command, 'CONNECTED');
    await untilTrue(async () => {
      const r = await api<{ node: string }[]>(survivor.url, 'GET', '/api/message/getWebSocketClients', { token: admin });
      return new Set(r.body.data.map((s) => s.node)).size === 1 && r.body.data.length === 1;
    }, "the victim's session in presence");
    // Acknowledged work on the victim: queue messages with receipts, a stored user message.
    for (let i = 0; i < 20; i++) onVictim.send(`SEND\ndestination:/queue/after-crash\nreceipt:s${i}\n\n${i}\0`);
    for (let i = 0; i < 20; i++) await onVictim.next('RECEIPT');
    // A consumer on the victim takes (claims) some of them and never acks.
    const claimer = await RawStomp.tcp(stompPort);
    await claimer.connect(ADMIN);
    claimer.send('SUBSCRIBE\nid:q\ndestination:/queue/after-crash\nack:client-individual\n\n\0');
    await claimer.next('MESSAGE');
    const sent = await api<{ id: string }>(victimUrl, 'POST', '/api/message/sendMessage', {
      token: await login(victimUrl),
      body: { receiver: [gina.id], title: 't', content: 'stored before the crash', type: 'NOTICE' },
    });
    assert.equal(sent.status, 200, sent.body.message);

    // MQTT devices on the victim with wills; one says goodbye properly, so its will must not come.
    const watcher = await mqttPeer(survivor, { ...ADMIN_MQTT, protocolVersion: 5 });
    await watcher.client.subscribeAsync('devices/+/status', { qos: 1 });
    const device = async (clientId: string): Promise<mqtt.MqttClient> => {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
        ...ADMIN_MQTT,
        clientId,
        protocolVersion: 5,
        will: { topic: `devices/${clientId}/status`, payload: Buffer.from('offline'), qos: 1, retain: true },
      });
      c.on('error', () => undefined);
      return c;
    };
    await device('d1');
    const polite = await device('d2');
    await device('d3');
    await polite.endAsync();
    await busSettle();

    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await victim.exited;
    // d3 is back at once, on the survivor: its old connection's will is moot.
    const back = await mqtt.connectAsync(mqttUrl(survivor), { ...ADMIN_MQTT, clientId: 'd3', protocolVersion: 5 });


    await untilTrue(async () => {
      const r = await api<{ node: string }[]>(survivor.url, 'GET', '/api/message/getWebSocketClients', { token: admin });
      return r.body.data.every((x) => x.node === survivor.server.ctx.nodeId);
    }, 'the dead node to leave presence', TTL * 1000 + 5000);
    const gone = Date.now() - killedAt;
    assert.ok(gone <= TTL * 1000 + 2000, `sessions left presence ${gone} ms after the kill (TTL ${TTL} s)`);

    // d1's will is published by the survivor once the victim is known dead, and retained.
    const [topic, payload] = await watcher.next(TTL * 1000 + 5000);
    assert.deepEqual([topic, payload], ['devices/d1/status', 'offline']);
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(watcher.got, [['devices/d1/status', 'offline']], 'no will for the client that disconnected, or the one that came back');
    const late = await mqttPeer(survivor, { ...ADMIN_MQTT, protocolVersion: 5 });
    await late.client.subscribeAsync('devices/d1/status', { qos: 1 });
    assert.deepEqual(await late.next(), ['devices/d1/status', 'offline']);
    for (const c of [watcher.client, late.client, back]) await c.endAsync();

    const consumer = await stompTcp(survivor);
    consumer.send('SUBSCRIBE\nid:q\ndestination:/queue/after-crash\nack:client-individual\n\n\0');
    const bodies: string[] = [];
    while (bodies.length < 20) {
      const f = await consumer.next('MESSAGE', 8000);
      bodies.push(f.body.toString());
      consumer.send(`ACK\nid:${frameHeader(f, 'ack')}\n\n\0`);
    }
    assert.deepEqual([...bodies].sort((x, y) => Number(x) - Number(y)), Array.from({ length: 20 }, (_, i) => String(i)), 'every acknowledged queue message, once');
    const user = await stompTcp(survivor, { passcode: gina.token });
    user.send('SUBSCRIBE\nid:m\ndestination:/user/queue/messages\n\n\0');
    assert.match((await user.next('MESSAGE')).body.toString(), /stored before the crash/);
    consumer.close();
    user.close();
  });
});

describe('cluster mode configuration', () => {
  /** Start-up must fail with `re`, leaving nothing behind. */
  async function refused(overrides: Parameters<typeof startServer>[0], re: RegExp | ((err: Error) => boolean)): Promise<void> {
    const dir = tempDir();
    try {
      await assert.rejects(startServer(overrides, undefined, dir), re);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('refuses redisUrl without databaseUrl, saying why', async () => {
    await refused({ redisUrl: 'redis://127.0.0.1:9' }, /redisUrl \(cluster mode\) needs databaseUrl too/);
  });

  it('refuses a databaseUrl that is not PostgreSQL, without echoing its password', async () => {
    await refused({ databaseUrl: 'mysql://root:hunter2@127.0.0.1/herald' }, (err: Error) => {
      assert.match(err.message, /databaseUrl must be a postgres:\/\/ or postgresql:\/\/ URL/);
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
  });

  it('refuses a cluster name Redis keys cannot carry', { skip: servicesMissing('pg') }, async () => {
    await refused({ databaseUrl: await freshDatabase(), redisUrl: 'redis://127.0.0.1:9', clusterName: 'a b' }, /clusterName must be 1–64 letters, digits, - or _/);
  });
});

describe('cluster: Redis unreachable', { skip }, () => {
  it('starts, serves HTTP, fails /readyz naming Redis, and says so in the log', async () => {
    const db = await freshDatabase();
    // Port 9 on loopback (discard) is closed here: connections are refused at once.
    const logged: string[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _enc, done) => (logged.push(chunk.toString()), done()) }));
    const node = await startServer({ databaseUrl: db, redisUrl: 'redis://127.0.0.1:9', clusterName: freshClusterName() }, undefined, tempDir(), log);
    try {
      await untilTrue(() => logged.some((l) => /Redis unreachable; retrying/.test(l)), 'the log line');
      const line = JSON.parse(logged.find((l) => /Redis unreachable/.test(l))!) as { url: string; level: number };
      assert.equal(line.url, 'redis://127.0.0.1:9');
      assert.equal(line.level, 50, 'logged as an error');
      const ready = await api(node.url, 'GET', '/readyz');
      assert.equal(ready.status, 503);
      assert.match(ready.body.message, /Redis/);
      assert.equal((await api(node.url, 'GET', '/healthz')).status, 200);
      const token = await login(node.url);
      // Local delivery keeps working without the bus.
      const s = await stompTcp(node, { passcode: token });
      s.send('SUBSCRIBE\nid:1\ndestination:/topic/local\nreceipt:r\n\n\0');
      await s.next('RECEIPT');
      await api(node.url, 'POST', '/api/publish', { token, body: { destination: '/topic/local', body: 'still here' } });
      assert.equal((await s.next('MESSAGE')).body.toString(), 'still here');
      s.close();
    } finally {
      await node.stop();
    }
  });
});

/** A Redis of this test's own, so it can be stopped and started again. */
async function privateRedis(): Promise<{ url: string; start(): Promise<void>; stop(): Promise<void> }> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const r = {
    url: `redis://127.0.0.1:${port}`,
    async start() {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      await untilTrue(
        () =>
          new Promise<boolean>((resolve) => {
            const s = createConnection(port, '127.0.0.1');
            s.once('connect', () => (s.destroy(), resolve(true)));
            s.once('error', () => resolve(false));
          }),
        'redis-server to listen',
      );
    },
    async stop() {
      if (!child) return;
      const c = child;
      child = undefined;
      c.kill('SIGKILL');
      await new Promise((resolve) => (c.exitCode !== null ? resolve(undefined) : c.once('exit', resolve)));
    },
  };
  return r;
}

describe('cluster: Redis goes away and comes back', { skip }, () => {
  it('keeps local delivery going, fails /readyz meanwhile, then rejoins: subscriptions and presence restored', async () => {
    const redis = await privateRedis();
    await redis.start();
    const db = await freshDatabase();
    const name = freshClusterName();
    const a = await startServer({ databaseUrl: db, redisUrl: redis.url, clusterName: name, presenceTtlSeconds: TTL });
    const b = await startServer({ databaseUrl: db, redisUrl: redis.url, clusterName: name, presenceTtlSeconds: TTL });
    try {
      await untilTrue(() => a.server.ctx.cluster!.connected && b.server.ctx.cluster!.connected, 'both nodes on Redis');
      const token = await login(a.url);
      const onA = await stompTcp(a, { passcode: token });
      onA.send('SUBSCRIBE\nid:1\ndestination:/topic/alerts\nreceipt:r\n\n\0');
      await onA.next('RECEIPT');
      const worker = await stompTcp(a, { passcode: token });
      worker.send('SUBSCRIBE\nid:q\ndestination:/queue/outage\nack:client-individual\nreceipt:r\n\n\0');
      await worker.next('RECEIPT');
      const onB = await stompTcp(b, { passcode: token });
      onB.send('SUBSCRIBE\nid:1\ndestination:/topic/alerts\nreceipt:r\n\n\0');
      await onB.next('RECEIPT');
      await busSettle();
      await api(a.url, 'POST', '/api/publish', { token, body: { destination: '/topic/alerts', body: 'before' } });
      assert.equal((await onB.next('MESSAGE')).body.toString(), 'before');
      assert.equal((await onA.next('MESSAGE')).body.toString(), 'before');

      await redis.stop();
      await untilTrue(async () => (await api(a.url, 'GET', '/readyz')).status === 503, '/readyz to fail');
      assert.match((await api(a.url, 'GET', '/readyz')).body.message, /Redis/);
      await api(a.url, 'POST', '/api/publish', { token, body: { destination: '/topic/alerts', body: 'during' } });
      assert.equal((await onA.next('MESSAGE')).body.toString(), 'during', 'local delivery goes on without Redis');
      // Queues go on too: A's lease is in PostgreSQL, so no node takes A for dead because Redis is gone.
      const stored = await api(a.url, 'POST', '/api/publish', { token, body: { destination: '/queue/outage', body: 'held' } });
      assert.equal(stored.status, 200, stored.body.message);
      const held = await worker.next('MESSAGE', 5000);
      assert.equal(held.body.toString(), 'held');
      worker.send(`ACK\nid:${frameHeader(held, 'ack')}\n\n\0`);
      const during = await api<{ node: string }[]>(a.url, 'GET', '/api/message/getWebSocketClients', { token });
      assert.equal(during.status, 200, 'presence still answers, with what this node can vouch for');
      assert.deepEqual([...new Set(during.body.data.map((x) => x.node))], [a.server.ctx.nodeId]);

      await redis.start();
      await untilTrue(async () => (await api(a.url, 'GET', '/readyz')).status === 200 && (await api(b.url, 'GET', '/readyz')).status === 200, 'both nodes ready again', 15_000);
      // Presence is rewritten and subscriptions are made again on the new Redis.
      await untilTrue(async () => {
        const r = await api<{ node: string }[]>(a.url, 'GET', '/api/message/getWebSocketClients', { token });
        return new Set(r.body.data.map((s) => s.node)).size === 2;
      }, 'sessions of both nodes back in presence', 10_000);
      await untilTrue(async () => {
        await api(a.url, 'POST', '/api/publish', { token, body: { destination: '/topic/alerts', body: 'after' } });
        const f = await onB.next('MESSAGE', 300).catch(() => undefined);
        return f?.body.toString() === 'after';
      }, 'B to receive from A again', 10_000);
      await assert.rejects(worker.next('MESSAGE', 500), /timed out/, 'acknowledged once, never again');
      worker.close();
      onA.close();
      onB.close();
    } finally {
      await a.stop();
      await b.stop();
      await redis.stop();
    }
  });
});
