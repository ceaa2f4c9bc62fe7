/** The webhook pieces that need no server: signing, the back-off schedule, the outbox's rows and batching. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { systemClock } from '../../src/clock.js';
import type { NewWebhookEvent } from '../../src/store/webhooks.js';
import { retryDelay } from '../../src/webhooks/delivery.js';
import { WebhookMetrics } from '../../src/webhooks/metrics.js';
import { Outbox } from '../../src/webhooks/outbox.js';
import { signature, verifySignature, webhookHeaders } from '../../src/webhooks/signing.js';
import { parseWebhooks, type WebhookSpec } from '../../src/webhooks/spec.js';

const silent = pino({ level: 'silent' });

describe('webhook signing', () => {
  const body = '{"id":"evt","type":"client.connected"}';
  it('signs t + "." + body with HMAC-SHA256, the Stripe way', () => {
    // Computed with Python's hmac module: hmac.new(b'whsec_test', b'1700000000.' + body, sha256).hexdigest()
    assert.equal(signature('whsec_test', 1_700_000_000, body), 't=1700000000,v1=d6e495b5e6f4388951e09293b85c429146cc057a6965887e8800039051592355');
    const h = webhookHeaders('evt', 'whsec_test', body, 1_700_000_000_999);
    assert.deepEqual(
      { id: h['herald-event-id'], t: h['herald-timestamp'], sig: h['herald-signature'], type: h['content-type'] },
      { id: 'evt', t: '1700000000', sig: signature('whsec_test', 1_700_000_000, body), type: 'application/json' },
    );
  });

  it('verifies within the tolerance only, with the right secret and body', () => {
    const header = signature('k', 1000, body);
    assert.equal(verifySignature('k', header, body, 1000_000), true);
    assert.equal(verifySignature('k', header, body, 1000_000 + 299_000), true);
    assert.equal(verifySignature('k', header, body, 1000_000 + 301_000), false, 'too old: a replay');
    assert.equal(verifySignature('other', header, body, 1000_000), false);
    assert.equal(verifySignature('k', header, body + ' ', 1000_000), false);
    assert.equal(verifySignature('k', `${header},v1=00`, body, 1000_000), true, 'any v1 may match (secret rotation)');
    assert.equal(verifySignature('k', 't=x,v1=00', body, 1000_000), false);
    assert.equal(verifySignature('k', '', body, 1000_000), false);
  });
});

describe('webhook back-off', () => {
  it('doubles from the base, within ±20%, up to the cap', () => {
    assert.equal(retryDelay(1, 1000, 1e9, () => 0.5), 1000);
    assert.equal(retryDelay(2, 1000, 1e9, () => 0.5), 2000);
    assert.equal(retryDelay(3, 1000, 1e9, () => 0), 3200);
    assert.equal(retryDelay(3, 1000, 1e9, () => 1), 4800);
    assert.equal(retryDelay(10, 1000, 5000, () => 0.5), 5000, 'capped');
    assert.equal(retryDelay(200, 1000, 5000, () => 0.5), 5000, 'no overflow');
  });

  it('spans about a day over the default 15 attempts', () => {
    const total = (r: number): number => Array.from({ length: 14 }, (_, i) => retryDelay(i + 1, 5000, 43_200_000, () => r)).reduce((a, b) => a + b, 0);
    const hours = (ms: number): number => ms / 3_600_000;
    assert.ok(hours(total(0.5)) > 20 && hours(total(0.5)) < 26, `${hours(total(0.5))} h`);
    assert.ok(hours(total(0)) > 17 && hours(total(1)) < 28);
  });
});

describe('webhook outbox', () => {
  const specs = parseWebhooks([
    { name: 'all', url: 'http://127.0.0.1:9/a', events: ['*'], secret: 's' },
    { name: 'orders', url: 'http://127.0.0.1:9/b', events: ['message.published'], topics: ['orders/#'], secret: 's' },
  ]) as WebhookSpec[];

  it('builds one row per webhook that takes the event, one body and id for all', () => {
    const out = new Outbox(specs, { insertWebhookEvents: async () => undefined }, systemClock, silent, new WebhookMetrics(new Registry()), () => undefined);
    assert.equal(out.wants('thread.created'), true);
    const rows = out.rows('message.published', 'topic:orders/1', { n: 1 }, 'orders/1');
    assert.deepEqual(rows.map((r) => r.webhook), ['all', 'orders']);
    assert.equal(rows[0]!.eventId, rows[1]!.eventId);
    assert.equal(rows[0]!.body, rows[1]!.body);
    const body = JSON.parse(rows[0]!.body) as { id: string; type: string; createdAt: string; data: unknown };
    assert.deepEqual(Object.keys(body), ['id', 'type', 'createdAt', 'data']);
    assert.equal(body.id, rows[0]!.eventId);
    assert.deepEqual(body.data, { n: 1 });
    assert.deepEqual(out.rows('message.published', 'k', {}, 'news/1').map((r) => r.webhook), ['all'], 'topics filter');
    const none = new Outbox([specs[1]!], { insertWebhookEvents: async () => undefined }, systemClock, silent, new WebhookMetrics(new Registry()), () => undefined);
    assert.equal(none.wants('client.connected'), false);
    assert.deepEqual(none.rows('client.connected', 'k', {}), []);
  });

  it('writes emitted events in batches, in order, and keeps them through a store failure', async () => {
    const writes: NewWebhookEvent[][] = [];
    let failing = true;
    const store = {
      insertWebhookEvents: async (events: readonly NewWebhookEvent[]) => {
        if (failing) throw new Error('store away');
        writes.push([...events]);
      },
    };
    const out = new Outbox(specs, store, systemClock, silent, new WebhookMetrics(new Registry()), () => undefined);
    for (let i = 0; i < 1200; i++) out.emit('client.connected', `session:${i % 7}`, { i });
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(writes.length, 0);
    failing = false;
    await out.stop();
    assert.deepEqual(writes.map((w) => w.length), [500, 500, 200], 'batches of at most 500 rows, once the store takes them (client.connected goes to one webhook)');
    const written = writes.flat().filter((r) => r.webhook === 'all').map((r) => (JSON.parse(r.body) as { data: { i: number } }).data.i);
    assert.deepEqual(written, Array.from({ length: 1200 }, (_, i) => i), 'every event, in the order emitted');
    out.emit('client.connected', 'k', {});
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(writes.flat().length, 1200, 'nothing after stop');
  });
});
