/**
 * The console's figures API with real clients on one node: retained MQTT
 * messages (browse, view, delete), queues and mailboxes (depth, consumers,
 * oldest, held and unacknowledged messages), node health (listeners with
 * their caps, memory, store, alarms: a listener and a user near their
 * caps, the SQLite file near its limit, the store not answering), and
 * traces of a topic filter (publisher, receivers, the rate cap, closing).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';
import { ADMIN, tcpUrl } from '../helpers/mqtt.js';

interface Retained {
  topic: string;
  qos: number;
  bytes: number;
  text: string | null;
  hex: string;
  contentType: string | null;
  userProperties: [string, string][];
  responseTopic: string | null;
  correlationData: string | null;
  expiresAt: string | null;
  volatile: boolean;
}
interface TraceEvent {
  seq: number;
  node: string;
  messageId: string;
  topic: string;
  origin: string;
  publisher: { user: string; protocol: string; sessionId: string } | null;
  receivers: { user: string; protocol: string; sessionId: string }[];
  receiverCount: number;
  preview: string;
}

describe('console figures API: retained, queues and mailboxes, node health, traces', () => {
  let s: TestServer;
  let admin: string;

  before(async () => {
    s = await startServer({ sysIntervalSeconds: 1, stompMaxConnections: 5, maxConnectionsPerUser: 4 });
    admin = await login(s.url);
  });
  after(async () => {
    await s?.stop();
  });

  it('browses retained messages by filter, shows one with its properties, and deletes it everywhere', async () => {
    const pub = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    await pub.publishAsync('plant/1/state', 'running', {
      qos: 1,
      retain: true,
      properties: { contentType: 'text/plain', userProperties: { line: 'A' }, responseTopic: 'plant/1/reply', correlationData: Buffer.from([1, 2]), messageExpiryInterval: 3600 },
    });
    await pub.publishAsync('plant/2/state', Buffer.from([0xff, 0x00, 0x10]), { qos: 1, retain: true });
    await pub.publishAsync('other/x', 'not under plant', { qos: 1, retain: true });
    const list = await api<{ messages: Retained[]; more: boolean }>(s.url, 'GET', `/api/admin/retained?filter=${encodeURIComponent('plant/+/state')}`, { token: admin });
    assert.equal(list.status, 200, list.body.message);
    assert.deepEqual(list.body.data.messages.map((m) => m.topic), ['plant/1/state', 'plant/2/state']);
    const [one, two] = list.body.data.messages;
    assert.deepEqual([one!.text, one!.qos, one!.contentType, one!.userProperties, one!.responseTopic, one!.correlationData], ['running', 1, 'text/plain', [['line', 'A']], 'plant/1/reply', '0102']);
    assert.ok(one!.expiresAt && Date.parse(one!.expiresAt) > Date.now() + 3500_000);
    assert.deepEqual([two!.text, two!.hex, two!.bytes, two!.qos], [null, 'ff0010', 3, 1], 'bytes that are not text shown in hex');
    const limited = await api<{ messages: Retained[]; more: boolean }>(s.url, 'GET', '/api/admin/retained?limit=1', { token: admin });
    assert.deepEqual([limited.body.data.messages.length, limited.body.data.more], [1, true]);
    // The server's $SYS statistics are there for $SYS/#, marked volatile, and cannot be deleted.
    for (let i = 0; i < 100; i++) {
      const sys = await api<{ messages: Retained[] }>(s.url, 'GET', `/api/admin/retained?filter=${encodeURIComponent('$SYS/#')}`, { token: admin });
      if (sys.body.data.messages.length > 0) {
        assert.equal(sys.body.data.messages.every((m) => m.volatile), true);
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const sysDelete = await api(s.url, 'DELETE', `/api/admin/retained/message?topic=${encodeURIComponent('$SYS/broker/version')}`, { token: admin });
    assert.equal(sysDelete.status, 409);
    const full = await api<Retained>(s.url, 'GET', `/api/admin/retained/message?topic=${encodeURIComponent('plant/1/state')}`, { token: admin });
    assert.equal(full.body.data.text, 'running');
    assert.equal((await api(s.url, 'GET', '/api/admin/retained?filter=a/%23/b', { token: admin })).status, 400);
    assert.equal((await api(s.url, 'GET', '/api/admin/retained/message?topic=a/%2B', { token: admin })).status, 400);
    // Deleted: gone from the list, from the store, and a new subscriber gets nothing.
    const deleted = await api(s.url, 'DELETE', `/api/admin/retained/message?topic=${encodeURIComponent('plant/1/state')}`, { token: admin });
    assert.equal(deleted.status, 200, deleted.body.message);
    assert.equal((await api(s.url, 'DELETE', `/api/admin/retained/message?topic=${encodeURIComponent('plant/1/state')}`, { token: admin })).status, 404);
    assert.deepEqual((await s.server.ctx.store.listRetained()).map((r) => r.topic).sort(), ['other/x', 'plant/2/state']);
    const sub = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const got: string[] = [];
    sub.on('message', (t) => got.push(t));
    await sub.subscribeAsync('plant/#');
    await sub.publishAsync('plant/sync', 'x');
    for (let i = 0; i < 100 && !got.includes('plant/sync'); i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(got.sort(), ['plant/2/state', 'plant/sync']);
    const audit = await api<{ records: { action: string; target: string }[] }>(s.url, 'GET', '/api/admin/audit?action=retained', { token: admin });
    assert.deepEqual(audit.body.data.records.map((r) => [r.action, r.target]), [['retained.delete', 'plant/1/state']]);
    await sub.endAsync();
    await pub.endAsync();
  });

  it('shows queues with depth, consumers and oldest age, and their held and unacknowledged messages', async () => {
    for (const body of ['one', 'two', 'three']) await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/queue/work', body } });
    const consumer = await RawStomp.tcp(s.server.address('stomp').port);
    await consumer.connect({ login: 'admin', passcode: 'admin-secret-pw' });
    consumer.send('SUBSCRIBE\nid:1\ndestination:/queue/work\nack:client-individual\nreceipt:r\n\n\0');
    await consumer.next('RECEIPT');
    await consumer.next('MESSAGE');
    await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'away', password: 'away-password' } });
    await api(s.url, 'POST', '/api/message/sendMessage', { token: admin, body: { receiver: ['away'], title: 'while you were out', content: 'hello' } });
    const r = await api<{
      queues: { name: string; messages: number; claimed: number; waiting: number; consumers: number; inflight: number; oldestAt: string | null }[];
      mailboxes: { user: string; name: string; pending: number; oldestAt: string | null }[];
      missing: string[];
    }>(s.url, 'GET', '/api/admin/queues', { token: admin });
    assert.equal(r.status, 200, r.body.message);
    const work = r.body.data.queues.find((q) => q.name === 'work');
    assert.ok(work, JSON.stringify(r.body.data));
    assert.equal(work.messages, 3);
    assert.equal(work.consumers, 1);
    assert.ok(work.inflight >= 1, 'the unacknowledged one');
    assert.ok(work.oldestAt && Date.parse(work.oldestAt) <= Date.now());
    const away = r.body.data.mailboxes.find((m) => m.user === 'away');
    assert.deepEqual([away?.name, away?.pending], ['messages', 1]);
    const msgs = await api<{ messages: { id: string; state: string; text: string | null; claimedBy: string | null }[] }>(s.url, 'GET', '/api/admin/queues/work/messages', { token: admin });
    assert.equal(msgs.status, 200, msgs.body.message);
    assert.deepEqual(msgs.body.data.messages.map((m) => m.text), ['one', 'two', 'three']);
    assert.equal(msgs.body.data.messages[0]!.state, 'claimed', 'handed to the consumer, unacknowledged');
    const page = await api<{ messages: { text: string }[] }>(s.url, 'GET', `/api/admin/queues/work/messages?limit=1&after=${msgs.body.data.messages[0]!.id}`, { token: admin });
    assert.deepEqual(page.body.data.messages.map((m) => m.text), ['two']);
    const users = await api<{ id: string; name: string }[]>(s.url, 'GET', '/api/users', { token: admin });
    const awayId = users.body.data.find((u) => u.name === 'away')!.id;
    const pending = await api<{ messages: { title: string; text: string }[] }>(s.url, 'GET', `/api/admin/mailboxes/${awayId}/messages`, { token: admin });
    assert.deepEqual(pending.body.data.messages.map((m) => [m.title, m.text]), [['while you were out', 'hello']]);
    consumer.close();
  });

  it('shows the stored messages of a persistent MQTT session that is away', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'keeper', clean: false, protocolVersion: 4 });
    await c.subscribeAsync('keep/#', { qos: 1 });
    await c.endAsync();
    const pub = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await pub.publishAsync('keep/a', 'kept one', { qos: 1 });
    await pub.endAsync();
    const r = await api<{ mqttSessions: { clientId: string; messages: number; held: number; connected: boolean }[] }>(s.url, 'GET', '/api/admin/queues', { token: admin });
    const keeper = r.body.data.mqttSessions.find((m) => m.clientId === 'keeper');
    assert.deepEqual([keeper?.messages, keeper?.held, keeper?.connected], [1, 1, false]);
    const msgs = await api<{ messages: { topic: string; state: string; text: string }[] }>(s.url, 'GET', '/api/admin/mqtt-sessions/keeper/messages', { token: admin });
    assert.deepEqual(msgs.body.data.messages.map((m) => [m.topic, m.state, m.text]), [['keep/a', 'held', 'kept one']]);
  });

  it('reports node health: listeners with TLS and caps, memory, the store, version, and alarms near a cap', async () => {
    // Four STOMP connections of one user: 4 of the 5 the listener takes, and 4 of the 4 a user may hold.
    const conns: RawStomp[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await RawStomp.tcp(s.server.address('stomp').port);
      await c.connect({ login: 'admin', passcode: 'admin-secret-pw' });
      conns.push(c);
    }
    const r = await api<{
      nodes: { node: string; version: string; listeners: { name: string; port: number; tls: boolean; connections: number | null; max: number }[]; memory: { rss: number; heapLimit: number }; store: { kind: string; reachable: boolean; sizeBytes?: number }; alarms: { level: string; about: string; text: string }[]; redis: unknown }[];
      alarms: unknown[];
      missing: string[];
    }>(s.url, 'GET', '/api/admin/nodes', { token: admin });
    assert.equal(r.status, 200, r.body.message);
    const [node] = r.body.data.nodes;
    assert.ok(node);
    assert.deepEqual(node.listeners.map((l) => l.name), s.server.addresses.map((a) => a.name));
    const stomp = node.listeners.find((l) => l.name === 'stomp')!;
    assert.deepEqual([stomp.port, stomp.tls, stomp.connections, stomp.max], [s.server.address('stomp').port, false, 4, 5]);
    assert.equal(node.store.kind, 'sqlite');
    assert.equal(node.store.reachable, true);
    assert.ok((node.store.sizeBytes ?? 0) > 0);
    assert.ok(node.memory.rss > 0 && node.memory.heapLimit > 0);
    assert.equal(node.redis, null);
    assert.ok(node.alarms.some((a) => a.about === 'listener' && /listener stomp holds 4 of its 5 connections \(stompMaxConnections\)/.test(a.text)), JSON.stringify(node.alarms));
    assert.ok(node.alarms.some((a) => a.level === 'critical' && /user admin holds \d+ of the 4 connections/.test(a.text)), JSON.stringify(node.alarms));
    for (const c of conns) c.close();
  });

  it('traces a topic filter: each message with its publisher and receivers, capped per second, closed when asked', async () => {
    const open = await api<{ id: string; filter: string; scope: string; maxPerSecond: number }>(s.url, 'POST', '/api/admin/traces', { token: admin, body: { filter: '/topic/trace.*', maxPerSecond: 3 } });
    assert.equal(open.status, 200, open.body.message);
    assert.deepEqual([open.body.data.filter, open.body.data.scope], ['trace/+', 'node']);
    const id = open.body.data.id;
    const listener = await RawStomp.tcp(s.server.address('stomp').port);
    await listener.connect({ login: 'admin', passcode: 'admin-secret-pw' });
    listener.send('SUBSCRIBE\nid:1\ndestination:/topic/trace.a\nreceipt:r\n\n\0');
    await listener.next('RECEIPT');
    const pub = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'tracer-pub' });
    await pub.publishAsync('untraced/x', 'not traced');
    for (let i = 0; i < 10; i++) await pub.publishAsync('trace/a', `hello ${i}`, { qos: 1 });
    let events: TraceEvent[] = [];
    let skipped = 0;
    for (let i = 0; i < 100 && events.length < 3; i++) {
      const r = await api<{ events: TraceEvent[]; skipped: number }>(s.url, 'GET', `/api/admin/traces/${id}`, { token: admin });
      events = r.body.data.events;
      skipped = r.body.data.skipped;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(events.length, 3, 'three a second at most');
    assert.equal(events.length + skipped, 10, 'the rest counted as skipped');
    const e = events[0]!;
    assert.deepEqual([e.topic, e.origin, e.preview, e.publisher?.user, e.publisher?.protocol], ['trace/a', 'published', 'hello 0', 'admin', 'mqtt-tcp']);
    assert.deepEqual([e.receiverCount, e.receivers[0]?.user, e.receivers[0]?.protocol], [1, 'admin', 'stomp-tcp']);
    const later = await api<{ events: TraceEvent[] }>(s.url, 'GET', `/api/admin/traces/${id}?after=${events[1]!.seq}`, { token: admin });
    assert.deepEqual(later.body.data.events.map((x) => x.seq), [events[2]!.seq]);
    // A service may not trace (it would see payloads); a bad filter is refused in words.
    await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'svc-trace', password: 'svc-trace-password', role: 'service' } });
    const svc = await login(s.url, 'svc-trace', 'svc-trace-password');
    assert.equal((await api(s.url, 'POST', '/api/admin/traces', { token: svc, body: { filter: '#' } })).status, 403);
    const bad = await api(s.url, 'POST', '/api/admin/traces', { token: admin, body: { filter: 'a/#/b' } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /"#" must be a whole level and the last one/);
    assert.equal((await api(s.url, 'DELETE', `/api/admin/traces/${id}`, { token: admin })).status, 200);
    assert.equal((await api(s.url, 'GET', `/api/admin/traces/${id}`, { token: admin })).status, 404);
    assert.equal((await api(s.url, 'DELETE', `/api/admin/traces/${id}`, { token: admin })).status, 404);
    // Closed, the broker's tap is gone: nothing is traced any more.
    assert.equal((s.server.ctx.broker as unknown as { tap: unknown }).tap, undefined);
    await pub.endAsync();
    listener.close();
  });
});

describe('node health alarms of the store', () => {
  it('warns when the SQLite file nears sqliteMaxSizeMb, and says the store does not answer once it is closed', async () => {
    const s = await startServer({ sqliteMaxSizeMb: 1 });
    try {
      const admin = await login(s.url);
      type Health = { nodes: { store: { reachable: boolean; sizeBytes: number; maxBytes: number }; alarms: { level: string; about: string; text: string }[] }[] };
      const health = async () => (await api<Health>(s.url, 'GET', '/api/admin/nodes', { token: admin })).body.data.nodes[0]!;
      assert.deepEqual((await health()).alarms.filter((a) => a.about === 'disk'), [], 'nothing to say while the file is small');
      // Queue messages of 60 KB until the file and its WAL pass 80 % of 1 MiB (or the store refuses more).
      for (let i = 0; i < 20 && (await health()).store.sizeBytes < 0.8 * 1_048_576; i++) {
        const r = await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/queue/fill', body: 'x'.repeat(60_000) } });
        if (r.status !== 200) break;
      }
      const full = await health();
      assert.equal(full.store.maxBytes, 1_048_576);
      const disk = full.alarms.find((a) => a.about === 'disk');
      assert.ok(disk, `an alarm at ${full.store.sizeBytes} bytes: ${JSON.stringify(full.alarms)}`);
      assert.match(disk.text, /^the SQLite file is [\d.]+ MiB of its 1 MiB limit \(sqliteMaxSizeMb\); at the limit writes are refused$/);
      // The store closed under the node: its health says so, critical.
      await s.server.ctx.store.close();
      const down = await health();
      assert.equal(down.store.reachable, false);
      assert.ok(down.alarms.some((a) => a.about === 'store' && a.level === 'critical' && /^the SQLite store does not answer: /.test(a.text)), JSON.stringify(down.alarms));
    } finally {
      // Stopping fails on the closed store; the data directory goes anyway.
      await s.stop().catch(() => undefined);
      rmSync(s.dataDir, { recursive: true, force: true });
    }
  });
});
