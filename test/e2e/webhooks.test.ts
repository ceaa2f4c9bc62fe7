/**
 * Webhooks (issue 15, part 3): every event type reaches a real receiver in
 * this process, signed, with the bodies the guide documents; the mobile-push
 * flow; dedupe by event id; the dead list and replay; the admin API, the
 * metrics, `herald webhook test` and the configuration's refusals. The
 * receiver down for 30 s, kill -9 and the cluster have their own files.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, before, after } from 'node:test';
import mqtt from 'mqtt';
import { api, login, startServer, tempDir, type TestServer } from '../helpers/server.js';
import { JsonClient, jsonUrl, type MessageData } from '../helpers/json-ws.js';
import { sendMessage } from '../helpers/messages.js';
import { ADMIN as ADMIN_MQTT, tcpUrl } from '../helpers/mqtt.js';
import { runCommand, runHerald, LOOPBACK_PORT_FLAGS } from '../helpers/process.js';
import { RawStomp } from '../helpers/stomp.js';
import { WebhookReceiver, type ReceivedEvent } from '../helpers/webhook-receiver.js';

async function addUser(s: TestServer, admin: string, name: string): Promise<{ id: string; token: string }> {
  const r = await api<{ id: string }>(s.url, 'POST', '/api/users', { token: admin, body: { name, password: name + '-password', role: 'user' } });
  assert.equal(r.status, 200, r.body.message);
  return { id: r.body.data.id, token: await login(s.url, name, name + '-password') };
}

interface Backlog {
  webhooks: { name: string; url: string; events: string[]; topics: string[] }[];
  backlog: { webhook: string; pending: number; dead: number; oldestPendingAt: string | null; configured: boolean }[];
}

/** Waits until the outbox has nothing pending (every event written so far has been delivered or given up). */
async function drained(s: TestServer, admin: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // Batched events (connects, subscriptions, publishes) are written within a few ms.
    await new Promise((r) => setTimeout(r, 30));
    const r = await api<Backlog>(s.url, 'GET', '/api/admin/webhooks', { token: admin });
    if (r.body.data.backlog.every((b) => b.pending === 0)) return;
    if (Date.now() > deadline) throw new Error(`outbox not drained: ${JSON.stringify(r.body.data.backlog)}`);
  }
}

const types = (events: ReceivedEvent[]): string[] => events.map((e) => e.type);

