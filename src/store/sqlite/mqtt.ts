/** MqttStore (apps, retained, persistent sessions) on SQLite (contract: ../mqtt.ts). */
import type Database from 'better-sqlite3';
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

export function sqliteMqtt(db: Database.Database): MqttStore {
  const stmt = {
    insertApp: db.prepare<[string, string, string, string, number]>('INSERT INTO apps (id, name, client_id, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)'),
    appById: db.prepare<[string], AppRow>('SELECT * FROM apps WHERE id = ?'),
    appByClientId: db.prepare<[string], AppRow>('SELECT * FROM apps WHERE client_id = ?'),
    listApps: db.prepare<[], AppRow>('SELECT * FROM apps ORDER BY created_at, id'),
    insertAppToken: db.prepare<[string, string, string, string | null, string | null, number]>(
      'INSERT INTO app_tokens (hash, kind, app_id, username, cid, expires_at) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    appToken: db.prepare<[string], AppTokenRow>('SELECT * FROM app_tokens WHERE hash = ?'),
    deleteExpiredAppTokens: db.prepare<[number]>('DELETE FROM app_tokens WHERE expires_at <= ?'),

    clearRetained: db.prepare<[string]>('DELETE FROM retained WHERE topic = ?'),
    putRetained: db.prepare<[string, Buffer, number, string, number]>(
      'INSERT INTO retained (topic, body, qos, properties, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (topic) DO UPDATE SET body = excluded.body, qos = excluded.qos, properties = excluded.properties, updated_at = excluded.updated_at',
    ),
    listRetained: db.prepare<[], RetainedRow>('SELECT * FROM retained ORDER BY topic'),

    saveSession: db.prepare<[string, string, number, number | null, string, string, string | null, number]>(
      `INSERT INTO mqtt_sessions (client_id, owner, expiry_seconds, disconnected_at, subscriptions, qos2_in, node, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (client_id) DO UPDATE SET owner = excluded.owner, expiry_seconds = excluded.expiry_seconds,
         disconnected_at = excluded.disconnected_at, subscriptions = excluded.subscriptions, qos2_in = excluded.qos2_in, node = excluded.node,
         changed_at = CASE WHEN mqtt_sessions.subscriptions IS NOT excluded.subscriptions OR mqtt_sessions.node IS NOT excluded.node
           OR mqtt_sessions.owner IS NOT excluded.owner THEN excluded.changed_at ELSE mqtt_sessions.changed_at END`,
    ),
    deleteSession: db.prepare<[string]>('DELETE FROM mqtt_sessions WHERE client_id = ?'),
    listSessions: db.prepare<[], MqttSessionRow>('SELECT * FROM mqtt_sessions ORDER BY client_id'),
    session: db.prepare<[string], MqttSessionRow>('SELECT * FROM mqtt_sessions WHERE client_id = ?'),
    adoptSessions: db.prepare<[number, string, string], MqttSessionRow>(
      `UPDATE mqtt_sessions SET changed_at = ?, node = ? WHERE node IS NULL OR (node NOT IN (SELECT value FROM json_each(?))
         AND node NOT IN (SELECT node || '#' || epoch FROM cluster_nodes WHERE fenced = 0)) RETURNING *`,
    ),
    enqueue: db.prepare<[string, string, Buffer, number, string, number, number | null, number]>(
      'INSERT INTO mqtt_queue (client_id, topic, body, qos, properties, created_at, packet_id, released) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    changedSince: db.prepare<[number], MqttSessionRow>('SELECT * FROM mqtt_sessions WHERE changed_at >= ? ORDER BY client_id'),
    waiting: db.prepare<[string], { client_id: string }>(
      'SELECT DISTINCT client_id FROM mqtt_queue WHERE packet_id IS NULL AND client_id IN (SELECT value FROM json_each(?))',
    ),
    enqueueIfSession: db.prepare<[string, string, Buffer, number, string, number, string]>(
      `INSERT INTO mqtt_queue (client_id, topic, body, qos, properties, created_at, packet_id, released)
       SELECT ?, ?, ?, ?, ?, ?, NULL, 0 WHERE EXISTS (SELECT 1 FROM mqtt_sessions WHERE client_id = ?)`,
    ),
    queueOf: db.prepare<[string, number], MqttQueuedRow>('SELECT * FROM mqtt_queue WHERE client_id = ? ORDER BY id LIMIT ?'),
    setQueuedState: db.prepare<[number, number, number]>('UPDATE mqtt_queue SET packet_id = ?, released = ? WHERE id = ?'),
    deleteQueued: db.prepare<[number]>('DELETE FROM mqtt_queue WHERE id = ?'),
  };

  return {
    async createApp(app) {
      try {
        stmt.insertApp.run(app.id, app.name, app.clientId, app.secretHash, app.createdAt);
      } catch (err) {
        if (String((err as { code?: string }).code).startsWith('SQLITE_CONSTRAINT')) throw new DuplicateError(`app ${app.id} already exists`);
        throw err;
      }
    },

    async getApp(id) {
      const r = stmt.appById.get(id);
      return r ? toApp(r) : null;
    },

    async getAppByClientId(clientId) {
      const r = stmt.appByClientId.get(clientId);
      return r ? toApp(r) : null;
    },

    async listApps() {
      return stmt.listApps.all().map(toApp);
    },

    async rotateAppSecret(id, secretHash) {
      return db.transaction(() => {
        if (db.prepare<[string, string]>('UPDATE apps SET secret_hash = ? WHERE id = ?').run(secretHash, id).changes === 0) return false;
        db.prepare<[string]>("DELETE FROM app_tokens WHERE app_id = ? AND kind = 'app'").run(id);
        return true;
      })();
    },

    async deleteApp(id) {
      // Its tokens go with it (app_tokens references apps ON DELETE CASCADE).
      return db.prepare<[string]>('DELETE FROM apps WHERE id = ?').run(id).changes > 0;
    },

    async insertAppToken(t) {
      stmt.insertAppToken.run(t.hash, t.kind, t.appId, t.username, t.cid, t.expiresAt);
    },

    async getAppToken(hash) {
      const r = stmt.appToken.get(hash);
      return r ? toAppToken(r) : null;
    },

    async deleteExpiredAppTokens(now) {
      return stmt.deleteExpiredAppTokens.run(now).changes;
    },

    async setRetained(r) {
      if (r.body.length === 0) {
        stmt.clearRetained.run(r.topic);
        return;
      }
      stmt.putRetained.run(r.topic, r.body, r.qos, r.properties, r.updatedAt);
    },

    async listRetained() {
      return stmt.listRetained.all().map(toRetained);
    },

    async saveMqttSession(m) {
      stmt.saveSession.run(...mqttSessionParams(m), Date.now());
    },

    async deleteMqttSession(clientId) {
      stmt.deleteSession.run(clientId);
    },

    async listMqttSessions() {
      return stmt.listSessions.all().map(toMqttSession);
    },

    async getMqttSession(clientId) {
      const r = stmt.session.get(clientId);
      return r ? toMqttSession(r) : null;
    },

    async adoptMqttSessions(node, liveNodes) {
      return stmt.adoptSessions.all(Date.now(), node, JSON.stringify(liveNodes)).map(toMqttSession).sort(byClientId);
    },

    async enqueueMqttMany(messages) {
      return db.transaction(() => {
        let n = 0;
        for (const m of messages) n += stmt.enqueueIfSession.run(m.clientId, m.topic, m.body, m.qos, m.properties, m.createdAt, m.clientId).changes;
        return n;
      })();
    },

    async mqttSessionsChangedSince(since) {
      const now = Date.now();
      return { sessions: stmt.changedSince.all(since).map(toMqttSession), now };
    },

    async mqttQueuesWaiting(clientIds) {
      if (clientIds.length === 0) return [];
      return stmt.waiting.all(JSON.stringify(clientIds)).map((r) => r.client_id);
    },

    async enqueueMqtt(m) {
      const info = stmt.enqueue.run(m.clientId, m.topic, m.body, m.qos, m.properties, m.createdAt, m.packetId, m.released ? 1 : 0);
      return String(info.lastInsertRowid);
    },

    async loadMqttQueue(clientId, limit) {
      return stmt.queueOf.all(clientId, limit).map(toMqttQueued);
    },

    async setMqttQueuedState(id, packetId, released) {
      const n = rowId(id);
      if (n !== null) stmt.setQueuedState.run(packetId, released ? 1 : 0, n);
    },

    async deleteMqttQueued(id) {
      const n = rowId(id);
      if (n !== null) stmt.deleteQueued.run(n);
    },
  };
}
