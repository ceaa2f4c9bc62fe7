/** AuditStore on PostgreSQL (contract: ../audit.ts). */
import type { AuditStore } from '../audit.js';
import { toAudit, type AuditRow } from '../rows.js';
import type { Param, PgHandle } from './pool.js';

export function postgresAudit(pg: PgHandle): AuditStore {
  return {
    async insertAudit(e) {
      await pg.rows('INSERT INTO audit_log (at, actor_id, actor_name, action, target, detail, address, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
        e.at,
        e.actorId,
        e.actorName,
        e.action,
        e.target,
        e.detail,
        e.address,
        e.node,
      ]);
    },

    async queryAudit(q) {
      const where: string[] = [];
      const args: Param[] = [];
      const arg = (v: Param): string => (args.push(v), `$${args.length}`);
      if (q.action !== undefined) where.push(`(action = ${arg(q.action)} OR action LIKE ${arg(q.action.replace(/[%_]/g, '') + '.%')})`);
      if (q.actor !== undefined) where.push(`actor_name = ${arg(q.actor)}`);
      const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
      const total = (await pg.rows<{ n: number }>(`SELECT COUNT(*)::int AS n FROM audit_log ${clause}`, args))[0]!.n;
      const rows = await pg.rows<AuditRow>(`SELECT * FROM audit_log ${clause} ORDER BY id DESC LIMIT ${arg(q.size)} OFFSET ${arg((q.page - 1) * q.size)}`, args);
      return { items: rows.map(toAudit), total, page: q.page, size: q.size };
    },

    async pruneAudit(olderThan, maxRows, batch) {
      let removed = await pg.count('DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 ORDER BY id LIMIT $2)', [olderThan, batch]);
      const cut = (await pg.rows<{ id: number }>('SELECT id FROM audit_log ORDER BY id DESC LIMIT 1 OFFSET $1', [maxRows]))[0];
      if (cut && removed < batch) removed += await pg.count('DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE id <= $1 ORDER BY id LIMIT $2)', [cut.id, batch - removed]);
      return removed;
    },
  };
}
