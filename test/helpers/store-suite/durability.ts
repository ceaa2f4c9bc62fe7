/** What a Store keeps across close and reopen, spanning users, tokens and messages. */
import assert from 'node:assert/strict';
import { describe, it, beforeEach, afterEach } from 'node:test';
import type { Store } from '../../../src/store/store.js';
import type { Opened, StoreFactory } from './harness.js';

export function durabilitySuite(factory: StoreFactory & { reopen(): Promise<Opened<Store>> }): void {
  describe('durability', () => {
    let store: Opened<Store>;
    beforeEach(async () => {
      store = await factory.open();
    });
    afterEach(async () => {
      await store.close();
    });
    const user = (n: string, role: 'user' | 'admin' | 'service' = 'user') =>
      store.createUser({ name: n, role, passwordHash: 'h-' + n, createdAt: 1000 });

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
  });
}
