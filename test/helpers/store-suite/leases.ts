/** The LeaseStore contract (src/store/leases.ts). */
import assert from 'node:assert/strict';
import { describe, it, beforeEach, afterEach } from 'node:test';
import { ownerNode, type LeaseStore, type MqttSessionStore, type QueueStore } from '../../../src/store/store.js';
import type { Opened, StoreFactory } from './harness.js';

export function leaseStoreSuite(factory: StoreFactory<LeaseStore & QueueStore & MqttSessionStore>): void {
  describe('leases', () => {
    let store: Opened<LeaseStore & QueueStore & MqttSessionStore>;
    beforeEach(async () => {
      store = await factory.open();
    });
    afterEach(async () => {
      await store.close();
    });

    it('gives each incarnation its own owner id, and a restart fences the earlier one of the same name', async () => {
      const a1 = await store.beginIncarnation('a', 60_000);
      const b1 = await store.beginIncarnation('b', 60_000);
      assert.match(a1, /^a#\d+$/);
      assert.equal(ownerNode(a1), 'a');
      assert.equal(ownerNode('legacy'), 'legacy');
      assert.deepEqual((await store.liveOwners()).sort(), [a1, b1].sort());
      const a2 = await store.beginIncarnation('a', 60_000);
      assert.notEqual(a2, a1);
      assert.deepEqual((await store.liveOwners()).sort(), [a2, b1].sort(), 'the old incarnation of a is fenced');
      assert.equal(await store.renewLease(a1, 60_000), false, 'a fenced incarnation cannot renew');
      assert.equal(await store.renewLease(a2, 60_000), true);
      assert.equal(await store.renewLease('garbage', 60_000), false);
      await store.endIncarnation(b1);
      assert.deepEqual(await store.liveOwners(), [a2], 'a clean stop fences at once');
      const alone = await store.beginIncarnation('solo', 60_000, true);
      assert.deepEqual(await store.liveOwners(), [alone], 'a single node fences every other incarnation');
    });

    it('fences only owners whose lease ran out, and a fenced owner stays fenced', async () => {
      const short = await store.beginIncarnation('short', 1);
      const long = await store.beginIncarnation('long', 60_000);
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(await store.fenceExpired(), [short]);
      assert.deepEqual(await store.fenceExpired(), []);
      assert.deepEqual(await store.liveOwners(), [long]);
      assert.equal(await store.renewLease(short, 60_000), false, 'too late: its work is gone');
      // A lease that lapsed but was renewed before anyone fenced it is still good.
      const lapsed = await store.beginIncarnation('lapsed', 1);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(await store.renewLease(lapsed, 60_000), true);
      assert.deepEqual(await store.fenceExpired(), []);
    });

    it('frees the claims and sessions of fenced incarnations only, whatever list the caller has', async () => {
      const old = await store.beginIncarnation('x', 60_000);
      const other = await store.beginIncarnation('y', 60_000);
      await store.enqueue({ queue: 'q', body: Buffer.from('1'), contentType: null, headers: [] , createdAt: 1 }, old);
      await store.enqueue({ queue: 'q', body: Buffer.from('2'), contentType: null, headers: [], createdAt: 2 }, other);
      const session = { owner: '{}', expirySeconds: 60, disconnectedAt: 1, subscriptions: [], qos2In: [] };
      await store.saveMqttSession({ ...session, clientId: 'held-by-old', node: old });
      await store.saveMqttSession({ ...session, clientId: 'held-by-other', node: other });
      // Nothing is fenced yet: a caller that does not know these incarnations takes nothing.
      assert.deepEqual(await store.releaseDeadClaims([]), []);
      assert.deepEqual(await store.adoptMqttSessions('z#0', []), []);
      const again = await store.beginIncarnation('x', 60_000);
      assert.deepEqual(await store.releaseDeadClaims([again]), ['q'], 'the old incarnation of x is fenced: its claim is free');
      const free = await store.claimQueue('q', again, 10);
      assert.deepEqual(free.map((m) => [m.body.toString(), m.redelivered]), [['1', true]]);
      assert.deepEqual((await store.adoptMqttSessions(again, [again])).map((r) => r.clientId), ['held-by-old']);
    });
  });
}
