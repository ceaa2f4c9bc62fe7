/** The QueueStore contract (src/store/queues.ts). */
import assert from 'node:assert/strict';
import { describe, it, beforeEach, afterEach } from 'node:test';
import type { QueueStore } from '../../../src/store/store.js';
import type { Opened, StoreFactory } from './harness.js';

export function queueStoreSuite(factory: StoreFactory<QueueStore>): void {
  describe('queues', () => {
    let store: Opened<QueueStore>;
    beforeEach(async () => {
      store = await factory.open();
    });
    afterEach(async () => {
      await store.close();
    });

    it('keeps queue messages in order until dequeued, per queue, each claimed by one node', async () => {
      const body = Buffer.from([1, 0, 2, 255]);
      const a1 = await store.enqueue({ queue: 'jobs', body, contentType: 'application/octet-stream', headers: [['x', '1'], ['x', '2']], createdAt: 5 });
      const b1 = await store.enqueue({ queue: 'other', body: Buffer.from('b'), contentType: null, headers: [], createdAt: 6 });
      const a2 = await store.enqueue({ queue: 'jobs', body: Buffer.from('second'), contentType: null, headers: [], createdAt: 7 });
      const a3 = await store.enqueue({ queue: 'jobs', body: Buffer.from('mine'), contentType: null, headers: [], createdAt: 8 }, 'n1');
      const first = await store.claimQueue('jobs', 'n1', 1);
      assert.deepEqual(first.map((m) => m.id), [a1]);
      assert.deepEqual(first[0]!.body, body);
      assert.deepEqual(first[0]!.headers, [['x', '1'], ['x', '2']]);
      assert.equal(first[0]!.contentType, 'application/octet-stream');
      const second = await store.claimQueue('jobs', 'n2', 10);
      assert.deepEqual(second.map((m) => m.id), [a2], 'claimed and pre-claimed messages are not handed out again');
      assert.equal(second[0]!.contentType, null);
      assert.deepEqual(await store.claimQueue('jobs', 'n2', 10), []);
      assert.equal(second[0]!.redelivered, false);
      await store.releaseQueued([a2], true);
      const back = await store.claimQueue('jobs', 'n3', 10);
      assert.deepEqual(back.map((m) => m.id), [a2], 'a released message can be claimed again');
      assert.equal(back[0]!.redelivered, true, 'and says it was delivered before');
      await store.releaseQueued([a2], false);
      assert.equal((await store.claimQueue('jobs', 'n3', 10))[0]!.redelivered, true, 'once redelivered, always redelivered');
      assert.equal(await store.dequeue(a1), true);
      assert.equal(await store.dequeue(a1), false);
      assert.deepEqual(await store.releaseDeadClaims(['n1']), ['jobs'], 'n3 is gone: its claim is released');
      assert.deepEqual((await store.claimQueue('jobs', 'n1', 10)).map((m) => m.id), [a2]);
      assert.deepEqual(await store.releaseDeadClaims(['n1']), []);
      assert.deepEqual(await store.releaseDeadClaims([]), ['jobs']);
      const fromDead = await store.claimQueue('jobs', 'n4', 10);
      assert.deepEqual(fromDead.map((m) => m.id), [a2, a3]);
      assert.deepEqual(fromDead.map((m) => m.redelivered), [true, true], 'a dead owner may have delivered them: redelivered');
      assert.deepEqual((await store.claimQueue('other', 'n4', 10)).map((m) => m.id), [b1]);
      assert.equal(await store.dequeue('garbage'), false);
      await store.releaseQueued(['garbage'], false);
    });

    it('never hands one queue message to two concurrent claims', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 60; i++) ids.push(await store.enqueue({ queue: 'race', body: Buffer.from(String(i)), contentType: null, headers: [], createdAt: i }));
      const claims = await Promise.all(Array.from({ length: 12 }, (_, i) => store.claimQueue('race', `n${i % 3}`, 7)));
      const got = claims.flat().map((m) => m.id);
      assert.equal(new Set(got).size, got.length, 'no message claimed twice');
      const rest = await store.claimQueue('race', 'late', 100);
      assert.deepEqual([...got, ...rest.map((m) => m.id)].sort(), [...ids].sort(), 'every message claimed exactly once');
    });
  });
}
