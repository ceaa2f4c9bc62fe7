/**
 * The WebhookStore contract (src/store/webhooks.ts), and the events the
 * message and thread stores write with their changes (same transaction,
 * only when the change happened).
 */
import assert from 'node:assert/strict';
import { describe, it, beforeEach, afterEach } from 'node:test';
import type { LeaseStore, MessageStore, NewWebhookEvent, ThreadStore, WebhookStore } from '../../../src/store/store.js';
import type { Opened, StoreFactory } from './harness.js';

type S = WebhookStore & MessageStore & ThreadStore & LeaseStore;

let seq = 0;
function ev(key: string, webhook = 'w1', type = 'client.connected', createdAt = 1000): NewWebhookEvent {
  const eventId = `e${++seq}`;
  return { eventId, webhook, type, orderKey: key, body: JSON.stringify({ id: eventId, n: seq }), createdAt };
}

export function webhookStoreSuite(factory: StoreFactory<S>): void {
  describe('webhook outbox', () => {
    let store: Opened<S>;
    beforeEach(async () => {
      store = await factory.open();
    });
    afterEach(async () => {
      await store.close();
    });

    const ids = (rows: { eventId: string }[]): string[] => rows.map((r) => r.eventId);

    it('claims only the first pending row of each key, oldest first, for the named webhooks, once', async () => {
      const a1 = ev('a');
      const a2 = ev('a');
      const b1 = ev('b');
      const other = ev('a', 'w2');
      await store.insertWebhookEvents([a1, a2, b1, other]);
      await store.insertWebhookEvents([]);
      const first = await store.claimWebhookEvents('n1', ['w1'], 2000, 10);
      assert.deepEqual(ids(first), [a1.eventId, b1.eventId], 'a2 waits behind a1; w2 is not asked for');
      assert.equal(first[0]!.body, a1.body);
      assert.equal(first[0]!.state, 'pending');
      assert.equal(first[0]!.attempts, 0);
      assert.equal(first[0]!.claimedBy, 'n1');
      assert.equal(first[0]!.orderKey, 'a');
      assert.deepEqual(await store.claimWebhookEvents('n2', ['w1'], 2000, 10), [], 'claimed rows, and rows behind them, are not handed out again');
      assert.deepEqual(ids(await store.claimWebhookEvents('n2', ['w1', 'w2'], 2000, 10)), [other.eventId], 'keys are per webhook');
      assert.deepEqual(await store.claimWebhookEvents('n2', ['w1'], 500, 10), [], 'not due before it was written');
      assert.deepEqual(await store.claimWebhookEvents('n2', [], 2000, 10), []);

      await store.webhookDelivered(first[0]!.id, 2100, 204);
      const next = await store.claimWebhookEvents('n1', ['w1'], 2200, 10);
      assert.deepEqual(ids(next), [a2.eventId], 'a1 delivered: a2 is next');
      const recent = await store.listWebhookEvents({ state: 'delivered', limit: 10 });
      assert.deepEqual(ids(recent), [a1.eventId]);
      assert.equal(recent[0]!.lastStatus, 204);
      assert.equal(recent[0]!.attempts, 1);
      assert.equal(recent[0]!.finishedAt, 2100);
      assert.equal(recent[0]!.claimedBy, null);
    });

    it('holds back a failing key until its retry is due, without holding back other keys, then dead-lists it', async () => {
      const a1 = ev('a');
      const a2 = ev('a');
      const b1 = ev('b');
      await store.insertWebhookEvents([a1, a2]);
      const [row] = await store.claimWebhookEvents('n1', ['w1'], 2000, 10);
      await store.webhookFailed(row!.id, 'n1', 2000, 5000, 503, 'HTTP 503');
      await store.insertWebhookEvents([b1]);
      const b = await store.claimWebhookEvents('n1', ['w1'], 3000, 10);
      assert.deepEqual(ids(b), [b1.eventId], 'key a waits for its retry; b goes');
      await store.webhookDelivered(b[0]!.id, 3000, 200);
      const again = await store.claimWebhookEvents('n1', ['w1'], 5000, 10);
      assert.deepEqual(ids(again), [a1.eventId], 'a1 again, still before a2');
      assert.equal(again[0]!.attempts, 1);
      assert.equal(again[0]!.lastStatus, 503);
      assert.equal(again[0]!.lastError, 'HTTP 503');
      await store.webhookFailed(again[0]!.id, 'n1', 5000, null, null, 'timed out after 5000 ms');
      const dead = await store.listWebhookEvents({ state: 'dead', limit: 10 });
      assert.deepEqual(ids(dead), [a1.eventId]);
      assert.equal(dead[0]!.attempts, 2);
      assert.equal(dead[0]!.lastStatus, null);
      assert.equal(dead[0]!.lastError, 'timed out after 5000 ms');
      assert.deepEqual(ids(await store.claimWebhookEvents('n1', ['w1'], 5000, 10)), [a2.eventId], 'a dead row holds nothing back');
      await store.webhookFailed(again[0]!.id, 'n1', 6000, 9000, 500, 'late');
      assert.equal((await store.listWebhookEvents({ state: 'dead', limit: 10 }))[0]!.lastError, 'timed out after 5000 ms', 'a failure for a row no longer pending changes nothing');

      const backlog = await store.webhookBacklog();
      assert.deepEqual(backlog, [{ webhook: 'w1', pending: 1, dead: 1, oldestPendingAt: 1000 }]);

      assert.equal(await store.replayWebhookEvents([dead[0]!.id, 'garbage', '999999'], 7000), 1);
      assert.equal(await store.replayWebhookEvents([dead[0]!.id], 7000), 0, 'no longer dead');
      const replayed = await store.listWebhookEvents({ state: 'pending', limit: 10 });
      assert.deepEqual(ids(replayed), [a2.eventId, a1.eventId], 'newest id first');
      const back = replayed.find((r) => r.eventId === a1.eventId)!;
      assert.equal(back.attempts, 0);
      assert.equal(back.dueAt, 7000);
      assert.equal(back.finishedAt, null);
    });

    it('replays every dead row at once, and lists by webhook with paging', async () => {
      const rows = [ev('a', 'w1'), ev('b', 'w1'), ev('c', 'w2')];
      await store.insertWebhookEvents(rows);
      for (const r of await store.claimWebhookEvents('n1', ['w1', 'w2'], 2000, 10)) await store.webhookFailed(r.id, 'n1', 2000, null, 500, 'no');
      const all = await store.listWebhookEvents({ state: 'dead', limit: 10 });
      assert.deepEqual(ids(all), rows.map((r) => r.eventId).reverse());
      assert.deepEqual(ids(await store.listWebhookEvents({ state: 'dead', webhook: 'w2', limit: 10 })), [rows[2]!.eventId]);
      assert.deepEqual(ids(await store.listWebhookEvents({ state: 'dead', beforeId: all[0]!.id, limit: 1 })), [rows[1]!.eventId]);
      assert.deepEqual(await store.listWebhookEvents({ state: 'dead', beforeId: 'x', limit: 1 }), []);
      assert.equal(await store.replayWebhookEvents('all', 3000), 3);
      assert.equal((await store.listWebhookEvents({ state: 'dead', limit: 10 })).length, 0);
      assert.equal((await store.claimWebhookEvents('n1', ['w1', 'w2'], 3000, 10)).length, 3);
    });

    it('hands back the claims of an owner, and those of incarnations that are gone', async () => {
      const live = await store.beginIncarnation('live', 60_000);
      const gone = await store.beginIncarnation('gone', 60_000);
      await store.insertWebhookEvents([ev('a'), ev('b'), ev('c')]);
      assert.equal((await store.claimWebhookEvents(live, ['w1'], 2000, 1)).length, 1);
      assert.equal((await store.claimWebhookEvents(gone, ['w1'], 2000, 1)).length, 1);
      assert.equal((await store.claimWebhookEvents('shutting-down', ['w1'], 2000, 1)).length, 1);
      await store.releaseWebhookClaims('shutting-down');
      assert.equal((await store.claimWebhookEvents('n9', ['w1'], 2000, 10)).length, 1, 'released at shutdown');
      assert.equal(await store.releaseDeadWebhookClaims(['n9']), 0, 'nothing is fenced: live incarnations keep their claims');
      await store.endIncarnation(gone);
      assert.equal(await store.releaseDeadWebhookClaims(['n9']), 1, 'the fenced incarnation loses its claim');
      const taken = await store.claimWebhookEvents('n9', ['w1'], 2000, 10);
      assert.equal(taken.length, 1);
      assert.equal(taken[0]!.attempts, 0);
      await store.webhookFailed(taken[0]!.id, gone, 2100, 2200, 500, 'the fenced owner, late');
      const still = (await store.listWebhookEvents({ state: 'pending', limit: 10 })).find((r) => r.id === taken[0]!.id)!;
      assert.deepEqual([still.claimedBy, still.attempts, still.lastError], ['n9', 0, null], 'a failure reported by an owner that lost the row changes nothing');
    });

    it('never hands one row to two concurrent claims', async () => {
      const rows = Array.from({ length: 60 }, (_, i) => ev(`k${i}`));
      await store.insertWebhookEvents(rows);
      const claims = await Promise.all(Array.from({ length: 12 }, (_, i) => store.claimWebhookEvents(`n${i % 3}`, ['w1'], 2000, 7)));
      const got = claims.flat().map((r) => r.eventId);
      assert.equal(new Set(got).size, got.length, 'no row claimed twice');
      const rest = await store.claimWebhookEvents('late', ['w1'], 2000, 100);
      assert.deepEqual([...got, ...ids(rest)].sort(), ids(rows).sort(), 'every row claimed exactly once');
    });

    it('prunes delivered and dead rows by age, in bounded steps, never pending ones', async () => {
      await store.insertWebhookEvents([ev('a'), ev('b'), ev('c'), ev('d')]);
      const claimed = await store.claimWebhookEvents('n1', ['w1'], 2000, 3);
      await store.webhookDelivered(claimed[0]!.id, 100, 200);
      await store.webhookDelivered(claimed[1]!.id, 5000, 200);
      await store.webhookFailed(claimed[2]!.id, 'n1', 100, null, 500, 'no');
      assert.equal(await store.pruneWebhookEvents(1000, 1000, 1), 1);
      assert.equal(await store.pruneWebhookEvents(1000, 1000, 10), 1);
      assert.equal(await store.pruneWebhookEvents(1000, 1000, 10), 0);
      assert.equal((await store.listWebhookEvents({ state: 'delivered', limit: 10 })).length, 1, 'the newer delivered row stays');
      assert.equal((await store.listWebhookEvents({ state: 'pending', limit: 10 })).length, 1);
    });

    it('writes the events of message and thread changes with them, and none when nothing changed', async () => {
      const id = await store.insertMessage({ sender: 'admin', title: 't', content: 'c', type: '0', createdAt: 1, receivers: ['u1'] }, (messageId) => [
        { ...ev('user:u1', 'w1', 'message.undelivered'), body: JSON.stringify({ messageId }) },
      ]);
      const undelivered = await store.listWebhookEvents({ state: 'pending', limit: 10 });
      assert.deepEqual(undelivered.map((r) => [r.type, JSON.parse(r.body)]), [['message.undelivered', { messageId: id }]], 'the event knows the id of the message');
      assert.equal(await store.setDeliveryStatus(id, 'u1', 'DELIVERED', 2, [ev('user:u1', 'w1', 'message.delivered')]), true);
      assert.equal(await store.setDeliveryStatus(id, 'u1', 'DELIVERED', 3, [ev('user:u1', 'w1', 'message.delivered')]), false);
      assert.equal(await store.setDeliveryStatus(id, 'nobody', 'READ', 3, [ev('user:nobody', 'w1', 'message.read')]), false);

      const t = await store.createThread('org/1', 'admin', 5, [{ userId: 'u1', role: 'visitor' }], (created) => [
        { ...ev('thread:x', 'w1', 'thread.created'), body: JSON.stringify({ thread: created.id, members: created.members.length }) },
      ]);
      const m = { threadId: t.id, uid: 'm1', type: 'TEXT', author: 'u1', body: '{}', createdAt: 6 };
      const first = await store.addThreadMessage(m, (r) => [{ ...ev('thread:x', 'w1', 'thread.message'), body: JSON.stringify({ seq: r.seq }) }]);
      const again = await store.addThreadMessage(m, () => [ev('thread:x', 'w1', 'thread.message')]);
      assert.equal(again.duplicate, true);
      assert.equal(await store.setThreadStatus(t.id, 'CLOSED', 7, [ev('thread:x', 'w1', 'thread.closed')]), true);
      assert.equal(await store.setThreadStatus(t.id, 'CLOSED', 8, [ev('thread:x', 'w1', 'thread.closed')]), false);
      await assert.rejects(store.createThread('org/1', 'admin', 9, [], () => [ev('thread:y', 'w1', 'thread.created')]));

      const rows = (await store.listWebhookEvents({ state: 'pending', limit: 20 })).reverse();
      assert.deepEqual(
        rows.map((r) => r.type),
        ['message.undelivered', 'message.delivered', 'thread.created', 'thread.message', 'thread.closed'],
        'one event per change that happened, in order',
      );
      assert.deepEqual(JSON.parse(rows[2]!.body), { thread: t.id, members: 1 });
      assert.deepEqual(JSON.parse(rows[3]!.body), { seq: first.record.seq });
    });
  });
}
