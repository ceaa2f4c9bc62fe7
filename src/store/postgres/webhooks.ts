/**
 * WebhookStore on PostgreSQL (contract: ../webhooks.ts). A claim locks its
 * rows with SKIP LOCKED, so concurrent nodes never take the same row, and
 * takes only the first pending row of each (webhook, key), so a key's rows
 * go out one at a time whichever node sends them. Other domains write the
 * events of their changes in their own transactions with `writeEvents`.
 */
import { rowId, toWebhookDelivery, type WebhookRow } from '../rows.js';
import type { NewWebhookEvent, WebhookStore } from '../webhooks.js';
import type { Param, PgHandle, Queryable } from './pool.js';

/** Writes outbox rows in one statement, in list order; call it inside the transaction of the change they describe. */
export async function writeEvents(c: Queryable, events: readonly NewWebhookEvent[]): Promise<void> {
  if (events.length === 0) return;
  const col = <K extends keyof NewWebhookEvent>(k: K): string[] => events.map((e) => String(e[k]));
  await c.query(
    `INSERT INTO webhook_events (event_id, webhook, type, order_key, body, created_at, due_at)
     SELECT e, w, t, k, b, c, c FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
       WITH ORDINALITY AS x(e, w, t, k, b, c, n) ORDER BY n`,
    [col('eventId'), col('webhook'), col('type'), col('orderKey'), col('body'), col('createdAt')],
  );
}

export function postgresWebhooks(pg: PgHandle): WebhookStore {
  return {
    async insertWebhookEvents(events) {
      if (events.length > 0) await writeEvents(pg.direct, events);
    },

    async claimWebhookEvents(owner, webhooks, now, limit) {
      if (webhooks.length === 0 || limit <= 0) return [];
      const rows = await pg.rows<WebhookRow>(
        `UPDATE webhook_events SET claimed_by = $1 WHERE id IN (
           SELECT o.id FROM webhook_events o
           WHERE o.state = 'pending' AND o.claimed_by IS NULL AND o.due_at <= $2 AND o.webhook = ANY($3::text[])
             AND NOT EXISTS (SELECT 1 FROM webhook_events p WHERE p.webhook = o.webhook AND p.order_key = o.order_key AND p.state = 'pending' AND p.id < o.id)
           ORDER BY o.id LIMIT $4 FOR UPDATE SKIP LOCKED)
         RETURNING *`,
        [owner, now, webhooks, limit],
      );
      return rows.map(toWebhookDelivery).sort((a, b) => Number(a.id) - Number(b.id));
    },

    async webhookDelivered(id, at, status) {
      const n = rowId(id);
      if (n === null) return;
      await pg.rows(
        "UPDATE webhook_events SET state = 'delivered', attempts = attempts + 1, finished_at = $1, last_status = $2, last_error = NULL, claimed_by = NULL WHERE id = $3",
        [at, status, n],
      );
    },

    async webhookFailed(id, owner, at, retryAt, status, error) {
      const n = rowId(id);
      if (n === null) return;
      const where = "WHERE id = $4 AND state = 'pending' AND claimed_by = $5";
      if (retryAt === null) {
        await pg.rows(
          `UPDATE webhook_events SET state = 'dead', attempts = attempts + 1, finished_at = $1, last_status = $2, last_error = $3, claimed_by = NULL ${where}`,
          [at, status, error, n, owner],
        );
      } else {
        await pg.rows(`UPDATE webhook_events SET attempts = attempts + 1, due_at = $1, last_status = $2, last_error = $3, claimed_by = NULL ${where}`, [
          retryAt,
          status,
          error,
          n,
          owner,
        ]);
      }
    },

    async releaseWebhookClaims(owner) {
      await pg.rows('UPDATE webhook_events SET claimed_by = NULL WHERE claimed_by = $1', [owner]);
    },

    async releaseDeadWebhookClaims(liveOwners) {
      return pg.count(
        `UPDATE webhook_events SET claimed_by = NULL WHERE claimed_by IS NOT NULL AND NOT (claimed_by = ANY($1::text[]))
           AND claimed_by NOT IN (SELECT node || '#' || epoch FROM cluster_nodes WHERE NOT fenced)`,
        [liveOwners],
      );
    },

    async listWebhookEvents(q) {
      const args: Param[] = [q.state];
      const where = ['state = $1'];
      if (q.webhook !== undefined) (args.push(q.webhook), where.push(`webhook = $${args.length}`));
      const before = q.beforeId === undefined ? undefined : rowId(q.beforeId);
      if (before === null) return [];
      if (before !== undefined) (args.push(before), where.push(`id < $${args.length}`));
      args.push(q.limit);
      const rows = await pg.rows<WebhookRow>(`SELECT * FROM webhook_events WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT $${args.length}`, args);
      return rows.map(toWebhookDelivery);
    },

    async replayWebhookEvents(ids, at) {
      const set = "SET state = 'pending', attempts = 0, due_at = $1, finished_at = NULL, claimed_by = NULL";
      if (ids === 'all') return pg.count(`UPDATE webhook_events ${set} WHERE state = 'dead'`, [at]);
      const valid = ids.filter((id) => rowId(id) !== null);
      if (valid.length === 0) return 0;
      return pg.count(`UPDATE webhook_events ${set} WHERE state = 'dead' AND id = ANY($2::bigint[])`, [at, valid]);
    },

    async webhookBacklog() {
      const rows = await pg.rows<{ webhook: string; pending: number; dead: number; oldest: number | null }>(
        `SELECT webhook, COUNT(*) FILTER (WHERE state = 'pending')::int AS pending, COUNT(*) FILTER (WHERE state = 'dead')::int AS dead,
                MIN(created_at) FILTER (WHERE state = 'pending') AS oldest
         FROM webhook_events WHERE state <> 'delivered' GROUP BY webhook ORDER BY webhook`,
      );
      return rows.map((r) => ({ webhook: r.webhook, pending: r.pending, dead: r.dead, oldestPendingAt: r.oldest }));
    },

    async pruneWebhookEvents(deliveredBefore, deadBefore, batch) {
      return pg.count(
        `DELETE FROM webhook_events WHERE id IN (
           SELECT id FROM webhook_events WHERE (state = 'delivered' AND finished_at < $1) OR (state = 'dead' AND finished_at < $2) LIMIT $3)`,
        [deliveredBefore, deadBefore, batch],
      );
    },
  };
}