describe('webhooks: every event, signed, in order per session and thread', () => {
  let s: TestServer;
  let hook: WebhookReceiver;
  let orders: WebhookReceiver;
  let admin: string;
  let alice: { id: string; token: string };
  let bob: { id: string; token: string };
  before(async () => {
    hook = await WebhookReceiver.start();
    orders = await WebhookReceiver.start();
    s = await startServer({
      webhooks: [
        { url: hook.url, events: ['*'], secret: hook.secret },
        { name: 'orders', url: orders.url, events: ['message.published'], topics: ['orders/#'], secret: orders.secret },
      ],
      webhookRetryBaseMs: 50,
    });
    admin = await login(s.url);
    alice = await addUser(s, admin, 'alice');
    bob = await addUser(s, admin, 'bob');
  });
  after(async () => {
    await s.stop();
    await hook.stop();
    await orders.stop();
  });

  it('tells of a STOMP session from connect to disconnect: subscriptions, publishes, the reason it ended', async () => {
    const c = await RawStomp.tcp(s.server.address('stomp').port);
    assert.equal((await c.connect({ login: 'alice', passcode: 'alice-password' })).command, 'CONNECTED');
    c.send('SUBSCRIBE\nid:1\ndestination:/topic/news.*\nreceipt:r1\n\n\0');
    await c.next('RECEIPT');
    c.send('SEND\ndestination:/topic/news.sport\ncontent-type:text/plain\nreceipt:r2\n\ngoal\0');
    await c.next('RECEIPT');
    await c.next('MESSAGE');
    c.send('UNSUBSCRIBE\nid:1\nreceipt:r3\n\n\0');
    await c.next('RECEIPT');
    c.send('DISCONNECT\nreceipt:r4\n\n\0');
    await c.closedPromise;
    await hook.until(() => hook.ofType('client.disconnected').some((e) => e.data['user'] === 'alice'), 'the disconnect');

    const session = hook.ofType('client.connected').find((e) => e.data['user'] === 'alice')!.data['sessionId'];
    const mine = hook.unique().filter((e) => e.data['sessionId'] === session || (e.data['publisher'] as { sessionId?: string } | null)?.sessionId === session);
    assert.deepEqual(types(mine), ['client.connected', 'subscription.created', 'message.published', 'subscription.removed', 'client.disconnected'], 'in the order they happened');
    const [connected, created, published, removed, disconnected] = mine as [ReceivedEvent, ReceivedEvent, ReceivedEvent, ReceivedEvent, ReceivedEvent];
    assert.equal(connected.data['protocol'], 'stomp-tcp');
    assert.equal(connected.data['userId'], alice.id);
    assert.equal(connected.data['remoteAddress'], '127.0.0.1');
    assert.ok(!Number.isNaN(Date.parse(connected.data['connectedAt'] as string)));
    assert.deepEqual(created.data['subscription'], { kind: 'topic', filter: 'news/+' });
    assert.deepEqual(removed.data['subscription'], { kind: 'topic', filter: 'news/+' });
    assert.deepEqual(
      { ...published.data },
      { topic: 'news/sport', payload: 'goal', encoding: 'utf8', contentType: 'text/plain', qos: 1, retain: false, publisher: { sessionId: session, userId: alice.id, user: 'alice' } },
    );
    assert.equal(disconnected.data['reason'], 'client disconnected');
    for (const e of mine) {
      assert.match(e.id, /^[0-9a-f-]{36}$/);
      assert.ok(Math.abs(Date.parse(e.createdAt) - Date.now()) < 60_000);
    }
    assert.ok(hook.requests.every((r) => r.valid), 'every request carries a valid signature');
    assert.equal(orders.ofType('message.published').length, 0, 'news/sport is not under orders/#');
  });

  it('filters message.published by the webhook\'s topics, and reports binary payloads in base64', async () => {
    const client = mqtt.connect(tcpUrl(s), ADMIN_MQTT);
    await new Promise((r) => client.once('connect', r));
    await client.publishAsync('orders/42', Buffer.from([0xff, 0x00, 0x01]), { qos: 1 });
    await client.publishAsync('misc/1', 'nope', { qos: 1 });
    await client.endAsync();
    await orders.until(() => orders.unique().length >= 1, 'the order event');
    await drained(s, admin);
    assert.deepEqual(orders.unique().map((e) => e.data['topic']), ['orders/42'], 'only the topic under orders/#');
    const e = orders.unique()[0]!;
    assert.equal(e.data['encoding'], 'base64');
    assert.equal(Buffer.from(e.data['payload'] as string, 'base64').toString('hex'), 'ff0001');
    assert.ok(orders.requests.every((r) => r.valid));
    const all = hook.ofType('message.published').map((x) => x.data['topic']);
    assert.ok(all.includes('orders/42') && all.includes('misc/1'), 'the other webhook takes every topic');
    const reasons = hook.ofType('client.disconnected').filter((x) => x.data['protocol'] === 'mqtt-tcp').map((x) => x.data['reason']);
    assert.deepEqual(reasons, ['client disconnected'], 'an MQTT DISCONNECT');
  });

  it('mobile push: a message-service send to an offline user writes exactly one message.undelivered, then delivered and read as the user catches up', async () => {
    const online = await JsonClient.open(jsonUrl(s, alice.token));
    const r = await sendMessage(s, admin, { content: 'your order shipped', title: 'Order 7', type: 3, receiver: [alice.id, 'bob'] });
    const live = await online.next('message');
    assert.equal((live.data as MessageData).id, r.id);
    await drained(s, admin);
    const about = (e: ReceivedEvent): boolean => (e.data['message'] as { id?: string } | undefined)?.id === r.id;
    const undelivered = hook.ofType('message.undelivered').filter(about);
    assert.equal(undelivered.length, 1, 'one event: bob is offline, alice is not');
    assert.deepEqual(undelivered[0]!.data, {
      source: 'message-service',
      receiver: bob.id,
      receiverName: 'bob',
      message: { id: r.id, title: 'Order 7', content: 'your order shipped', type: 3, sender: 'admin', createdAt: (live.data as MessageData).createdAt },
    });
    assert.equal(hook.requests.filter((q) => q.body.includes(undelivered[0]!.id)).length, 1, 'sent once');

    const phone = await JsonClient.open(jsonUrl(s, bob.token));
    const caught = await phone.next('message');
    assert.equal((caught.data as MessageData).id, r.id);
    phone.send({ action: 'ack', id: r.id });
    phone.send({ action: 'read', id: r.id });
    await phone.sync();
    await hook.until(() => hook.ofType('message.read').some((e) => e.data['messageId'] === r.id), 'the read receipt');
    const bobs = hook.unique().filter((e) => e.data['messageId'] === r.id && e.data['receiver'] === bob.id);
    assert.deepEqual(types(bobs), ['message.delivered', 'message.read']);
    assert.equal(bobs[0]!.data['status'], 'DELIVERED');
    assert.equal(hook.ofType('message.undelivered').filter(about).length, 1, 'still one');
    online.close();
    phone.close();
    await hook.until(() => hook.ofType('client.disconnected').filter((e) => e.data['protocol'] === 'json-ws').length >= 2, 'the JSON WebSocket disconnects');
    assert.ok(hook.ofType('client.disconnected').filter((e) => e.data['protocol'] === 'json-ws').every((e) => e.data['reason'] === 'connection closed'));
  });

  it('writes message.undelivered for a user-queue message whose user has no session anywhere, and none for one who is online', async () => {
    const send = (who: string, body: string) => api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: `/user/${who}/queue/strm`, body } });
    assert.equal((await send('bob', 'stream 1 ready')).status, 200);
    const here = await RawStomp.tcp(s.server.address('stomp').port);
    await here.connect({ login: 'alice', passcode: 'alice-password' });
    assert.equal((await send('alice', 'not subscribed, but online')).status, 200);
    await drained(s, admin);
    const queued = hook.ofType('message.undelivered').filter((e) => e.data['source'] === 'user-queue');
    assert.deepEqual(
      queued.map((e) => e.data),
      [{ source: 'user-queue', receiver: bob.id, receiverName: 'bob', mailbox: 'strm', payload: 'stream 1 ready', encoding: 'utf8', contentType: 'text/plain', publisher: null }],
    );
    here.close();
  });

  it('tells of a chat thread: created, each stored message, closed', async () => {
    const created = await api<{ id: string }>(s.url, 'POST', '/api/v1/thread', {
      token: admin,
      body: { thread: 'org1/visitor/v9', members: [{ user: 'alice', role: 'visitor' }, { user: 'bob', role: 'agent' }] },
    });
    assert.equal(created.status, 200, created.body.message);
    const msg = { uid: 'u-1', type: 'TEXT', content: 'hello', thread: { topic: 'org1/visitor/v9' } };
    assert.equal((await api(s.url, 'POST', '/api/v1/message/send', { token: alice.token, body: msg })).body.code, 200);
    assert.equal((await api(s.url, 'POST', '/api/v1/message/send', { token: alice.token, body: msg })).body.code, 200, 'a resend of the same uid');
    assert.equal((await api(s.url, 'POST', '/api/v1/message/send', { token: alice.token, body: { ...msg, uid: 't-1', type: 'TYPING' } })).body.code, 200);
    assert.equal((await api(s.url, 'POST', '/api/v1/thread/org1.visitor.v9/close', { token: bob.token, body: { reason: 'solved' } })).status, 200);
    await drained(s, admin);
    const thread = hook.unique().filter((e) => (e.data['thread'] as { thread?: string } | undefined)?.thread === 'org1.visitor.v9');
    assert.deepEqual(types(thread), ['thread.created', 'thread.message', 'thread.message', 'thread.closed'], 'no event for the resend or the TYPING notice; AUTO_CLOSED before closed');
    assert.deepEqual(thread[0]!.data['thread'], {
      id: created.body.data.id,
      thread: 'org1.visitor.v9',
      topic: 'org1/visitor/v9',
      createdBy: '1',
      members: [
        { userId: alice.id, role: 'visitor' },
        { userId: bob.id, role: 'agent' },
      ].sort((a, b) => (a.userId < b.userId ? -1 : 1)),
    });
    const first = thread[1]!.data;
    assert.equal(first['author'], alice.id);
    assert.equal((first['message'] as { content: string }).content, 'hello');
    assert.equal((first['message'] as { status: string }).status, 'SUCCESS');
    assert.equal((thread[2]!.data['message'] as { type: string }).type, 'AUTO_CLOSED');
    assert.equal(thread[3]!.data['reason'], 'solved');
    assert.equal(thread[3]!.data['closedBy'], 'bob');
  });

  it('lists recent deliveries and the backlog to admins only', async () => {
    await drained(s, admin);
    const recent = await api<{ eventId: string; type: string; state: string; attempts: number; lastStatus: number; event: { id: string } }[]>(
      s.url,
      'GET',
      `/api/admin/webhooks/deliveries?limit=5&webhook=${encodeURIComponent(hook.url)}`,
      { token: admin },
    );
    assert.equal(recent.status, 200);
    assert.equal(recent.body.data.length, 5);
    for (const d of recent.body.data) {
      assert.equal(d.state, 'delivered');
      assert.equal(d.lastStatus, 200);
      assert.equal(d.event.id, d.eventId);
      assert.ok(hook.unique().some((e) => e.id === d.eventId));
    }
    const overview = await api<Backlog>(s.url, 'GET', '/api/admin/webhooks', { token: admin });
    assert.deepEqual(overview.body.data.webhooks.map((w) => w.name), [hook.url, 'orders']);
    assert.equal(JSON.stringify(overview.body.data).includes(hook.secret), false, 'secrets are not shown');
    assert.equal((await api(s.url, 'GET', '/api/admin/webhooks', { token: alice.token })).status, 403);
    assert.equal((await api(s.url, 'GET', '/api/admin/webhooks/dead')).status, 401);
    assert.equal((await api(s.url, 'GET', '/api/admin/webhooks/deliveries?state=lost', { token: admin })).status, 400);

    const metrics = await (await fetch(s.url + '/metrics')).text();
    const delivered = new RegExp(`^herald_webhook_deliveries_total\\{webhook="orders"\\} (\\d+)$`, 'm').exec(metrics);
    assert.equal(Number(delivered?.[1]), orders.unique().length);
    assert.match(metrics, /^herald_webhook_delivery_seconds_count\{webhook="orders"\} \d+$/m);
    assert.match(metrics, /^herald_webhook_backlog\{webhook="orders"\} 0$/m);
    assert.match(metrics, /^herald_webhook_dead\{webhook="orders"\} 0$/m);
  });
});

