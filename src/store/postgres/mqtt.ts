/**
 * MqttStore (apps, retained, persistent sessions) on PostgreSQL (contract:
 * ../mqtt.ts). Adopting sessions locks rows with SKIP LOCKED, so two nodes
 * adopting at once never take the same session.
 */
import { DuplicateError } from '../errors.js';
import type { MqttStore } from '../mqtt.js';
import {
  byClientId,
  mqttSessionParams,
  rowId,
  toApp,
  toAppToken,
  toMqttQueued,
  toMqttSession,
  toRetained,
  type AppRow,
  type AppTokenRow,
  type MqttQueuedRow,
  type MqttSessionRow,
  type RetainedRow,
} from '../rows.js';
import { isUniqueViolation, type PgHandle } from './pool.js';

/** The database's clock, in Unix milliseconds (sessions' change times are compared on it alone). */
const NOW = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

export function postgresMqtt(pg: PgHandle): MqttStore {
  return {
    async createApp(app) {
      try {
        await pg.rows('INSERT INTO apps (id, name, client_id, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)', [
          app.id,
          app.name,
          app.clientId,
          app.secretHash,
          app.createdAt,
        ]);
      } catch (err) {
        if (isUniqueViolation(err)) throw new DuplicateError(`app ${app.id} already exists`);
        throw err;
      }
    },

    async getApp(id) {
      const r = (await pg.rows<AppRow>('SELECT * FROM apps WHERE id = $1', [id]))[0];
      return r ? toApp(r) : null;
    },

    async getAppByClientId(clientId) {
      const r = (await pg.rows<AppRow>('SELECT * FROM apps WHERE client_id = $1', [clientId]))[0];
      return r ? toApp(r) : null;
    },

    async listApps() {
      return (await pg.rows<AppRow>('SELECT * FROM apps ORDER BY created_at, id')).map(toApp);
    },

    async rotateAppSecret(id, secretHash) {
      return pg.tx(async (c) => {
        if (((await c.query('UPDATE apps SET secret_hash = $1 WHERE id = $2', [secretHash, id])).rowCount ?? 0) === 0) return false;
        await c.query("DELETE FROM app_tokens WHERE app_id = $1 AND kind = 'app'", [id]);
        return true;
      });
    },

    async deleteApp(id) {
      // Its tokens go with it (app_tokens references apps ON DELETE CASCADE).
      return (await pg.count('DELETE FROM apps WHERE id = $1', [id])) > 0;
    },

    async insertAppToken(t) {
      await pg.rows('INSERT INTO app_tokens (hash, kind, app_id, username, cid, expires_at) VALUES ($1, $2, $3, $4, $5, $6)', [
        t.hash,
        t.kind,
        t.appId,
        t.username,
        t.cid,
        t.expiresAt,
      ]);
    },

    async getAppToken(hash) {
      const r = (await pg.rows<AppTokenRow>('SELECT * FROM app_tokens WHERE hash = $1', [hash]))[0];
      return r ? toAppToken(r) : null;
    },

    async deleteExpiredAppTokens(now) {
      return pg.count('DELETE FROM app_tokens WHERE expires_at <= $1', [now]);
    },

    async setRetained(r) {
      if (r.body.length === 0) {
        await pg.rows('DELETE FROM retained WHERE topic = $1', [r.topic]);
        return;
      }
      await pg.rows(
        `INSERT INTO retained (topic, body, qos, properties, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (topic) DO UPDATE SET body = excluded.body, qos = excluded.qos, properties = excluded.properties, updated_at = excluded.updated_at`,
        [r.topic, r.body, r.qos, r.properties, r.updatedAt],
      );
    },

    async listRetained() {
      return (await pg.rows<RetainedRow>('SELECT * FROM retained ORDER BY topic')).map(toRetained);
    },

    async saveMqttSession(m) {
      await pg.rows(
        `INSERT INTO mqtt_sessions (client_id, owner, expiry_seconds, disconnected_at, subscriptions, qos2_in, node, changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, ${NOW})
         ON CONFLICT (client_id) DO UPDATE SET owner = excluded.owner, expiry_seconds = excluded.expiry_seconds,
           disconnected_at = excluded.disconnected_at, subscriptions = excluded.subscriptions, qos2_in = excluded.qos2_in, node = excluded.node,
           changed_at = CASE WHEN mqtt_sessions.subscriptions IS DISTINCT FROM excluded.subscriptions OR mqtt_sessions.node IS DISTINCT FROM excluded.node
             OR mqtt_sessions.owner IS DISTINCT FROM excluded.owner THEN excluded.changed_at ELSE mqtt_sessions.changed_at END`,
        mqttSessionParams(m),
      );
    },

    async deleteMqttSession(clientId) {
      await pg.rows('DELETE FROM mqtt_sessions WHERE client_id = $1', [clientId]);
    },

    async listMqttSessions() {
      return (await pg.rows<MqttSessionRow>('SELECT * FROM mqtt_sessions ORDER BY client_id')).map(toMqttSession);
    },

    async getMqttSession(clientId) {
      const r = (await pg.rows<MqttSessionRow>('SELECT * FROM mqtt_sessions WHERE client_id = $1', [clientId]))[0];
      return r ? toMqttSession(r) : null;
    },

    async adoptMqttSessions(node, liveNodes) {
      const rows = await pg.rows<MqttSessionRow>(
        `UPDATE mqtt_sessions SET node = $1, changed_at = ${NOW} WHERE client_id IN (
           SELECT client_id FROM mqtt_sessions WHERE node IS NULL OR (NOT (node = ANY($2::text[]))
             AND node NOT IN (SELECT node || '#' || epoch FROM cluster_nodes WHERE NOT fenced)) FOR UPDATE SKIP LOCKED)
         RETURNING *`,
        [node, liveNodes],
      );
      return rows.map(toMqttSession).sort(byClientId);
    },

    async enqueueMqttMany(messages) {
      if (messages.length === 0) return 0;
      const col = <T>(f: (m: (typeof messages)[number]) => T): T[] => messages.map(f);
      return pg.count(
        `INSERT INTO mqtt_queue (client_id, topic, body, qos, properties, created_at)
         SELECT t.client_id, t.topic, t.body, t.qos, t.properties, t.created_at
         FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::text[], $6::bigint[]) WITH ORDINALITY
           AS t(client_id, topic, body, qos, properties, created_at, n)
         WHERE EXISTS (SELECT 1 FROM mqtt_sessions s WHERE s.client_id = t.client_id)
         ORDER BY t.n`,
        [col((m) => m.clientId), col((m) => m.topic), col((m) => m.body), col((m) => m.qos), col((m) => m.properties), col((m) => m.createdAt)],
      );
    },

    async mqttSessionsChangedSince(since) {
      // The statement's start, not the first row's: a session committed while a long read runs is read next time.
      const started = '(extract(epoch from statement_timestamp()) * 1000)::bigint';
      const rows = await pg.rows<MqttSessionRow & { db_now: string }>(`SELECT *, ${started} AS db_now FROM mqtt_sessions WHERE changed_at >= $1 ORDER BY client_id`, [since]);
      const now = rows.length > 0 ? Number(rows[0]!.db_now) : Number((await pg.rows<{ db_now: string }>(`SELECT ${started} AS db_now`))[0]!.db_now);
      return { sessions: rows.map(toMqttSession), now };
    },

    async mqttQueuesWaiting(clientIds) {
      if (clientIds.length === 0) return [];
      const rows = await pg.rows<{ client_id: string }>('SELECT DISTINCT client_id FROM mqtt_queue WHERE packet_id IS NULL AND client_id = ANY($1::text[])', [clientIds]);
      return rows.map((r) => r.client_id);
    },

    async enqueueMqtt(m) {
      const rows = await pg.rows<{ id: number }>(
        'INSERT INTO mqtt_queue (client_id, topic, body, qos, properties, created_at, packet_id, released) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id',
        [m.clientId, m.topic, m.body, m.qos, m.properties, m.createdAt, m.packetId, m.released],
      );
      return String(rows[0]!.id);
    },

    async setMqttQueuedState(id, packetId, released) {
      const n = rowId(id);
      if (n !== null) await pg.rows('UPDATE mqtt_queue SET packet_id = $1, released = $2 WHERE id = $3', [packetId, released, n]);
    },

    async loadMqttQueue(clientId, limit) {
      return (await pg.rows<MqttQueuedRow>('SELECT * FROM mqtt_queue WHERE client_id = $1 ORDER BY id LIMIT $2', [clientId, limit])).map(toMqttQueued);
    },

    async deleteMqttQueued(id) {
      const n = rowId(id);
      if (n !== null) await pg.rows('DELETE FROM mqtt_queue WHERE id = $1', [n]);
    },
  };
}
