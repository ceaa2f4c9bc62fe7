/** The AuditStore contract (src/store/audit.ts). */
import assert from 'node:assert/strict';
import { describe, it, beforeEach, afterEach } from 'node:test';
import type { AuditStore, NewAuditEntry } from '../../../src/store/store.js';
import type { Opened, StoreFactory } from './harness.js';

export function auditStoreSuite(factory: StoreFactory<AuditStore>): void {
  describe('audit log', () => {
    let store: Opened<AuditStore>;
    beforeEach(async () => {
      store = await factory.open();
    });
    afterEach(async () => {
      await store.close();
    });
    const entry = (at: number, action: string, actorName = 'admin'): NewAuditEntry => ({
      at,
      actorId: '1',
      actorName,
      action,
      target: `target ${at}`,
      detail: JSON.stringify({ n: at }),
      address: '127.0.0.1',
      node: 'n1',
    });

    it('keeps entries as written and gives them newest first, a page at a time', async () => {
      await store.insertAudit(entry(10, 'user.create'));
      await store.insertAudit(entry(20, 'user.update', 'ops'));
      await store.insertAudit(entry(30, 'app.create'));
      const page = await store.queryAudit({ page: 1, size: 2 });
      assert.equal(page.total, 3);
      assert.deepEqual(page.items.map((e) => e.at), [30, 20]);
      const { id, ...rest } = page.items[1]!;
      assert.equal(typeof id, 'string');
      assert.deepEqual(rest, entry(20, 'user.update', 'ops'));
      assert.deepEqual((await store.queryAudit({ page: 2, size: 2 })).items.map((e) => e.at), [10]);
    });

    it('filters by action (a whole action or its area) and by actor', async () => {
      await store.insertAudit(entry(1, 'user.create'));
      await store.insertAudit(entry(2, 'user.delete', 'ops'));
      await store.insertAudit(entry(3, 'users.odd'));
      await store.insertAudit(entry(4, 'app.rotate', 'ops'));
      assert.deepEqual((await store.queryAudit({ page: 1, size: 10, action: 'user' })).items.map((e) => e.at), [2, 1], 'user.* but not users.*');
      assert.deepEqual((await store.queryAudit({ page: 1, size: 10, action: 'user.delete' })).items.map((e) => e.at), [2]);
      const byOps = await store.queryAudit({ page: 1, size: 10, actor: 'ops' });
      assert.deepEqual([byOps.total, byOps.items.map((e) => e.at)], [2, [4, 2]]);
      assert.equal((await store.queryAudit({ page: 1, size: 10, actor: 'ops', action: 'app' })).total, 1);
    });

    it('prunes entries past their age and beyond the newest maxRows, a bounded batch at a time', async () => {
      for (let i = 1; i <= 10; i++) await store.insertAudit(entry(i * 100, 'user.update'));
      // Older than 350: 100, 200, 300; at most 2 per step.
      assert.equal(await store.pruneAudit(350, 1000, 2), 2);
      assert.equal(await store.pruneAudit(350, 1000, 2), 1);
      assert.equal(await store.pruneAudit(350, 1000, 2), 0);
      // Keep the newest 4 of the 7 left.
      assert.equal(await store.pruneAudit(0, 4, 100), 3);
      assert.equal(await store.pruneAudit(0, 4, 100), 0);
      assert.deepEqual((await store.queryAudit({ page: 1, size: 100 })).items.map((e) => e.at), [1000, 900, 800, 700]);
    });
  });
}
