/** InspectStore on SQLite (contract: ../inspect.ts): grouped reads for the console. */
import type Database from 'better-sqlite3';
import type { InspectStore, MqttQueueSummary, PendingSummary, QueueSummary } from '../inspect.js';
import { rowId, toQueued, type QueueRow } from '../rows.js';

export function sqliteInspect(db: Database.Database): InspectStore {
  const stmt = {
    queues: db.prepare<[number], QueueSummary>(
      `SELECT queue, COUNT(*) AS messages, COUNT(claimed_by) AS claimed, SUM(redelivered) AS redelivered,
              MIN(created_at) AS oldestAt, SUM(LENGTH(body)) AS bytes
       FROM queue_messages GROUP BY queue ORDER BY messages DESC, queue LIMIT ?`,
    ),
    peek: db.prepare<[string, number, number], QueueRow & { claimed_by: string | null }>('SELECT * FROM queue_messages WHERE queue = ? AND id > ? ORDER BY id LIMIT ?'),
    mqtt: db.prepare<[number], MqttQueueSummary>(
      `SELECT client_id AS clientId, COUNT(*) AS messages, COUNT(packet_id) AS sent, MIN(created_at) AS oldestAt, SUM(LENGTH(body)) AS bytes
       FROM mqtt_queue GROUP BY client_id ORDER BY messages DESC, client_id LIMIT ?`,
    ),
    pending: db.prepare<[number], PendingSummary>(
      `SELECT r.receiver AS receiver, COUNT(*) AS pending, MIN(m.created_at) AS oldestAt
       FROM message_receivers r JOIN messages m ON m.id = r.message_id
       WHERE r.status = 'PENDING' GROUP BY r.receiver ORDER BY pending DESC, r.receiver LIMIT ?`,
    ),
  };
  return {
    async queueSummaries(limit) {
      return stmt.queues.all(limit);
    },
    async peekQueue(queue, limit, afterId) {
      const after = afterId === undefined ? 0 : (rowId(afterId) ?? 0);
      return stmt.peek.all(queue, after, limit).map((r) => ({ ...toQueued(r), claimedBy: r.claimed_by }));
    },
    async mqttQueueSummaries(limit) {
      return stmt.mqtt.all(limit);
    },
    async pendingSummaries(limit) {
      return stmt.pending.all(limit);
    },
  };
}
