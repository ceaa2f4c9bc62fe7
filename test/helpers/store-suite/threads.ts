/** The ThreadStore contract (src/store/threads.ts). */
import assert from 'node:assert/strict';
import { describe, it, beforeEach, afterEach } from 'node:test';
import { DuplicateError, type ThreadStore } from '../../../src/store/store.js';
import type { Opened, StoreFactory } from './harness.js';

export function threadStoreSuite(factory: StoreFactory<ThreadStore>): void {
  describe('threads', () => {
    let store: Opened<ThreadStore>;
    beforeEach(async () => {
      store = await factory.open();
    });
    afterEach(async () => {
      await store.close();
    });

    it('creates threads with members, refuses a duplicate topic, lists a member\'s threads with unread counts', async () => {
      const t = await store.createThread('org/1/visitor/7', 'svc', 100, [
        { userId: 'v7', role: 'visitor' },
        { userId: 'a1', role: 'agent' },
      ]);
      assert.equal(t.status, 'OPEN');
      assert.deepEqual(t.members.map((m) => m.userId), ['a1', 'v7']);
      await assert.rejects(store.createThread('org/1/visitor/7', 'svc', 101, []), DuplicateError);
      assert.deepEqual(await store.getThread('org/1/visitor/7'), t);
      assert.equal(await store.getThread('nope'), null);
      await store.createThread('org/1/visitor/8', 'svc', 100, [{ userId: 'a1', role: 'agent' }]);
      const m1 = await store.addThreadMessage({ threadId: t.id, uid: 'u1', type: 'TEXT', author: 'v7', body: '{"x":1}', createdAt: 200 });
      await store.addThreadMessage({ threadId: t.id, uid: 'u2', type: 'TEXT', author: 'v7', body: '{"x":2}', createdAt: 210 });
      await store.addThreadMessage({ threadId: t.id, uid: 'u3', type: 'TEXT', author: 'a1', body: '{"x":3}', createdAt: 220 });
      const forA1 = await store.listThreads({ member: 'a1', limit: 10 });
      assert.deepEqual(forA1.map((x) => x.thread.topic), ['org/1/visitor/7', 'org/1/visitor/8'], 'most recent activity first');
      assert.equal(forA1[0]!.lastMessage?.uid, 'u3');
      assert.equal(forA1[0]!.unread, 2, 'two messages by v7, none read by a1');
      const last = forA1[0]!.lastMessage!;
      assert.deepEqual(last, { seq: last.seq, threadId: t.id, uid: 'u3', type: 'TEXT', author: 'a1', body: '{"x":3}', createdAt: 220, recalled: false });
      assert.equal(forA1[1]!.lastMessage, null, 'a thread with no messages yet');
      assert.deepEqual(forA1[1]!.thread.members, [{ userId: 'a1', role: 'agent' }]);
      const everyone = await store.listThreads({ limit: 10 });
      assert.deepEqual(everyone.map((x) => [x.thread.topic, x.unread]), [['org/1/visitor/7', 0], ['org/1/visitor/8', 0]], 'no member, no unread count');
      assert.deepEqual(await store.listThreads({ status: 'CLOSED', limit: 10 }), []);
      assert.equal((await store.listThreads({ member: 'a1', limit: 1 })).length, 1);
      assert.equal(await store.setThreadReceipt(t.id, 'u1', 'a1', 'READ', 300), true);
      assert.equal((await store.listThreads({ member: 'a1', limit: 10 }))[0]!.unread, 1);
      assert.deepEqual((await store.listThreads({ member: 'v7', limit: 10 })).map((x) => x.thread.topic), ['org/1/visitor/7']);
      await store.addThreadMember(t.id, { userId: 'a2', role: 'agent' });
      await store.addThreadMember(t.id, { userId: 'v7', role: 'agent' });
      assert.deepEqual((await store.getThread('org/1/visitor/7'))!.members, [
        { userId: 'a1', role: 'agent' },
        { userId: 'a2', role: 'agent' },
        { userId: 'v7', role: 'agent' },
      ]);
      assert.equal(m1.duplicate, false);
    });

    it('stores thread messages once per uid, in seq order, with recall and receipts', async () => {
      const t = await store.createThread('th', 'svc', 1, []);
      const a = await store.addThreadMessage({ threadId: t.id, uid: 'a', type: 'TEXT', author: 'x', body: '{}', createdAt: 10 });
      const again = await store.addThreadMessage({ threadId: t.id, uid: 'a', type: 'TEXT', author: 'x', body: '{"other":1}', createdAt: 11 });
      assert.equal(again.duplicate, true);
      assert.equal(again.record.seq, a.record.seq);
      assert.equal(again.record.body, '{}');
      const b = await store.addThreadMessage({ threadId: t.id, uid: 'b', type: 'TEXT', author: 'y', body: '{}', createdAt: 20 });
      const c = await store.addThreadMessage({ threadId: t.id, uid: 'c', type: 'TEXT', author: 'y', body: '{}', createdAt: 30 });
      assert.ok(Number(b.record.seq) > Number(a.record.seq));
      assert.deepEqual((await store.threadHistory(t.id, { afterSeq: a.record.seq, limit: 10 })).map((m) => m.uid), ['b', 'c']);
      assert.deepEqual((await store.threadHistory(t.id, { beforeSeq: c.record.seq, limit: 1 })).map((m) => m.uid), ['b']);
      assert.deepEqual((await store.threadHistory(t.id, { limit: 2 })).map((m) => m.uid), ['b', 'c'], 'newest page, oldest first');
      assert.deepEqual((await store.threadHistory(t.id, { sinceTime: 15, limit: 10 })).map((m) => m.uid), ['b', 'c']);
      assert.equal(await store.markRecalled(t.id, 'b'), true);
      assert.equal(await store.markRecalled(t.id, 'b'), false);
      assert.equal((await store.getThreadMessage(t.id, 'b'))?.recalled, true);
      assert.equal(await store.getThreadMessage(t.id, 'zz'), null);
      assert.equal(await store.setThreadReceipt(t.id, 'a', 'y', 'DELIVERED', 40), true);
      assert.equal(await store.setThreadReceipt(t.id, 'a', 'y', 'DELIVERED', 41), false);
      assert.equal(await store.setThreadReceipt(t.id, 'a', 'y', 'READ', 42), true);
      assert.equal(await store.setThreadReceipt(t.id, 'a', 'y', 'DELIVERED', 43), false, 'never back');
      assert.deepEqual(await store.threadReceipts(t.id, 'a'), [{ userId: 'y', status: 'READ', updatedAt: 42 }]);
      assert.equal(await store.setThreadStatus(t.id, 'CLOSED', 50), true);
      assert.equal(await store.setThreadStatus(t.id, 'CLOSED', 51), false);
      assert.equal((await store.getThread('th'))?.closedAt, 50);
    });

    it('finds idle open threads', async () => {
      const old = await store.createThread('old', 's', 100, []);
      await store.createThread('fresh', 's', 900, []);
      const closed = await store.createThread('closed', 's', 100, []);
      await store.setThreadStatus(closed.id, 'CLOSED', 100);
      assert.deepEqual((await store.idleThreads(500, 10)).map((t) => t.id), [old.id]);
    });
  });
}
