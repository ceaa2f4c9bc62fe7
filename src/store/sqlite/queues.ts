/**
 * QueueStore on SQLite (contract: ../queues.ts). One connection serialises
 * every statement, so a claim's UPDATE … RETURNING never overlaps another.
 */
import type Database from 'better-sqlite3';
import type { QueueStore } from '../queues.js';
import { byQueueOrder, rowId, toQueued, type QueueRow } from '../rows.js';

export function sqliteQueues(db: Database.Database): QueueStore {
  const stmt = {
    enqueue: db.prepare<[string, Buffer, string | null, string, number, string | null]>(
      'INSERT INTO queue_messages (queue, body, content_type, headers, created_at, claimed_by) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    claim: db.prepare<[string, string, number], QueueRow>(
      `UPDATE queue_messages SET claimed_by = ? WHERE id IN
         (SELECT id FROM queue_messages WHERE queue = ? AND claimed_by IS NULL ORDER BY id LIMIT ?)
       RETURNING *`,
    ),
    release: db.prepare<[number, number]>('UPDATE queue_messages SET claimed_by = NULL, redelivered = MAX(redelivered, ?) WHERE id = ?'),
    releaseDead: db.prepare<[string], { queue: string }>(
      `UPDATE queue_messages SET claimed_by = NULL, redelivered = 1
       WHERE claimed_by IS NOT NULL AND claimed_by NOT IN (SELECT value FROM json_each(?))
         AND claimed_by NOT IN (SELECT node || '#' || epoch FROM cluster_nodes WHERE fenced = 0) RETURNING queue`,
    ),
    dequeue: db.prepare<[number]>('DELETE FROM queue_messages WHERE id = ?'),
  };

  return {
    async enqueue(m, claimedBy) {
      const info = stmt.enqueue.run(m.queue, m.body, m.contentType, JSON.stringify(m.headers), m.createdAt, claimedBy ?? null);
      return String(info.lastInsertRowid);
    },

    async claimQueue(queue, owner, limit) {
      return stmt.claim.all(owner, queue, limit).map(toQueued).sort(byQueueOrder);
    },

    async releaseQueued(ids, redelivered) {
      db.transaction(() => {
        for (const id of ids) {
          const n = rowId(id);
          if (n !== null) stmt.release.run(redelivered ? 1 : 0, n);
        }
      })();
    },

    async releaseDeadClaims(liveOwners) {
      return [...new Set(stmt.releaseDead.all(JSON.stringify(liveOwners)).map((r) => r.queue))];
    },

    async dequeue(id) {
      const n = rowId(id);
      if (n === null) return false;
      return stmt.dequeue.run(n).changes > 0;
    },
  };
}
