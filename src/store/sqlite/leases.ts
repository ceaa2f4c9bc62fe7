/**
 * LeaseStore on SQLite (contract: ../leases.ts): a single node's store, so
 * one incarnation at a time; kept for the contract and for restarts under
 * the same name.
 */
import type Database from 'better-sqlite3';
import { ownerEpoch, type LeaseStore } from '../leases.js';

export function sqliteLeases(db: Database.Database): LeaseStore {
  const stmt = {
    begin: db.prepare<[string, number, number], { epoch: number }>('INSERT INTO cluster_nodes (node, started_at, lease_until) VALUES (?, ?, ?) RETURNING epoch'),
    fenceOthers: db.prepare<[string, number, number]>('UPDATE cluster_nodes SET fenced = 1 WHERE (node = ? OR ?) AND epoch <> ? AND fenced = 0'),
    end: db.prepare<[number]>('UPDATE cluster_nodes SET fenced = 1 WHERE epoch = ?'),
    forget: db.prepare<[number]>('DELETE FROM cluster_nodes WHERE fenced = 1 AND lease_until < ?'),
    renew: db.prepare<[number, number]>('UPDATE cluster_nodes SET lease_until = ? WHERE epoch = ? AND fenced = 0'),
    fence: db.prepare<[number], { node: string; epoch: number }>('UPDATE cluster_nodes SET fenced = 1 WHERE fenced = 0 AND lease_until < ? RETURNING node, epoch'),
    live: db.prepare<[], { node: string; epoch: number }>('SELECT node, epoch FROM cluster_nodes WHERE fenced = 0 ORDER BY epoch'),
  };
  const owner = (r: { node: string; epoch: number }): string => `${r.node}#${r.epoch}`;
  return {
    async beginIncarnation(node, leaseMs, alone = false) {
      return db.transaction(() => {
        const now = Date.now();
        const { epoch } = stmt.begin.get(node, now, now + leaseMs)!;
        stmt.fenceOthers.run(node, alone ? 1 : 0, epoch);
        stmt.forget.run(now - 7 * 24 * 3600 * 1000);
        return owner({ node, epoch });
      })();
    },

    async renewLease(id, leaseMs) {
      const epoch = ownerEpoch(id);
      if (epoch === undefined) return false;
      return stmt.renew.run(Date.now() + leaseMs, epoch).changes > 0;
    },

    async endIncarnation(id) {
      const epoch = ownerEpoch(id);
      if (epoch !== undefined) stmt.end.run(epoch);
    },

    async fenceExpired() {
      return stmt.fence.all(Date.now()).map(owner);
    },

    async liveOwners() {
      return stmt.live.all().map(owner);
    },
  };
}
