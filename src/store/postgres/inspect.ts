/** InspectStore on PostgreSQL (contract: ../inspect.ts): grouped reads for the console. */
import type { InspectStore, MqttQueueSummary, PendingSummary, QueueSummary } from '../inspect.js';
import { rowId, toQueued, type QueueRow } from '../rows.js';
import type { PgHandle } from './pool.js';

export function postgresInspect(pg: PgHandle): InspectStore {
  return {
    async queueSummaries(limit) {
      return pg.rows<QueueSummary>(
        `SELECT queue, COUNT(*)::bigint AS messages, COUNT(claimed_by)::bigint AS claimed, COUNT(*) FILTER (WHERE redelivered)::bigint AS redelivered,
                MIN(created_at) AS "oldestAt", COALESCE(SUM(octet_length(body)), 0)::bigint AS bytes
         FROM queue_messages GROUP BY queue ORDER BY messages DESC, queue LIMIT $1`,
        [limit],
      );
    },
    async peekQueue(queue, limit, afterId) {
      const after = afterId === undefined ? 0 : (rowId(afterId) ?? 0);
      const rows = await pg.rows<QueueRow & { claimed_by: string | null }>('SELECT * FROM queue_messages WHERE queue = $1 AND id > $2 ORDER BY id LIMIT $3', [queue, after, limit]);
      return rows.map((r) => ({ ...toQueued(r), claimedBy: r.claimed_by }));
    },
    async mqttQueueSummaries(limit) {
      return pg.rows<MqttQueueSummary>(
        `SELECT client_id AS "clientId", COUNT(*)::bigint AS messages, COUNT(packet_id)::bigint AS sent, MIN(created_at) AS "oldestAt",
                COALESCE(SUM(octet_length(body)), 0)::bigint AS bytes
         FROM mqtt_queue GROUP BY client_id ORDER BY messages DESC, client_id LIMIT $1`,
        [limit],
      );
    },
    async pendingSummaries(limit) {
      return pg.rows<PendingSummary>(
        `SELECT r.receiver, COUNT(*)::bigint AS pending, MIN(m.created_at) AS "oldestAt"
         FROM message_receivers r JOIN messages m ON m.id = r.message_id
         WHERE r.status = 'PENDING' GROUP BY r.receiver ORDER BY pending DESC, r.receiver LIMIT $1`,
        [limit],
      );
    },
  };
}
