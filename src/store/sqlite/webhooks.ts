/**
 * WebhookStore on SQLite (contract: ../webhooks.ts). One connection
 * serialises every statement, so a claim's UPDATE … RETURNING never
 * overlaps another. Other domains write the events of their changes in
 * their own transactions with `sqliteEventWriter`.
 */
import type Database from 'better-sqlite3';
import { rowId, toWebhookDelivery, type WebhookRow } from '../rows.js';
import type { NewWebhookEvent, WebhookBacklog, WebhookStore } from '../webhooks.js';

/** Writes outbox rows; call it inside the transaction of the change they describe. */
export function sqliteEventWriter(db: Database.Database): (events: readonly NewWebhookEvent[]) => void {
  const insert = db.prepare<[string, string, string, string, string, number, number]>(
    'INSERT INTO webhook_events (event_id, webhook, type, order_key, body, created_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  return (events) => {
    for (const e of events) insert.run(e.eventId, e.webhook, e.type, e.orderKey, e.body, e.createdAt, e.createdAt);
  };
}

export function sqliteWebhooks(db: Database.Database): WebhookStore {
  const write = sqliteEventWriter(db);
  const stmt = {
    claim: db.prepare<[string, number, string, number], WebhookRow>(
      `UPDATE webhook_events SET claimed_by = ? WHERE id IN (
         SELECT o.id FROM webhook_events o
         WHERE o.state = 'pending' AND o.claimed_by IS NULL AND o.due_at <= ? AND o.webhook IN (SELECT value FROM json_each(?))
           AND NOT EXISTS (SELECT 1 FROM webhook_events p WHERE p.webhook = o.webhook AND p.order_key = o.order_key AND p.state = 'pending' AND p.id < o.id)
         ORDER BY o.id LIMIT ?)
       RETURNING *`,
    ),
    delivered: db.prepare<[number, number, number]>(
      "UPDATE webhook_events SET state = 'delivered', attempts = attempts + 1, finished_at = ?, last_status = ?, last_error = NULL, claimed_by = NULL WHERE id = ?",
    ),
    retry: db.prepare<[number, number | null, string, number, string]>(
      "UPDATE webhook_events SET attempts = attempts + 1, due_at = ?, last_status = ?, last_error = ?, claimed_by = NULL WHERE id = ? AND state = 'pending' AND claimed_by = ?",
    ),
    dead: db.prepare<[number, number | null, string, number, string]>(
      "UPDATE webhook_events SET state = 'dead', attempts = attempts + 1, finished_at = ?, last_status = ?, last_error = ?, claimed_by = NULL WHERE id = ? AND state = 'pending' AND claimed_by = ?",
    ),
    release: db.prepare<[string]>('UPDATE webhook_events SET claimed_by = NULL WHERE claimed_by = ?'),
    releaseDead: db.prepare<[string]>(
      `UPDATE webhook_events SET claimed_by = NULL
       WHERE claimed_by IS NOT NULL AND claimed_by NOT IN (SELECT value FROM json_each(?))
         AND claimed_by NOT IN (SELECT node || '#' || epoch FROM cluster_nodes WHERE fenced = 0)`,
    ),
    replayOne: db.prepare<[number, number]>(
      "UPDATE webhook_events SET state = 'pending', attempts = 0, due_at = ?, finished_at = NULL, claimed_by = NULL WHERE id = ? AND state = 'dead'",
    ),
    replayAll: db.prepare<[number]>("UPDATE webhook_events SET state = 'pending', attempts = 0, due_at = ?, finished_at = NULL, claimed_by = NULL WHERE state = 'dead'"),
    backlog: db.prepare<[], { webhook: string; pending: number; dead: number; oldest: number | null }>(
      `SELECT webhook, SUM(state = 'pending') AS pending, SUM(state = 'dead') AS dead,
              MIN(CASE WHEN state = 'pending' THEN created_at END) AS oldest
       FROM webhook_events WHERE state <> 'delivered' GROUP BY webhook ORDER BY webhook`,
    ),
    prune: db.prepare<[number, number, number]>(
      `DELETE FROM webhook_events WHERE id IN (
         SELECT id FROM webhook_events WHERE (state = 'delivered' AND finished_at < ?) OR (state = 'dead' AND finished_at < ?) LIMIT ?)`,
    ),
  };

  return {
    async insertWebhookEvents(events) {
      if (events.length > 0) db.transaction(() => write(events))();
    },

    async claimWebhookEvents(owner, webhooks, now, limit) {
      if (webhooks.length === 0 || limit <= 0) return [];
      return stmt.claim
        .all(owner, now, JSON.stringify(webhooks), limit)
        .map(toWebhookDelivery)
        .sort((a, b) => Number(a.id) - Number(b.id));
    },

    async webhookDelivered(id, at, status) {
      const n = rowId(id);
      if (n !== null) stmt.delivered.run(at, status, n);
    },

    async webhookFailed(id, owner, at, retryAt, status, error) {
      const n = rowId(id);
      if (n === null) return;
      if (retryAt === null) stmt.dead.run(at, status, error, n, owner);
      else stmt.retry.run(retryAt, status, error, n, owner);
    },

    async releaseWebhookClaims(owner) {
      stmt.release.run(owner);
    },

    async releaseDeadWebhookClaims(liveOwners) {
      return stmt.releaseDead.run(JSON.stringify(liveOwners)).changes;
    },

    async listWebhookEvents(q) {
      const where = ['state = ?'];
      const args: (string | number)[] = [q.state];
      if (q.webhook !== undefined) (where.push('webhook = ?'), args.push(q.webhook));
      const before = q.beforeId === undefined ? undefined : rowId(q.beforeId);
      if (before === null) return [];
      if (before !== undefined) (where.push('id < ?'), args.push(before));
      return db
        .prepare<unknown[], WebhookRow>(`SELECT * FROM webhook_events WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`)
        .all(...args, q.limit)
        .map(toWebhookDelivery);
    },

    async replayWebhookEvents(ids, at) {
      if (ids === 'all') return stmt.replayAll.run(at).changes;
      return db.transaction(() => {
        let n = 0;
        for (const id of ids) {
          const row = rowId(id);
          if (row !== null) n += stmt.replayOne.run(at, row).changes;
        }
        return n;
      })();
    },

    async webhookBacklog() {
      return stmt.backlog.all().map((r): WebhookBacklog => ({ webhook: r.webhook, pending: r.pending, dead: r.dead, oldestPendingAt: r.oldest }));
    },

    async pruneWebhookEvents(deliveredBefore, deadBefore, batch) {
      return stmt.prune.run(deliveredBefore, deadBefore, batch).changes;
    },
  };
}
