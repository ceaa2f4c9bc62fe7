/**
 * The Store contract, as one suite every implementation runs unchanged
 * (SQLite now; PostgreSQL in cluster mode).
 */
import assert from 'node:assert/strict';
import { describe, it, beforeEach, afterEach } from 'node:test';
import { DuplicateError, type Store } from '../../src/store/store.js';

export interface StoreFactory {
  /** A fresh, empty store. */
  open(): Promise<Store>;
  /** Reopens the same database after `close` (durability). Optional. */
  reopen?(): Promise<Store>;
}

export function storeSuite(name: string, factory: StoreFactory, skip: string | false = false): void {
  describe(`Store contract: ${name}`, { skip }, () => {
    let store: Store;
    beforeEach(async () => {
      store = await factory.open();
    });
    afterEach(async () => {
      await store.close();
    });

    const user = (n: string, role: 'user' | 'admin' | 'service' = 'user') =>
      store.createUser({ name: n, role, passwordHash: 'h-' + n, createdAt: 1000 });

    it('creates, finds, lists and counts users', async () => {
      assert.equal(await store.countUsers(), 0);
      const a = await user('alice');
      const b = await user('bob', 'service');
      assert.equal(typeof a.id, 'string');
      assert.notEqual(a.id, b.id);
      assert.deepEqual(await store.getUserById(a.id), a);
      assert.deepEqual(await store.getUserByName('bob'), b);
      assert.equal(await store.getUserByName('carol'), null);
      assert.equal(await store.getUserById('999999'), null);
      assert.equal(await store.getUserById('not-a-number'), null);
      assert.deepEqual(
        (await store.listUsers()).map((u) => u.name),
        ['alice', 'bob'],
      );
      assert.equal(await store.countUsers(), 2);
      assert.equal(a.disabled, false);
      assert.equal(b.role, 'service');
    });

    it('refuses a second user with the same name', async () => {
      await user('alice');
      await assert.rejects(user('alice'), DuplicateError);
    });

    it('updates role, password, disabled and the token revocation mark', async () => {
      const a = await user('alice');
      assert.equal(a.tokensValidAfter, 0, 'never revoked');
      const u = await store.updateUser(a.id, { role: 'admin', disabled: true, passwordHash: 'new' });
      assert.equal(u?.role, 'admin');
      assert.equal(u?.disabled, true);
      assert.equal(u?.passwordHash, 'new');
      assert.equal((await store.updateUser(a.id, { tokensValidAfter: 1_790_000_000_123 }))?.tokensValidAfter, 1_790_000_000_123);
      assert.equal((await store.getUserByName('alice'))?.tokensValidAfter, 1_790_000_000_123);
      assert.equal(await store.updateUser('424242', { disabled: true }), null);
    });

    it('stores tokens, touches only forward, deletes them one by one and per user', async () => {
      const a = await user('alice');
      const base = { userId: a.id, createdAt: 10, lastUsedAt: 10, expiresAt: null, idleExpiry: true };
      await store.insertToken({ ...base, hash: 't1' });
      await store.insertToken({ ...base, hash: 't2' });
      await store.insertToken({ ...base, hash: 't3', userId: 'other' });
      assert.deepEqual(await store.getToken('t1'), { ...base, hash: 't1' });
      await store.touchToken('t1', 50);
      await store.touchToken('t1', 40); // older: ignored
      assert.equal((await store.getToken('t1'))?.lastUsedAt, 50);
      assert.equal(await store.deleteToken('t1'), true);
      assert.equal(await store.deleteToken('t1'), false);
      assert.equal(await store.getToken('t1'), null);
      assert.deepEqual(await store.deleteTokensOfUser(a.id), ['t2']);
      assert.equal(await store.getToken('t2'), null);
      assert.notEqual(await store.getToken('t3'), null);
    });

    it('purges idle-dead and expired tokens but keeps live and non-idle ones', async () => {
      const t = { userId: '1', createdAt: 0, expiresAt: null as number | null };
      await store.insertToken({ ...t, hash: 'idle-dead', lastUsedAt: 100, idleExpiry: true });
      await store.insertToken({ ...t, hash: 'idle-live', lastUsedAt: 900, idleExpiry: true });
      await store.insertToken({ ...t, hash: 'script', lastUsedAt: 100, idleExpiry: false });
      await store.insertToken({ ...t, hash: 'expired', lastUsedAt: 900, idleExpiry: false, expiresAt: 950 });
      assert.equal(await store.deleteDeadTokens(500, 1000), 2);
      assert.equal(await store.getToken('idle-dead'), null);
      assert.equal(await store.getToken('expired'), null);
      assert.notEqual(await store.getToken('idle-live'), null);
      assert.notEqual(await store.getToken('script'), null);
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
      assert.deepEqual((await store.claimQueue('jobs', 'n4', 10)).map((m) => m.id), [a2, a3]);
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

    if (factory.reopen) {
      const reopen = factory.reopen;
      it('keeps everything across close and reopen', async () => {
        const a = await user('alice');
        const id = await store.insertMessage({ sender: 's', title: 't', content: 'c', type: '0', createdAt: 1, receivers: [a.id] });
        await store.insertToken({ hash: 'h', userId: a.id, createdAt: 1, lastUsedAt: 1, expiresAt: null, idleExpiry: true });
        await store.close();
        store = await reopen();
        assert.equal((await store.getUserByName('alice'))?.id, a.id);
        assert.equal((await store.pendingFor(a.id, 10))[0]?.id, id);
        assert.equal((await store.getToken('h'))?.userId, a.id);
      });
    }
  });
}
