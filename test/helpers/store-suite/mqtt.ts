/** The MqttStore contract: apps, retained messages, persistent sessions (src/store/mqtt.ts). */
import assert from 'node:assert/strict';
import { describe, it, beforeEach, afterEach } from 'node:test';
import { DuplicateError, type MqttStore } from '../../../src/store/store.js';
import type { Opened, StoreFactory } from './harness.js';

export function mqttStoreSuite(factory: StoreFactory<MqttStore>): void {
  describe('MQTT apps, retained messages and sessions', () => {
    let store: Opened<MqttStore>;
    beforeEach(async () => {
      store = await factory.open();
    });
    afterEach(async () => {
      await store.close();
    });

    it('stores apps and their tokens, and expires tokens', async () => {
      const app = { id: 'app1', name: 'Game', clientId: 'cid-1', secretHash: 'h', createdAt: 5 };
      await store.createApp(app);
      await assert.rejects(store.createApp({ ...app, id: 'app2' }), DuplicateError, 'client ids are unique');
      assert.deepEqual(await store.getApp('app1'), app);
      assert.deepEqual(await store.getAppByClientId('cid-1'), app);
      assert.equal(await store.getApp('nope'), null);
      assert.deepEqual((await store.listApps()).map((a) => a.id), ['app1']);
      await store.insertAppToken({ hash: 't1', kind: 'app', appId: 'app1', username: null, cid: null, expiresAt: 100 });
      await store.insertAppToken({ hash: 't2', kind: 'user', appId: 'app1', username: 'u', cid: 'u@app1', expiresAt: 200 });
      assert.deepEqual(await store.getAppToken('t2'), { hash: 't2', kind: 'user', appId: 'app1', username: 'u', cid: 'u@app1', expiresAt: 200 });
      assert.equal(await store.deleteExpiredAppTokens(150), 1);
      assert.equal(await store.getAppToken('t1'), null);
    });

    it("rotates an app's secret, ending its app tokens but not the user tokens it minted, and deletes an app with its tokens", async () => {
      await store.createApp({ id: 'a1', name: 'One', clientId: 'cid-a1', secretHash: 'old', createdAt: 1 });
      await store.createApp({ id: 'a2', name: 'Two', clientId: 'cid-a2', secretHash: 'two', createdAt: 2 });
      await store.insertAppToken({ hash: 'app-tok', kind: 'app', appId: 'a1', username: null, cid: null, expiresAt: 1e12 });
      await store.insertAppToken({ hash: 'user-tok', kind: 'user', appId: 'a1', username: 'u', cid: 'd@a1', expiresAt: 1e12 });
      await store.insertAppToken({ hash: 'other-app-tok', kind: 'app', appId: 'a2', username: null, cid: null, expiresAt: 1e12 });
      assert.equal(await store.rotateAppSecret('a1', 'new'), true);
      assert.equal((await store.getApp('a1'))?.secretHash, 'new');
      assert.equal(await store.getAppToken('app-tok'), null, 'app tokens got with the old secret are gone');
      assert.notEqual(await store.getAppToken('user-tok'), null, 'user tokens stay');
      assert.notEqual(await store.getAppToken('other-app-tok'), null, "another app's tokens stay");
      assert.equal(await store.rotateAppSecret('nope', 'x'), false);
      assert.equal(await store.deleteApp('a1'), true);
      assert.equal(await store.getApp('a1'), null);
      assert.equal(await store.getAppToken('user-tok'), null, 'its user tokens went with it');
      assert.notEqual(await store.getAppToken('other-app-tok'), null);
      assert.deepEqual((await store.listApps()).map((a) => a.id), ['a2']);
      assert.equal(await store.deleteApp('a1'), false, 'gone already');
      // Its client id is free again.
      await store.createApp({ id: 'a3', name: 'Three', clientId: 'cid-a1', secretHash: 'h', createdAt: 3 });
    });

    it('keeps one retained message per topic and clears it with an empty body', async () => {
      await store.setRetained({ topic: 'a/b', body: Buffer.from('1'), qos: 1, properties: '{}', updatedAt: 1 });
      await store.setRetained({ topic: 'a/b', body: Buffer.from('2'), qos: 0, properties: '{"contentType":"x"}', updatedAt: 2 });
      await store.setRetained({ topic: 'a/c', body: Buffer.from([0, 1]), qos: 2, properties: '{}', updatedAt: 3 });
      const all = await store.listRetained();
      assert.deepEqual(all.map((r) => [r.topic, r.body.toString('hex'), r.qos]), [['a/b', '32', 0], ['a/c', '0001', 2]]);
      await store.setRetained({ topic: 'a/b', body: Buffer.alloc(0), qos: 0, properties: '{}', updatedAt: 4 });
      assert.deepEqual((await store.listRetained()).map((r) => r.topic), ['a/c']);
    });

    it('keeps persistent MQTT sessions with subscriptions and queued messages, and deletes them together', async () => {
      const sub = { filter: 'a/#', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: null };
      await store.saveMqttSession({ clientId: 'c1', owner: '{"userId":"1"}', expirySeconds: 60, disconnectedAt: null, subscriptions: [sub], qos2In: [], node: 'n1' });
      await store.saveMqttSession({ clientId: 'c1', owner: '{"userId":"1"}', expirySeconds: 90, disconnectedAt: 5, subscriptions: [sub, { ...sub, filter: 'b' }], qos2In: [7, 9], node: 'n2' });
      const all = await store.listMqttSessions();
      assert.equal(all.length, 1);
      assert.deepEqual([all[0]!.expirySeconds, all[0]!.disconnectedAt, all[0]!.subscriptions.length, all[0]!.qos2In, all[0]!.node], [90, 5, 2, [7, 9], 'n2']);
      assert.deepEqual(await store.getMqttSession('c1'), all[0]);
      assert.equal(await store.getMqttSession('nope'), null);
      const q1 = await store.enqueueMqtt({ clientId: 'c1', topic: 'a/x', body: Buffer.from('1'), qos: 1, properties: '{}', createdAt: 6, packetId: null, released: false });
      const q2 = await store.enqueueMqtt({ clientId: 'c1', topic: 'a/y', body: Buffer.from('2'), qos: 2, properties: '{}', createdAt: 7, packetId: 3, released: false });
      await store.setMqttQueuedState(q2, 4, true);
      const queued = await store.loadMqttQueue('c1', 10);
      assert.deepEqual(queued.map((m) => [m.topic, m.packetId, m.released]), [['a/x', null, false], ['a/y', 4, true]]);
      await store.deleteMqttQueued(q1);
      assert.deepEqual((await store.loadMqttQueue('c1', 10)).map((m) => m.body.toString()), ['2']);
      await store.deleteMqttSession('c1');
      assert.deepEqual(await store.listMqttSessions(), []);
      assert.deepEqual(await store.loadMqttQueue('c1', 10), [], 'queued messages go with the session');
    });

    it('lets a node adopt the MQTT sessions of stopped or dead nodes, and only those', async () => {
      const rec = { owner: '{}', expirySeconds: 60, disconnectedAt: 1, subscriptions: [], qos2In: [] };
      await store.saveMqttSession({ ...rec, clientId: 'a', node: 'live' });
      await store.saveMqttSession({ ...rec, clientId: 'b', node: 'dead' });
      await store.saveMqttSession({ ...rec, clientId: 'c', node: null });
      const adopted = await store.adoptMqttSessions('me', ['live', 'me']);
      assert.deepEqual(adopted.map((r) => [r.clientId, r.node]), [['b', 'me'], ['c', 'me']]);
      assert.equal((await store.getMqttSession('a'))?.node, 'live');
      assert.deepEqual(await store.adoptMqttSessions('other', ['live', 'me', 'other']), [], 'nothing left to adopt');
    });

    it('writes many queued messages in one go, in order, skipping sessions that are gone; tells which sessions wait and which changed', async () => {
      const base = { owner: '{}', expirySeconds: 60, disconnectedAt: null, subscriptions: [], qos2In: [], node: 'n' };
      const { now: t0 } = await store.mqttSessionsChangedSince(0);
      await store.saveMqttSession({ ...base, clientId: 's1' });
      await store.saveMqttSession({ ...base, clientId: 's2' });
      const row = (clientId: string, body: string) => ({ clientId, topic: 't', body: Buffer.from(body), qos: 1, properties: '{}', createdAt: 1 });
      const kept = await store.enqueueMqttMany([row('s1', 'a'), row('gone', 'x'), row('s2', 'b'), row('s1', 'c'), row('s1', 'd')]);
      assert.equal(kept, 4, 'the row for a session that does not exist is skipped, the rest are kept');
      assert.deepEqual((await store.loadMqttQueue('s1', 10)).map((q) => [q.body.toString(), q.packetId, q.released]), [['a', null, false], ['c', null, false], ['d', null, false]]);
      assert.equal(await store.enqueueMqttMany([]), 0);
      assert.deepEqual((await store.mqttQueuesWaiting(['s1', 's2', 'gone'])).sort(), ['s1', 's2']);
      const [first] = await store.loadMqttQueue('s2', 10);
      await store.setMqttQueuedState(first!.id, 7, false);
      assert.deepEqual(await store.mqttQueuesWaiting(['s2']), [], 'a row sent already does not wait');
      assert.deepEqual(await store.mqttQueuesWaiting([]), []);
      const changed = await store.mqttSessionsChangedSince(t0);
      assert.deepEqual(changed.sessions.map((r) => r.clientId).sort(), ['s1', 's2']);
      assert.ok(changed.now >= t0);
      await new Promise((r) => setTimeout(r, 5));
      const { now: t1 } = await store.mqttSessionsChangedSince(changed.now);
      await new Promise((r) => setTimeout(r, 5));
      await store.saveMqttSession({ ...base, clientId: 's1', expirySeconds: 120, qos2In: [4] });
      assert.deepEqual((await store.mqttSessionsChangedSince(t1)).sessions, [], 'expiry and QoS 2 ids are no one else\'s business');
      const sub = { filter: 'a/#', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: null };
      await store.saveMqttSession({ ...base, clientId: 's2', subscriptions: [sub] });
      assert.deepEqual((await store.mqttSessionsChangedSince(t1)).sessions.map((r) => [r.clientId, r.subscriptions]), [['s2', [sub]]]);
    });
  });
}
