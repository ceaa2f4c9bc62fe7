/** AuditStore on SQLite (contract: ../audit.ts). */
import type Database from 'better-sqlite3';
import type { AuditStore } from '../audit.js';
import { toAudit, type AuditRow } from '../rows.js';

export function sqliteAudit(db: Database.Database): AuditStore {
  const stmt = {
    insert: db.prepare<[number, string, string, string, string, string, string, string]>(
      'INSERT INTO audit_log (at, actor_id, actor_name, action, target, detail, address, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    pruneOld: db.prepare<[number, number]>('DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ? ORDER BY id LIMIT ?)'),
    // The id of the newest entry past `maxRows`: it and everything older go.
    cut: db.prepare<[number], { id: number }>('SELECT id FROM audit_log ORDER BY id DESC LIMIT 1 OFFSET ?'),
    pruneBeyond: db.prepare<[number, number]>('DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE id <= ? ORDER BY id LIMIT ?)'),
  };

  return {
    async insertAudit(e) {
      stmt.insert.run(e.at, e.actorId, e.actorName, e.action, e.target, e.detail, e.address, e.node);
    },

    async queryAudit(q) {
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (q.action !== undefined) (where.push('(action = ? OR action LIKE ?)'), args.push(q.action, q.action.replace(/[%_]/g, '') + '.%'));
      if (q.actor !== undefined) (where.push('actor_name = ?'), args.push(q.actor));
      const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
      return db.transaction(() => {
        const total = db.prepare<unknown[], { n: number }>(`SELECT COUNT(*) AS n FROM audit_log ${clause}`).get(...args)!.n;
        const rows = db.prepare<unknown[], AuditRow>(`SELECT * FROM audit_log ${clause} ORDER BY id DESC LIMIT ? OFFSET ?`).all(...args, q.size, (q.page - 1) * q.size);
        return { items: rows.map(toAudit), total, page: q.page, size: q.size };
      })();
    },

    async pruneAudit(olderThan, maxRows, batch) {
      let removed = stmt.pruneOld.run(olderThan, batch).changes;
      const cut = stmt.cut.get(maxRows);
      if (cut && removed < batch) removed += stmt.pruneBeyond.run(cut.id, batch - removed).changes;
      return removed;
    },
  };
}