describe('webhooks: retries, dedupe by event id, the dead list and replay', () => {
  let s: TestServer;
  let hook: WebhookReceiver;
  let admin: string;
  before(async () => {
    hook = await WebhookReceiver.start();
    s = await startServer({
      webhooks: [{ url: hook.url, events: ['message.published'], secret: hook.secret }],
      webhookRetryBaseMs: 50,
      webhookMaxAttempts: 3,
      webhookTimeoutMs: 300,
    });
    admin = await login(s.url);
  });
  after(async () => {
    await s.stop();
    await hook.stop();
  });

  const publish = async (topic: string, body: string) => {
    const r = await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: `/topic/${topic}`, body } });
    assert.equal(r.status, 200, r.body.message);
  };

  it('sends an event again when its answer comes too late: duplicates carry the same id and body, and dedupe to one', async () => {
    let slow = true;
    hook.answer = (e) => {
      if (e.data['payload'] === 'slow' && slow) {
        slow = false;
        hook.delayMs = 0;
      }
      return 200;
    };
    hook.delayMs = 500; // over webhookTimeoutMs: Herald counts the first attempt as failed, the receiver took it
    await publish('dedupe.a', 'slow');
    await hook.until(() => hook.received.filter((e) => e.data['payload'] === 'slow').length >= 2, 'the second copy');
    const copies = hook.requests.filter((r) => r.body.includes('"slow"'));
    assert.ok(copies.length >= 2);
    assert.equal(new Set(copies.map((c) => c.headers['herald-event-id'])).size, 1, 'one Herald-Event-Id');
    assert.equal(new Set(copies.map((c) => c.body)).size, 1, 'one body, byte for byte');
    assert.equal(hook.unique().filter((e) => e.data['payload'] === 'slow').length, 1, 'deduped by id');
    hook.answer = 200;
  });

  it('dead-lists an event after webhookMaxAttempts without holding back other keys, and replays it on request', async () => {
    hook.answer = (e) => (e.data['payload'] === 'poison' ? 500 : 200);
    await publish('dead.a', 'poison');
    await publish('dead.b', 'fine');
    await hook.until(() => hook.unique().some((e) => e.data['payload'] === 'fine'), 'the event of another key');
    let dead: { id: string; eventId: string; attempts: number; lastStatus: number; lastError: string; event: { data: { payload: string } } }[] = [];
    const deadline = Date.now() + 10_000;
    while (dead.length === 0) {
      assert.ok(Date.now() < deadline, 'the event reaches the dead list');
      await new Promise((r) => setTimeout(r, 50));
      dead = (await api<typeof dead>(s.url, 'GET', '/api/admin/webhooks/dead', { token: admin })).body.data;
    }
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.event.data.payload, 'poison');
    assert.equal(dead[0]!.attempts, 3);
    assert.equal(dead[0]!.lastStatus, 500);
    assert.equal(dead[0]!.lastError, 'HTTP 500: try again later');
    assert.equal(hook.requests.filter((r) => r.body.includes('"poison"')).length, 3, 'three attempts');
    // Lower bounds only (a retry never comes early; it may come late): base·(0.8..1.2), then twice that.
    const gaps = hook.requests.filter((r) => r.body.includes('"poison"')).map((r, i, all) => (i === 0 ? 0 : r.at - all[i - 1]!.at));
    assert.ok(gaps[1]! >= 40 - 2 && gaps[2]! >= 80 - 2, `the back-off waits, and doubles (${gaps.join(', ')} ms)`);
    const metrics = await (await fetch(s.url + '/metrics')).text();
    assert.match(metrics, /^herald_webhook_failures_total\{webhook="[^"]+",reason="http_500"\} 3$/m);

    assert.equal((await api(s.url, 'POST', '/api/admin/webhooks/dead/replay', { token: admin, body: {} })).status, 400, 'ids or all');
    assert.equal((await api(s.url, 'POST', '/api/admin/webhooks/dead/999999/replay', { token: admin })).status, 404);
    hook.answer = 200;
    const replay = await api<{ replayed: number }>(s.url, 'POST', `/api/admin/webhooks/dead/${dead[0]!.id}/replay`, { token: admin });
    assert.equal(replay.body.data.replayed, 1);
    await hook.until(() => hook.unique().some((e) => e.data['payload'] === 'poison'), 'the replayed event');
    assert.equal(hook.unique().find((e) => e.data['payload'] === 'poison')!.id, dead[0]!.eventId, 'the same event id');
    assert.deepEqual((await api<unknown[]>(s.url, 'GET', '/api/admin/webhooks/dead', { token: admin })).body.data, []);
  });

  it('replays the whole dead list at once', async () => {
    hook.answer = 503;
    await publish('dead.c', 'one');
    await publish('dead.d', 'two');
    const deadline = Date.now() + 10_000;
    while ((await api<unknown[]>(s.url, 'GET', '/api/admin/webhooks/dead', { token: admin })).body.data.length < 2) {
      assert.ok(Date.now() < deadline, 'both reach the dead list');
      await new Promise((r) => setTimeout(r, 50));
    }
    hook.answer = 200;
    const r = await api<{ replayed: number }>(s.url, 'POST', '/api/admin/webhooks/dead/replay', { token: admin, body: { all: true } });
    assert.equal(r.body.data.replayed, 2);
    await hook.until(() => ['one', 'two'].every((p) => hook.unique().some((e) => e.data['payload'] === p)), 'both replayed');
  });
});

