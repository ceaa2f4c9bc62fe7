/**
 * Webhooks while the receiver is down for 30 s (issue 15): events keep
 * happening on sessions, a chat thread and users' messages; once the
 * receiver is back every one of them arrives, and those of each session,
 * thread and user arrive in the order they happened. Retries are capped at
 * 1 s here (webhookRetryMaxMs) so the test does not wait for the default
 * back-off.
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { sendMessage } from '../helpers/messages.js';
import { RawStomp } from '../helpers/stomp.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';

interface Row {
  id: string;
  eventId: string;
  orderKey: string;
  state: string;
  attempts: number;
}

/** Every row of one state, through the admin API's pages. */
async function allRows(s: TestServer, admin: string, state: string): Promise<Row[]> {
  const out: Row[] = [];
  let before = '';
  for (;;) {
    const page = await api<Row[]>(s.url, 'GET', `/api/admin/webhooks/deliveries?state=${state}&limit=500${before}`, { token: admin });
    assert.equal(page.status, 200, page.body.message);
    out.push(...page.body.data);
    if (page.body.data.length < 500) return out;
    before = `&before=${page.body.data.at(-1)!.id}`;
  }
}

describe('webhooks: a receiver down for 30 s', () => {
  let s: TestServer;
  let hook: WebhookReceiver;
  let admin: string;
  before(async () => {
    hook = await WebhookReceiver.start();
    s = await startServer({
      webhooks: [{ url: hook.url, events: ['*'], secret: hook.secret }],
      webhookRetryBaseMs: 100,
      webhookRetryMaxMs: 1000,
      webhookMaxAttempts: 100,
      webhookTimeoutMs: 1000,
    });
    admin = await login(s.url);
    for (const name of ['carol', 'dave']) {
      const r = await api(s.url, 'POST', '/api/users', { token: admin, body: { name, password: name + '-password', role: 'user' } });
      assert.equal(r.status, 200, r.body.message);
    }
    const t = await api(s.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'org/outage', members: [{ user: 'carol', role: 'visitor' }] } });
    assert.equal(t.status, 200, t.body.message);
  });
  after(async () => {
    await s.stop();
    await hook.stop();
  });

  it('delivers every event once it is back, in order per session, thread and user', async () => {
    await hook.until(() => hook.ofType('thread.created').length === 1, 'the thread before the outage');
    await hook.down();
    const downAt = Date.now();
    let round = 0;
    // Something happens every 250 ms for 30 s: sessions come and go, a thread talks, users are sent messages.
    while (Date.now() - downAt < 30_000) {
      round++;
      const c = await RawStomp.tcp(s.server.address('stomp').port);
      await c.connect({ login: 'carol', passcode: 'carol-password' });
      c.send(`SUBSCRIBE\nid:1\ndestination:/topic/round.${round}\nreceipt:r1\n\n\0`);
      await c.next('RECEIPT');
      c.send(`SEND\ndestination:/topic/round.${round}\nreceipt:r2\n\nround ${round}\0`);
      await c.next('RECEIPT');
      c.send('DISCONNECT\nreceipt:r3\n\n\0');
      await c.closedPromise;
      const m = { uid: `m-${round}`, type: 'TEXT', content: `message ${round}`, thread: { topic: 'org/outage' } };
      assert.equal((await api(s.url, 'POST', '/api/v1/message/send', { token: admin, body: m })).body.code, 200);
      await sendMessage(s, admin, { title: `t${round}`, content: `for dave ${round}`, type: 0, receiver: ['dave'] });
      await new Promise((r) => setTimeout(r, 250));
    }
    const pending = (await api<{ backlog: { pending: number }[] }>(s.url, 'GET', '/api/admin/webhooks', { token: admin })).body.data.backlog[0]!.pending;
    // Per round: connected, subscription created, published, subscription removed, disconnected, thread.message, message.undelivered.
    assert.equal(pending, round * 7, `the events of ${round} rounds wait in the outbox`);
    assert.equal(hook.requests.length, hook.received.length, 'nothing reached the receiver while it was down');
    const before = hook.received.length;

    await hook.up();
    await hook.until(() => hook.unique().length >= before + pending, 'every event after the outage', 30_000);
    // Every row the outbox ever held is delivered, none is left pending or dead.
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(await allRows(s, admin, 'pending'), []);
    assert.deepEqual(await allRows(s, admin, 'dead'), []);
    const rows = await allRows(s, admin, 'delivered');
    const got = new Set(hook.unique().map((e) => e.id));
    const lost = rows.filter((r) => !got.has(r.eventId));
    assert.deepEqual(lost, [], 'no event lost');
    assert.ok(rows.some((r) => r.attempts > 5), 'events were tried again and again during the outage');

    // Order: per key, the receiver first saw the events in the order they were written (row ids).
    const firstSeen = new Map<string, number>();
    hook.received.forEach((e, i) => {
      if (!firstSeen.has(e.id)) firstSeen.set(e.id, i);
    });
    const byKey = new Map<string, Row[]>();
    for (const r of rows) byKey.set(r.orderKey, [...(byKey.get(r.orderKey) ?? []), r]);
    let checked = 0;
    for (const [key, list] of byKey) {
      const written = [...list].sort((a, b) => Number(a.id) - Number(b.id)).map((r) => r.eventId);
      const arrived = [...written].sort((a, b) => firstSeen.get(a)! - firstSeen.get(b)!);
      assert.deepEqual(arrived, written, `events of ${key} in order`);
      checked += list.length;
    }
    assert.ok(byKey.has('user:' + (await s.server.ctx.store.getUserByName('dave'))!.id), 'a user key');
    assert.ok([...byKey.keys()].some((k) => k.startsWith('thread:')) && [...byKey.keys()].filter((k) => k.startsWith('session:')).length >= round);
    assert.equal(checked, rows.length);
    const threadMessages = hook.ofType('thread.message').map((e) => (e.data['message'] as { content: string }).content);
    assert.deepEqual(threadMessages, Array.from({ length: round }, (_, i) => `message ${i + 1}`));
  });
});
