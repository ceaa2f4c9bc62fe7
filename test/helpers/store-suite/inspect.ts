/** The InspectStore contract (src/store/inspect.ts): what the console reads of the stored queues. */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { InspectStore, MessageStore, MqttSessionStore, QueueStore } from '../../../src/store/store.js';
import type { Opened, StoreFactory } from './harness.js';

type Needs = InspectStore & QueueStore & MqttSessionStore & MessageStore;

export function inspectStoreSuite(factory: StoreFactory<Needs>): void {
  describe('inspection (the console)', () => {
    let store: Opened<Needs>;
    beforeEach(async () => {
      store = await factory.open();
    });
    afterEach(async () => {
      await store.close();
    });

    it('sums up queues (messages, claimed, redelivered, oldest, bytes), most first, and pages through one without changing it', async () => {
      assert.deepEqual(await store.queueSummaries(10), []);
      const ids: string[] = [];
      for (let i = 1; i <= 3; i++) ids.push(await store.enqueue({ queue: 'jobs', body: Buffer.from('x'.repeat(i)), contentType: 'text/plain', headers: [['k', String(i)]], createdAt: 100 + i }));
      await store.enqueue({ queue: 'other', body: Buffer.from('zz'), contentType: null, headers: [], createdAt: 50 }, 'n1#1');
      const claimed = await store.claimQueue('jobs', 'n2#1', 1);
      await store.releaseQueued(claimed.map((m) => m.id), true);
      await store.claimQueue('jobs', 'n2#1', 1);
      const sums = await store.queueSummaries(10);
      assert.deepEqual(sums, [
        { queue: 'jobs', messages: 3, claimed: 1, redelivered: 1, oldestAt: 101, bytes: 6 },
        { queue: 'other', messages: 1, claimed: 1, redelivered: 0, oldestAt: 50, bytes: 2 },
      ]);
      assert.deepEqual((await store.queueSummaries(1)).map((q) => q.queue), ['jobs']);
      const page = await store.peekQueue('jobs', 2);
      assert.deepEqual(page.map((m) => [m.id, m.claimedBy, m.redelivered, m.body.toString(), m.headers]), [
        [ids[0], 'n2#1', true, 'x', [['k', '1']]],
        [ids[1], null, false, 'xx', [['k', '2']]],
      ]);
      assert.deepEqual((await store.peekQueue('jobs', 10, ids[1])).map((m) => m.id), [ids[2]]);
      assert.deepEqual(await store.peekQueue('nothing', 10), []);
      assert.deepEqual((await store.claimQueue('jobs', 'n3#1', 10)).map((m) => m.id), [ids[1], ids[2]], 'looking claimed nothing');
    });

    it('sums up persistent MQTT sessions\' stored messages and message-service mailboxes', async () => {
      const sub = { filter: 'a/#', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: null };
      for (const clientId of ['c1', 'c2']) await store.saveMqttSession({ clientId, owner: '{"userId":"1"}', expirySeconds: 60, disconnectedAt: 5, subscriptions: [sub], qos2In: [], node: null });
      const q = { topic: 'a/x', qos: 1, properties: '{}', packetId: null, released: false };
      await store.enqueueMqtt({ ...q, clientId: 'c1', body: Buffer.from('abc'), createdAt: 9 });
      const sent = await store.enqueueMqtt({ ...q, clientId: 'c2', body: Buffer.from('a'), createdAt: 7 });
      await store.enqueueMqtt({ ...q, clientId: 'c2', body: Buffer.from('bb'), createdAt: 8 });
      await store.setMqttQueuedState(sent, 3, false);
      assert.deepEqual(await store.mqttQueueSummaries(10), [
        { clientId: 'c2', messages: 2, sent: 1, oldestAt: 7, bytes: 3 },
        { clientId: 'c1', messages: 1, sent: 0, oldestAt: 9, bytes: 3 },
      ]);
      const m1 = await store.insertMessage({ sender: 's', title: 't', content: 'c', type: '0', createdAt: 20, receivers: ['u1', 'u2'] });
      await store.insertMessage({ sender: 's', title: 't', content: 'c', type: '0', createdAt: 30, receivers: ['u1'] });
      await store.setDeliveryStatus(m1, 'u2', 'DELIVERED', 31);
      assert.deepEqual(await store.pendingSummaries(10), [{ receiver: 'u1', pending: 2, oldestAt: 20 }]);
    });
  });
}