describe('webhooks: none configured', () => {
  it('writes nothing to the outbox and shows no webhook metrics', async () => {
    const s = await startServer();
    try {
      const admin = await login(s.url);
      const c = await RawStomp.tcp(s.server.address('stomp').port);
      await c.connect({ login: 'admin', passcode: 'admin-secret-pw' });
      c.send('SEND\ndestination:/topic/a\nreceipt:r\n\nx\0');
      await c.next('RECEIPT');
      c.close();
      await sendMessage(s, admin, { content: 'x', title: 't', type: 0, receiver: ['admin'] });
      await new Promise((r) => setTimeout(r, 50));
      for (const state of ['pending', 'delivered', 'dead'] as const) assert.deepEqual(await s.server.ctx.store.listWebhookEvents({ state, limit: 10 }), []);
      const overview = await api<Backlog>(s.url, 'GET', '/api/admin/webhooks', { token: admin });
      assert.deepEqual(overview.body.data, { webhooks: [], backlog: [] });
      assert.doesNotMatch(await (await fetch(s.url + '/metrics')).text(), /herald_webhook_/);
    } finally {
      await s.stop();
    }
  });
});

describe('webhooks: the command line', () => {
  let hook: WebhookReceiver;
  before(async () => {
    hook = await WebhookReceiver.start();
  });
  after(() => hook.stop());

  it('herald webhook test sends a signed sample and prints the answer', async () => {
    const dir = tempDir('herald-wh-cli-');
    const ok = await runCommand(['webhook', 'test', hook.url, '--secret', hook.secret], { HERALD_DATA_DIR: dir });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`^POST ${hook.url}: 200 in \\d+ ms \\(event [0-9a-f-]{36}, signed with --secret\\)$`));
    assert.equal(hook.unique().length, 1);
    assert.equal(hook.unique()[0]!.type, 'webhook.test');
    assert.ok(hook.requests[0]!.valid);

    const file = join(dir, 'herald.config.json');
    writeFileSync(file, JSON.stringify({ webhooks: [{ name: 'mine', url: hook.url, events: ['client.connected'], secret: hook.secret }] }));
    const fromConfig = await runCommand(['webhook', 'test', hook.url], { HERALD_CONFIG: file });
    assert.equal(fromConfig.code, 0, fromConfig.stderr);
    assert.match(fromConfig.stdout, /signed with the secret of webhook mine/);

    const wrong = await runCommand(['webhook', 'test', hook.url, '--secret', 'not-the-secret']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stdout, /failed in \d+ ms: HTTP 400: bad signature$/);
    const nobody = await runCommand(['webhook', 'test', 'http://127.0.0.1:1/hook', '--secret', 'x']);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stdout, /could not reach 127\.0\.0\.1:1: ECONNREFUSED/);
    const usage = await runCommand(['webhook', 'test', hook.url]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /no secret: give --secret/);
    assert.equal((await runCommand(['webhook', 'send', hook.url])).code, 2);
    assert.match((await runCommand(['webhook', 'test', 'ftp://x'])).stderr, /must be http:\/\/ or https:\/\//);
    assert.match((await runCommand(['user', 'list', '--secret', 'x'])).stderr, /unknown option --secret for "herald user list"/);
  });

  it('refuses to start on a wrong webhooks entry, in one line naming it; check-config redacts the secrets', async () => {
    const dir = tempDir('herald-wh-cfg-');
    const file = join(dir, 'herald.config.json');
    writeFileSync(file, JSON.stringify({ webhooks: [{ url: 'https://example.com/a', events: ['client.connected'], secret: 'top-secret-1' }, { url: 'https://example.com/b', events: ['message.sent'], secret: 'x' }] }));
    const p = runHerald(['serve', ...LOOPBACK_PORT_FLAGS, '--data-dir', dir], { HERALD_CONFIG: file });
    const { code } = await p.exited;
    assert.equal(code, 2);
    assert.equal(
      p.stderr.trim(),
      `herald: invalid configuration: webhooks[1] (https://example.com/b) in ${file}: unknown event "message.sent"; events are client.connected, client.disconnected, subscription.created, subscription.removed, message.published, message.undelivered, message.delivered, message.read, thread.created, thread.message, thread.closed (or "*" for all)`,
    );

    writeFileSync(file, JSON.stringify({ webhooks: [{ url: 'https://example.com/a', events: ['client.connected'], secret: 'top-secret-1' }] }));
    const check = await runCommand(['check-config', '--json', '--data-dir', dir], { HERALD_CONFIG: file });
    assert.equal(check.code, 0, check.stderr);
    assert.equal(check.stdout.includes('top-secret-1'), false);
    const parsed = JSON.parse(check.stdout) as { keys: Record<string, { value: unknown; source: string }> };
    assert.deepEqual(parsed.keys['webhooks'], {
      value: [{ name: 'https://example.com/a', url: 'https://example.com/a', events: ['client.connected'], topics: [], secret: '[redacted]' }],
      source: `file ${file}`,
    });
  });
});
