/**
 * SQLite schema, versioned (see ../migration.ts). A migration never changes
 * once released: add a new one. Applied in order inside a transaction each;
 * the applied version is recorded in schema_version.
 */
import type { Migration } from '../migration.js';

export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE users (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        name          TEXT NOT NULL UNIQUE,
        role          TEXT NOT NULL CHECK (role IN ('user', 'admin', 'service')),
        password_hash TEXT NOT NULL,
        disabled      INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL
      );

      -- Tokens are stored as SHA-256 hashes; user_id is text so that JWT-only
      -- principals and database users share one id space.
      CREATE TABLE tokens (
        hash         TEXT PRIMARY KEY,
        user_id      TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL,
        expires_at   INTEGER,
        idle_expiry  INTEGER NOT NULL
      );
      CREATE INDEX tokens_user ON tokens (user_id);

      -- A message of the message service (title, content, type, sender) and one
      -- delivery row per receiver with its own status.
      CREATE TABLE messages (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        sender     TEXT NOT NULL,
        title      TEXT NOT NULL,
        content    TEXT NOT NULL,
        type       TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX messages_created ON messages (created_at);
      CREATE INDEX messages_sender ON messages (sender);

      CREATE TABLE message_receivers (
        message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        receiver   TEXT NOT NULL,
        status     TEXT NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'READ')),
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (message_id, receiver)
      );
      CREATE INDEX message_receivers_inbox ON message_receivers (receiver, status, message_id);
    `,
  },
  {
    version: 2,
    sql: `
      -- Point-to-point /queue/ messages, kept until a consumer acknowledges them.
      CREATE TABLE queue_messages (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        queue        TEXT NOT NULL,
        body         BLOB NOT NULL,
        content_type TEXT,
        headers      TEXT NOT NULL,
        created_at   INTEGER NOT NULL
      );
      CREATE INDEX queue_messages_queue ON queue_messages (queue, id);
    `,
  },
  {
    version: 3,
    sql: `
      -- Chat threads: a topic with members and persistent history.
      CREATE TABLE threads (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        topic            TEXT NOT NULL UNIQUE,
        status           TEXT NOT NULL CHECK (status IN ('OPEN', 'CLOSED')),
        created_by       TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        last_activity_at INTEGER NOT NULL,
        closed_at        INTEGER
      );
      CREATE INDEX threads_activity ON threads (status, last_activity_at);

      CREATE TABLE thread_members (
        thread_id INTEGER NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        user_id   TEXT NOT NULL,
        role      TEXT NOT NULL CHECK (role IN ('visitor', 'agent')),
        PRIMARY KEY (thread_id, user_id)
      );
      CREATE INDEX thread_members_user ON thread_members (user_id);

      -- seq is the history position clients recover from (SUBSCRIBE since:<seq>).
      CREATE TABLE thread_messages (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        thread_id  INTEGER NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        uid        TEXT NOT NULL,
        type       TEXT NOT NULL,
        author     TEXT NOT NULL,
        body       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        recalled   INTEGER NOT NULL DEFAULT 0,
        UNIQUE (thread_id, uid)
      );
      CREATE INDEX thread_messages_thread ON thread_messages (thread_id, seq);

      CREATE TABLE thread_receipts (
        thread_id  INTEGER NOT NULL,
        uid        TEXT NOT NULL,
        user_id    TEXT NOT NULL,
        status     TEXT NOT NULL CHECK (status IN ('DELIVERED', 'READ')),
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (thread_id, uid, user_id),
        FOREIGN KEY (thread_id, uid) REFERENCES thread_messages (thread_id, uid) ON DELETE CASCADE
      );
    `,
  },
  {
    version: 4,
    sql: `
      -- Hosted MQTT: apps that mint app and user tokens for MQTT clients.
      CREATE TABLE apps (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        client_id   TEXT NOT NULL UNIQUE,
        secret_hash TEXT NOT NULL,
        created_at  INTEGER NOT NULL
      );
      CREATE TABLE app_tokens (
        hash       TEXT PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('app', 'user')),
        app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
        username   TEXT,
        cid        TEXT,
        expires_at INTEGER NOT NULL
      );
      CREATE INDEX app_tokens_expiry ON app_tokens (expires_at);
      -- MQTT retained messages, one per topic.
      CREATE TABLE retained (
        topic      TEXT PRIMARY KEY,
        body       BLOB NOT NULL,
        qos        INTEGER NOT NULL,
        properties TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 5,
    sql: `
      -- Persistent MQTT sessions: subscriptions and waiting QoS 1/2 messages survive disconnects and restarts.
      CREATE TABLE mqtt_sessions (
        client_id       TEXT PRIMARY KEY,
        owner           TEXT NOT NULL,
        expiry_seconds  INTEGER NOT NULL,
        disconnected_at INTEGER,
        subscriptions   TEXT NOT NULL
      );
      CREATE TABLE mqtt_queue (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id  TEXT NOT NULL REFERENCES mqtt_sessions (client_id) ON DELETE CASCADE,
        topic      TEXT NOT NULL,
        body       BLOB NOT NULL,
        qos        INTEGER NOT NULL,
        properties TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX mqtt_queue_client ON mqtt_queue (client_id, id);
    `,
  },
  {
    version: 6,
    sql: `
      -- The QoS 2 handshake state of persistent sessions, so exactly-once holds across reconnects and restarts.
      ALTER TABLE mqtt_queue ADD COLUMN packet_id INTEGER;
      ALTER TABLE mqtt_queue ADD COLUMN released INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE mqtt_sessions ADD COLUMN qos2_in TEXT NOT NULL DEFAULT '[]';
    `,
  },
  {
    version: 7,
    sql: `
      -- Cluster-ready claims: a queue message belongs to the node that took it until acked or released;
      -- a persistent MQTT session is held by one node.
      ALTER TABLE queue_messages ADD COLUMN claimed_by TEXT;
      ALTER TABLE queue_messages ADD COLUMN redelivered INTEGER NOT NULL DEFAULT 0;
      CREATE INDEX queue_messages_free ON queue_messages (queue, claimed_by, id);
      ALTER TABLE mqtt_sessions ADD COLUMN node TEXT;
    `,
  },
  {
    version: 8,
    sql: `
      -- Revoking a user's tokens also refuses the JWTs issued for them before that moment.
      ALTER TABLE users ADD COLUMN tokens_valid_after INTEGER NOT NULL DEFAULT 0;
    `,
  },
  {
    version: 9,
    sql: `
      -- Node incarnations and their leases: claims and sessions carry an incarnation's owner id.
      CREATE TABLE cluster_nodes (
        epoch       INTEGER PRIMARY KEY AUTOINCREMENT,
        node        TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        lease_until INTEGER NOT NULL,
        fenced      INTEGER NOT NULL DEFAULT 0
      );
      ALTER TABLE mqtt_sessions ADD COLUMN changed_at INTEGER NOT NULL DEFAULT 0;
    `,
  },
  {
    version: 10,
    sql: `
      -- The webhook outbox: one row per event and webhook, pending until delivered or dead.
      CREATE TABLE webhook_events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id    TEXT NOT NULL,
        webhook     TEXT NOT NULL,
        type        TEXT NOT NULL,
        order_key   TEXT NOT NULL,
        body        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts    INTEGER NOT NULL DEFAULT 0,
        due_at      INTEGER NOT NULL,
        claimed_by  TEXT,
        last_status INTEGER,
        last_error  TEXT,
        finished_at INTEGER
      );
      CREATE INDEX webhook_events_state ON webhook_events (state, id);
      CREATE INDEX webhook_events_key ON webhook_events (webhook, order_key, id) WHERE state = 'pending';
      CREATE INDEX webhook_events_finished ON webhook_events (state, finished_at) WHERE state <> 'pending';
      `,
    },
    {
      version: 11,
      sql: `
      -- The audit log: what administrators did through the HTTP API, newest by id.
      CREATE TABLE audit_log (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        actor_id   TEXT NOT NULL,
        actor_name TEXT NOT NULL,
        action     TEXT NOT NULL,
        target     TEXT NOT NULL,
        detail     TEXT NOT NULL,
        address    TEXT NOT NULL,
        node       TEXT NOT NULL
      );
      CREATE INDEX audit_log_at ON audit_log (at);
      CREATE INDEX audit_log_actor ON audit_log (actor_name, id);
    `,
  },
];
