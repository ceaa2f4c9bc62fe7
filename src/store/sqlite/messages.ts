/** MessageStore on SQLite (contract: ../messages.ts). */
import type Database from 'better-sqlite3';
import type { MessageStore, Receipt } from '../messages.js';
import { rowId, toMessage, toReceipt, type MessageRow, type ReceiptRow } from '../rows.js';
import { sqliteEventWriter } from './webhooks.js';
import { groupCommitOf } from './group-commit.js';

export function sqliteMessages(db: Database.Database): MessageStore {
  const writeEvents = sqliteEventWriter(db);
  const group = groupCommitOf(db);
  const stmt = {
    insertMessage: db.prepare<[string, string, string, string, number]>(
      'INSERT INTO messages (sender, title, content, type, created_at) VALUES (?, ?, ?, ?, ?)',
    ),
    insertReceipt: db.prepare<[number | bigint, string, number]>(
      "INSERT OR IGNORE INTO message_receivers (message_id, receiver, status, updated_at) VALUES (?, ?, 'PENDING', ?)",
    ),
    getMessage: db.prepare<[number], MessageRow>('SELECT * FROM messages WHERE id = ?'),
    receiptsOf: db.prepare<[number], ReceiptRow>('SELECT * FROM message_receivers WHERE message_id = ? ORDER BY receiver'),
    pendingFor: db.prepare<[string, number], MessageRow>(
      `SELECT m.* FROM message_receivers r JOIN messages m ON m.id = r.message_id
       WHERE r.receiver = ? AND r.status = 'PENDING' ORDER BY m.id LIMIT ?`,
    ),
    setStatus: db.prepare<[string, number, number, string, string]>(
      `UPDATE message_receivers SET status = ?, updated_at = ?
       WHERE message_id = ? AND receiver = ?
         AND (CASE status WHEN 'PENDING' THEN 0 WHEN 'DELIVERED' THEN 1 ELSE 2 END)
           < (CASE ? WHEN 'PENDING' THEN 0 WHEN 'DELIVERED' THEN 1 ELSE 2 END)`,
    ),
    deleteMessage: db.prepare<[number]>('DELETE FROM messages WHERE id = ?'),
    pruneOld: db.prepare<[number, number]>('DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE created_at < ? ORDER BY id LIMIT ?)'),
    crowdedReceivers: db.prepare<[number, number], { receiver: string }>(
      'SELECT receiver FROM message_receivers GROUP BY receiver HAVING COUNT(*) > ? LIMIT ?',
    ),
    oldestRowsOf: db.prepare<[string, number, number], { message_id: number }>(
      'SELECT message_id FROM message_receivers WHERE receiver = ? ORDER BY message_id DESC LIMIT ? OFFSET ?',
    ),
  };

  const receiptsOf = (id: number): Receipt[] => stmt.receiptsOf.all(id).map(toReceipt);

  return {
    // Sends that arrive together share one commit (group-commit.ts): each resolves once its group is on disk.
    insertMessage(m, events) {
      return group.run(() => {
        const info = stmt.insertMessage.run(m.sender, m.title, m.content, m.type, m.createdAt);
        for (const r of m.receivers) stmt.insertReceipt.run(info.lastInsertRowid, r, m.createdAt);
        const id = String(info.lastInsertRowid);
        if (events) writeEvents(events(id));
        return id;
      });
    },

    async getMessage(id) {
      const n = rowId(id);
      if (n === null) return null;
      const r = stmt.getMessage.get(n);
      return r ? { ...toMessage(r), receivers: receiptsOf(n) } : null;
    },

    async pendingFor(receiver, limit) {
      return stmt.pendingFor.all(receiver, limit).map(toMessage);
    },

    async setDeliveryStatus(messageId, receiver, status, at, events) {
      const n = rowId(messageId);
      if (n === null) return false;
      return db.transaction(() => {
        const moved = stmt.setStatus.run(status, at, n, receiver, status).changes > 0;
        if (moved && events) writeEvents(events);
        return moved;
      })();
    },

    async queryMessages(q) {
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (q.sender !== undefined) (where.push('m.sender = ?'), args.push(q.sender));
      if (q.type !== undefined) (where.push('m.type = ?'), args.push(q.type));
      if (q.from !== undefined) (where.push('m.created_at >= ?'), args.push(q.from));
      if (q.to !== undefined) (where.push('m.created_at <= ?'), args.push(q.to));
      if (q.status !== undefined || q.receiver !== undefined) {
        const sub: string[] = ['r.message_id = m.id'];
        if (q.status !== undefined) (sub.push('r.status = ?'), args.push(q.status));
        if (q.receiver !== undefined) (sub.push('r.receiver = ?'), args.push(q.receiver));
        where.push(`EXISTS (SELECT 1 FROM message_receivers r WHERE ${sub.join(' AND ')})`);
      }
      const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
      return db.transaction(() => {
        const total = db.prepare<unknown[], { n: number }>(`SELECT COUNT(*) AS n FROM messages m ${clause}`).get(...args)!.n;
        const rows = db
          .prepare<unknown[], MessageRow>(`SELECT m.* FROM messages m ${clause} ORDER BY m.id DESC LIMIT ? OFFSET ?`)
          .all(...args, q.size, (q.page - 1) * q.size);
        const items = rows.map((r) => ({ ...toMessage(r), receivers: receiptsOf(r.id) }));
        return { items, total, page: q.page, size: q.size };
      })();
    },

    async deleteMessage(id) {
      const n = rowId(id);
      if (n === null) return false;
      return stmt.deleteMessage.run(n).changes > 0;
    },

    async pruneMessages(olderThan, maxPerReceiver, batch) {
      return db.transaction(() => {
        let removed = stmt.pruneOld.run(olderThan, batch).changes;
        for (const { receiver } of stmt.crowdedReceivers.all(maxPerReceiver, batch)) {
          const ids = stmt.oldestRowsOf.all(receiver, batch, maxPerReceiver).map((r) => r.message_id);
          if (ids.length === 0) continue;
          const list = ids.join(',');
          removed += db.prepare<[string]>(`DELETE FROM message_receivers WHERE receiver = ? AND message_id IN (${list})`).run(receiver).changes;
          removed += db
            .prepare(`DELETE FROM messages WHERE id IN (${list}) AND NOT EXISTS (SELECT 1 FROM message_receivers r WHERE r.message_id = messages.id)`)
            .run().changes;
        }
        return removed;
      })();
    },
  };
}
