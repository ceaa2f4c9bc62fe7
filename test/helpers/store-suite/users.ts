/** The UserStore and TokenStore contract (src/store/users.ts). */
import assert from 'node:assert/strict';
import { describe, it, beforeEach, afterEach } from 'node:test';
import { DuplicateError, type TokenStore, type UserStore } from '../../../src/store/store.js';
import type { Opened, StoreFactory } from './harness.js';

export function userStoreSuite(factory: StoreFactory<UserStore & TokenStore>): void {
  describe('users and tokens', () => {
    let store: Opened<UserStore & TokenStore>;
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

    it('pages through users in creation order, and finds them by part of the name ignoring case', async () => {
      for (const n of ['alice', 'Bob', 'carol', 'dave_x', 'eve%', 'malice']) await user(n);
      const first = await store.queryUsers({ page: 1, size: 4 });
      assert.equal(first.total, 6);
      assert.deepEqual(first.items.map((u) => u.name), ['alice', 'Bob', 'carol', 'dave_x']);
      assert.deepEqual((await store.queryUsers({ page: 2, size: 4 })).items.map((u) => u.name), ['eve%', 'malice']);
      assert.deepEqual((await store.queryUsers({ page: 3, size: 4 })).items, []);
      const lice = await store.queryUsers({ page: 1, size: 10, search: 'LICE' });
      assert.deepEqual([lice.total, lice.items.map((u) => u.name)], [2, ['alice', 'malice']]);
      assert.deepEqual((await store.queryUsers({ page: 1, size: 10, search: 'b' })).items.map((u) => u.name), ['Bob']);
      // Wildcards of LIKE are plain characters.
      assert.deepEqual((await store.queryUsers({ page: 1, size: 10, search: '_' })).items.map((u) => u.name), ['dave_x']);
      assert.deepEqual((await store.queryUsers({ page: 1, size: 10, search: '%' })).items.map((u) => u.name), ['eve%']);
      assert.equal((await store.queryUsers({ page: 1, size: 10, search: 'zed' })).total, 0);
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

    it('deletes a user with its tokens, and never gives its id to a later user of the same name', async () => {
      const a = await user('alice');
      const b = await user('bob');
      const base = { createdAt: 10, lastUsedAt: 10, expiresAt: null, idleExpiry: true };
      await store.insertToken({ ...base, hash: 'ta', userId: a.id });
      await store.insertToken({ ...base, hash: 'tb', userId: b.id });
      assert.equal(await store.deleteUser(a.id), true);
      assert.equal(await store.deleteUser(a.id), false);
      assert.equal(await store.deleteUser('not-a-number'), false);
      assert.equal(await store.getUserById(a.id), null);
      assert.equal(await store.getUserByName('alice'), null);
      assert.equal(await store.getToken('ta'), null, 'its tokens went with it');
      assert.notEqual(await store.getToken('tb'), null, 'other users keep theirs');
      assert.deepEqual((await store.listUsers()).map((u) => u.name), ['bob']);
      const again = await user('alice');
      assert.notEqual(again.id, a.id);
      assert.ok(Number(again.id) > Number(b.id), 'ids are not reused');
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
  });
}
