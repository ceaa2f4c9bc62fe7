/** The MessageStore contract (src/store/messages.ts). */
import assert from 'node:assert/strict';
import { describe, it, beforeEach, afterEach } from 'node:test';
import type { MessageStore, NewWebhookEvent, WebhookStore } from '../../../src/store/store.js';
import type { Opened, StoreFactory } from './harness.js';

export function messageStoreSuite(factory: StoreFactory<MessageStore & WebhookStore>): void {
  describe('messages', () => {
    let store: Opened<MessageStore & WebhookStore>;
    beforeEach(async () => {
      store = await factory.open();
    });
    afterEach(async () => {
      await store.close();
    });

    it('stores a message with one PENDING row per receiver and lists pending oldest first', async () => {
      const id1 = await store.insertMessage({
        sender: 's',
        title: 'first',
        content: '{"x":1}',
        type: '0',
        createdAt: 100,
        receivers: ['u1', 'u2'],
      });
      const id2 = await store.insertMessage({ sender: 's', title: 'second', content: 'c', type: '0', createdAt: 200, receivers: ['u1'] });
      const m = await store.getMessage(id1);
      assert.equal(m?.title, 'first');
      assert.equal(m?.content, '{"x":1}');
      assert.deepEqual(
        m?.receivers.map((r) => [r.receiver, r.status]),
        [
          ['u1', 'PENDING'],
          ['u2', 'PENDING'],
        ],
      );
      assert.deepEqual(
        (await store.pendingFor('u1', 100)).map((p) => p.id),
        [id1, id2],
      );
      assert.deepEqual(
        (await store.pendingFor('u1', 1)).map((p) => p.id),
        [id1],
      );
      assert.deepEqual(await store.pendingFor('nobody', 10), []);
    });

    it('moves delivery status forward only', async () => {
      const id = await store.insertMessage({ sender: 's', title: 't', content: 'c', type: '0', createdAt: 1, receivers: ['u1'] });
      assert.equal(await store.setDeliveryStatus(id, 'u1', 'DELIVERED', 5), true);
      assert.equal(await store.setDeliveryStatus(id, 'u1', 'DELIVERED', 6), false);
      assert.equal(await store.setDeliveryStatus(id, 'u1', 'PENDING', 7), false);
      assert.deepEqual(await store.pendingFor('u1', 10), []);
      assert.equal(await store.setDeliveryStatus(id, 'u1', 'READ', 8), true);
      assert.equal(await store.setDeliveryStatus(id, 'u1', 'DELIVERED', 9), false);
      const r = (await store.getMessage(id))!.receivers[0]!;
      assert.equal(r.status, 'READ');
      assert.equal(r.updatedAt, 8);
      assert.equal(await store.setDeliveryStatus(id, 'u2', 'READ', 8), false);
      assert.equal(await store.setDeliveryStatus('999999', 'u1', 'READ', 8), false);
      // PENDING straight to READ is allowed (a read implies delivery)
      const id2 = await store.insertMessage({ sender: 's', title: 't', content: 'c', type: '0', createdAt: 1, receivers: ['u1'] });
      assert.equal(await store.setDeliveryStatus(id2, 'u1', 'READ', 8), true);
    });

    it('pages messages newest first with filters and a total', async () => {
      for (let i = 1; i <= 7; i++) {
        await store.insertMessage({
          sender: i % 2 ? 'odd' : 'even',
          title: 't' + i,
          content: 'c',
          type: i <= 3 ? 'A' : 'B',
          createdAt: i * 100,
          receivers: ['u1', 'u' + i],
        });
      }
      const p1 = await store.queryMessages({ page: 1, size: 3 });
      assert.equal(p1.total, 7);
      assert.deepEqual(
        p1.items.map((m) => m.title),
        ['t7', 't6', 't5'],
      );
      const p3 = await store.queryMessages({ page: 3, size: 3 });
      assert.deepEqual(
        p3.items.map((m) => m.title),
        ['t1'],
      );
      assert.equal((await store.queryMessages({ page: 9, size: 3 })).items.length, 0);
      assert.equal((await store.queryMessages({ page: 1, size: 10, sender: 'odd' })).total, 4);
      assert.equal((await store.queryMessages({ page: 1, size: 10, type: 'A' })).total, 3);
      assert.equal((await store.queryMessages({ page: 1, size: 10, from: 200, to: 400 })).total, 3);
      assert.equal((await store.queryMessages({ page: 1, size: 10, receiver: 'u3' })).total, 1);
      const first = p1.items[0]!;
      await store.setDeliveryStatus(first.id, 'u7', 'DELIVERED', 1);
      const delivered = await store.queryMessages({ page: 1, size: 10, status: 'DELIVERED' });
      assert.deepEqual(
        delivered.items.map((m) => m.title),
        ['t7'],
      );
      // status and receiver apply to the same delivery row
      assert.equal((await store.queryMessages({ page: 1, size: 10, status: 'DELIVERED', receiver: 'u1' })).total, 0);
      assert.equal((await store.queryMessages({ page: 1, size: 10, status: 'PENDING', receiver: 'u1' })).total, 7);
    });

    it('deletes a message with its delivery rows', async () => {
      const id = await store.insertMessage({ sender: 's', title: 't', content: 'c', type: '0', createdAt: 1, receivers: ['u1'] });
      assert.equal(await store.deleteMessage(id), true);
      assert.equal(await store.deleteMessage(id), false);
      assert.equal(await store.getMessage(id), null);
      assert.deepEqual(await store.pendingFor('u1', 10), []);
      assert.equal(await store.deleteMessage('nope'), false);
    });

    it('keeps UTF-8 and large contents intact', async () => {
      const content = '消息 ✓ ' + 'x'.repeat(200_000);
      const id = await store.insertMessage({ sender: '用户', title: '标题', content, type: '0', createdAt: 1, receivers: ['接收者'] });
      const m = await store.getMessage(id);
      assert.equal(m?.content, content);
      assert.equal(m?.sender, '用户');
      assert.equal((await store.pendingFor('接收者', 1))[0]?.title, '标题');
    });

    // Sends that arrive together are written together (group commit): each still gets its own id, rows and events.
    it('stores sends made at once each with its own id, delivery rows and events', async () => {
      const event = (id: string, i: number): NewWebhookEvent[] =>
        i % 3 === 0 ? [{ eventId: `e${i}`, webhook: 'w', type: 'message.undelivered', orderKey: `user:r${i}`, body: JSON.stringify({ id, i }), createdAt: i }] : [];
      const ids = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          store.insertMessage(
            { sender: 's', title: `t${i}`, content: `c${i}`, type: String(i), createdAt: 1000 + i, receivers: i % 2 ? [`r${i}`, 'all'] : [`r${i}`] },
            (id) => event(id, i),
          ),
        ),
      );
      assert.equal(new Set(ids).size, 40, 'distinct ids');
      for (const [i, id] of ids.entries()) {
        const m = await store.getMessage(id);
        assert.equal(m?.title, `t${i}`);
        assert.equal(m?.content, `c${i}`);
        assert.equal(m?.createdAt, 1000 + i);
        assert.deepEqual(m?.receivers.map((r) => r.receiver).sort(), (i % 2 ? [`r${i}`, 'all'] : [`r${i}`]).sort());
      }
      assert.deepEqual((await store.pendingFor('all', 100)).map((m) => m.title), ids.flatMap((_, i) => (i % 2 ? [`t${i}`] : [])), 'oldest first, in the order sent');
      const events = await store.claimWebhookEvents('n', ['w'], 1_000_000, 100);
      assert.deepEqual(
        events.map((e) => JSON.parse(e.body) as { id: string; i: number }).sort((a, b) => a.i - b.i),
        ids.flatMap((id, i) => (i % 3 === 0 ? [{ id, i }] : [])),
        "each event names its own message's id",
      );
    });

    it('prunes messages by age and by count per receiver, in bounded steps', async () => {
      const ids: string[] = [];
      for (let i = 1; i <= 6; i++) {
        ids.push(await store.insertMessage({ sender: 's', title: 't' + i, content: 'c', type: '0', createdAt: i * 100, receivers: i === 6 ? ['u1', 'u2'] : ['u1'] }));
      }
      // by age: messages 1 and 2 are older than 250
      assert.equal(await store.pruneMessages(250, 1000, 1), 1, 'one step removes at most `batch`');
      assert.equal(await store.pruneMessages(250, 1000, 10), 1);
      assert.equal(await store.pruneMessages(250, 1000, 10), 0);
      assert.equal(await store.getMessage(ids[0]!), null);
      // by count: u1 keeps its newest 2 rows (5 and 6); message 6 stays for u2 too
      while ((await store.pruneMessages(0, 2, 1)) > 0);
      assert.deepEqual((await store.pendingFor('u1', 10)).map((m) => m.title), ['t5', 't6']);
      assert.equal(await store.getMessage(ids[2]!), null, 'a message with no rows left is gone');
      assert.deepEqual((await store.pendingFor('u2', 10)).map((m) => m.title), ['t6']);
    });
  });
}
