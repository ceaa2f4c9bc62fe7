/**
 * QueueStore on PostgreSQL (contract: ../queues.ts). A claim locks its rows
 * with SKIP LOCKED, so concurrent nodes never take the same message.
 */
import type { QueueStore } from '../queues.js';
import { byQueueOrder, rowId, toQueued, type QueueRow } from '../rows.js';
import type { PgHandle } from './pool.js';

export function postgresQueues(pg: PgHandle): QueueStore {
  return {
    async enqueue(m, claimedBy) {
      const rows = await pg.rows<{ id: number }>(
        'INSERT INTO queue_messages (queue, body, content_type, headers, created_at, claimed_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id',
        [m.queue, m.body, m.contentType, JSON.stringify(m.headers), m.createdAt, claimedBy ?? null],
      );
      return String(rows[0]!.id);
    },

    async claimQueue(queue, owner, limit) {
      const rows = await pg.rows<QueueRow>(
        `UPDATE queue_messages SET claimed_by = $1 WHERE id IN (
           SELECT id FROM queue_messages WHERE queue = $2 AND claimed_by IS NULL ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING *`,
        [owner, queue, limit],
      );
      return rows.map(toQueued).sort(byQueueOrder);
    },

    async releaseQueued(ids, redelivered) {
      const valid = ids.filter((id) => rowId(id) !== null);
      if (valid.length > 0) {
        await pg.rows('UPDATE queue_messages SET claimed_by = NULL, redelivered = redelivered OR $2 WHERE id = ANY($1::bigint[])', [valid, redelivered]);
      }
    },

    async releaseDeadClaims(liveOwners) {
      const rows = await pg.rows<{ queue: string }>(
        `UPDATE queue_messages SET claimed_by = NULL, redelivered = TRUE WHERE claimed_by IS NOT NULL AND NOT (claimed_by = ANY($1::text[]))
           AND claimed_by NOT IN (SELECT node || '#' || epoch FROM cluster_nodes WHERE NOT fenced) RETURNING queue`,
        [liveOwners],
      );
      return [...new Set(rows.map((r) => r.queue))];
    },

    async dequeue(id) {
      const n = rowId(id);
      if (n === null) return false;
      return (await pg.count('DELETE FROM queue_messages WHERE id = $1', [n])) > 0;
    },
  };
}
