/**
 * LeaseStore on PostgreSQL (contract: ../leases.ts). The lease clock is the
 * database's, so nodes' clocks need not agree; a renewal and a fence lock
 * the same row, so a node can never renew a lease another node has fenced.
 */
import { ownerEpoch, type LeaseStore } from '../leases.js';
import type { PgHandle } from './pool.js';

/** The database's clock, in Unix milliseconds. */
const NOW = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** Fenced incarnations are kept this long (for the record), then deleted. */
const KEEP_FENCED_MS = 7 * 24 * 3600 * 1000;

export function postgresLeases(pg: PgHandle): LeaseStore {
  const owner = (r: { node: string; epoch: string | number }): string => `${r.node}#${r.epoch}`;
  return {
    async beginIncarnation(node, leaseMs, alone = false) {
      return pg.tx(async (c) => {
        const r = (await c.query<{ epoch: string }>(`INSERT INTO cluster_nodes (node, started_at, lease_until) VALUES ($1, ${NOW}, ${NOW} + $2) RETURNING epoch`, [node, leaseMs])).rows[0]!;
        await c.query(`UPDATE cluster_nodes SET fenced = TRUE WHERE (node = $1 OR $3) AND epoch <> $2 AND NOT fenced`, [node, r.epoch, alone]);
        await c.query(`DELETE FROM cluster_nodes WHERE fenced AND lease_until < ${NOW} - $1`, [KEEP_FENCED_MS]);
        return owner({ node, epoch: r.epoch });
      });
    },

    async renewLease(id, leaseMs) {
      const epoch = ownerEpoch(id);
      if (epoch === undefined) return false;
      return (await pg.count(`UPDATE cluster_nodes SET lease_until = ${NOW} + $2 WHERE epoch = $1 AND NOT fenced`, [epoch, leaseMs])) > 0;
    },

    async endIncarnation(id) {
      const epoch = ownerEpoch(id);
      if (epoch !== undefined) await pg.rows('UPDATE cluster_nodes SET fenced = TRUE WHERE epoch = $1', [epoch]);
    },

    async fenceExpired() {
      const rows = await pg.rows<{ node: string; epoch: string }>(`UPDATE cluster_nodes SET fenced = TRUE WHERE NOT fenced AND lease_until < ${NOW} RETURNING node, epoch`);
      return rows.map(owner);
    },

    async liveOwners() {
      return (await pg.rows<{ node: string; epoch: string }>('SELECT node, epoch FROM cluster_nodes WHERE NOT fenced ORDER BY epoch')).map(owner);
    },
  };
}
