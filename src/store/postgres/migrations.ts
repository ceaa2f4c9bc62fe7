/**
 * PostgreSQL schema, versioned like SQLite's (a released migration never
 * changes). Times are milliseconds since the epoch in BIGINT, as in SQLite;
 * ids are BIGSERIAL. Every node runs the migrations at start under one
 * advisory lock, so nodes starting together do not race.
 */
import type { Migration } from '../migration.js';

export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE users (
        id            BIGSERIAL PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        role          TEXT NOT NULL CHECK (role IN ('user', 'admin', 'service')),
        password_hash TEXT NOT NULL,
        disabled      BOOLEAN NOT NULL DEFAULT FALSE,
        created_at    BIGINT NOT NULL
      );

      CREATE TABLE tokens (
        hash         TEXT PRIMARY KEY,
        user_id      TEXT NOT NULL,
        created_at   BIGINT NOT NULL,
        last_used_at BIGINT NOT NULL,
        expires_at   BIGINT,
        idle_expiry  BOOLEAN NOT NULL
      );
      CREATE INDEX tokens_user ON tokens (user_id);

      CREATE TABLE messages (
        id         BIGSERIAL PRIMARY KEY,
        sender     TEXT NOT NULL,
        title      TEXT NOT NULL,
        content    TEXT NOT NULL,
        type       TEXT NOT NULL,
        created_at BIGINT NOT NULL
      );
      CREATE INDEX messages_created ON messages (created_at);
      CREATE INDEX messages_sender ON messages (sender);

      CREATE TABLE message_receivers (
        message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        receiver   TEXT NOT NULL,
        status     TEXT NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'READ')),
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (message_id, receiver)
      );
      CREATE INDEX message_receivers_inbox ON message_receivers (receiver, status, message_id);

      CREATE TABLE queue_messages (
        id           BIGSERIAL PRIMARY KEY,
        queue        TEXT NOT NULL,
        body         BYTEA NOT NULL,
        content_type TEXT,
        headers      TEXT NOT NULL,
        created_at   BIGINT NOT NULL,
        claimed_by   TEXT,
        redelivered  BOOLEAN NOT NULL DEFAULT FALSE
      );
      CREATE INDEX queue_messages_free ON queue_messages (queue, id) WHERE claimed_by IS NULL;
      CREATE INDEX queue_messages_claimed ON queue_messages (claimed_by) WHERE claimed_by IS NOT NULL;

      CREATE TABLE threads (
        id               BIGSERIAL PRIMARY KEY,
        topic            TEXT NOT NULL UNIQUE,
        status           TEXT NOT NULL CHECK (status IN ('OPEN', 'CLOSED')),
        created_by       TEXT NOT NULL,
        created_at       BIGINT NOT NULL,
        last_activity_at BIGINT NOT NULL,
        closed_at        BIGINT
      );
      CREATE INDEX threads_activity ON threads (status, last_activity_at);

      CREATE TABLE thread_members (
        thread_id BIGINT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        user_id   TEXT NOT NULL,
        role      TEXT NOT NULL CHECK (role IN ('visitor', 'agent')),
        PRIMARY KEY (thread_id, user_id)
      );
      CREATE INDEX thread_members_user ON thread_members (user_id);

      CREATE TABLE thread_messages (
        seq        BIGSERIAL PRIMARY KEY,
        thread_id  BIGINT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        uid        TEXT NOT NULL,
        type       TEXT NOT NULL,
        author     TEXT NOT NULL,
        body       TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        recalled   BOOLEAN NOT NULL DEFAULT FALSE,
        UNIQUE (thread_id, uid)
      );
      CREATE INDEX thread_messages_thread ON thread_messages (thread_id, seq);

      CREATE TABLE thread_receipts (
        thread_id  BIGINT NOT NULL,
        uid        TEXT NOT NULL,
        user_id    TEXT NOT NULL,
        status     TEXT NOT NULL CHECK (status IN ('DELIVERED', 'READ')),
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (thread_id, uid, user_id),
        FOREIGN KEY (thread_id, uid) REFERENCES thread_messages (thread_id, uid) ON DELETE CASCADE
      );

      CREATE TABLE apps (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        client_id   TEXT NOT NULL UNIQUE,
        secret_hash TEXT NOT NULL,
        created_at  BIGINT NOT NULL
      );
      CREATE TABLE app_tokens (
        hash       TEXT PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('app', 'user')),
        app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
        username   TEXT,
        cid        TEXT,
        expires_at BIGINT NOT NULL
      );
      CREATE INDEX app_tokens_expiry ON app_tokens (expires_at);

      CREATE TABLE retained (
        topic      TEXT PRIMARY KEY,
        body       BYTEA NOT NULL,
        qos        INTEGER NOT NULL,
        properties TEXT NOT NULL,
        updated_at BIGINT NOT NULL
      );

      CREATE TABLE mqtt_sessions (
        client_id       TEXT PRIMARY KEY,
        owner           TEXT NOT NULL,
        expiry_seconds  BIGINT NOT NULL,
        disconnected_at BIGINT,
        subscriptions   TEXT NOT NULL,
        qos2_in         TEXT NOT NULL DEFAULT '[]',
        node            TEXT
      );
      CREATE TABLE mqtt_queue (
        id         BIGSERIAL PRIMARY KEY,
        client_id  TEXT NOT NULL REFERENCES mqtt_sessions (client_id) ON DELETE CASCADE,
        topic      TEXT NOT NULL,
        body       BYTEA NOT NULL,
        qos        INTEGER NOT NULL,
        properties TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        packet_id  INTEGER,
        released   BOOLEAN NOT NULL DEFAULT FALSE
      );
      CREATE INDEX mqtt_queue_client ON mqtt_queue (client_id, id);
    `,
  },
  {
    version: 2,
    sql: `
      -- Revoking a user's tokens also refuses the JWTs issued for them before that moment.
      ALTER TABLE users ADD COLUMN tokens_valid_after BIGINT NOT NULL DEFAULT 0;
    `,
  },
  {
    version: 3,
    sql: `
      -- Node incarnations and their leases: claims and sessions carry an incarnation's owner id.
      CREATE TABLE cluster_nodes (
        epoch       BIGSERIAL PRIMARY KEY,
        node        TEXT NOT NULL,
        started_at  BIGINT NOT NULL,
        lease_until BIGINT NOT NULL,
        fenced      BOOLEAN NOT NULL DEFAULT FALSE
      );
      CREATE INDEX cluster_nodes_node ON cluster_nodes (node) WHERE NOT fenced;
      -- When a persistent MQTT session last changed, by the database's clock (every node follows the changes).
      ALTER TABLE mqtt_sessions ADD COLUMN changed_at BIGINT NOT NULL DEFAULT 0;
      CREATE INDEX mqtt_sessions_changed ON mqtt_sessions (changed_at);
    `,
  },
  {
    version: 4,
    sql: `
      -- The webhook outbox: one row per event and webhook, pending until delivered or dead.
      CREATE TABLE webhook_events (
        id          BIGSERIAL PRIMARY KEY,
        event_id    TEXT NOT NULL,
        webhook     TEXT NOT NULL,
        type        TEXT NOT NULL,
        order_key   TEXT NOT NULL,
        body        TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts    INTEGER NOT NULL DEFAULT 0,
        due_at      BIGINT NOT NULL,
        claimed_by  TEXT,
        last_status INTEGER,
        last_error  TEXT,
        finished_at BIGINT
      );
      CREATE INDEX webhook_events_state ON webhook_events (state, id);
      CREATE INDEX webhook_events_key ON webhook_events (webhook, order_key, id) WHERE state = 'pending';
      CREATE INDEX webhook_events_finished ON webhook_events (state, finished_at) WHERE state <> 'pending';
      `,
    },
    {
      version: 5,
      sql: `
      -- The audit log: what administrators did through the HTTP API, newest by id.
      CREATE TABLE audit_log (
        id         BIGSERIAL PRIMARY KEY,
        at         BIGINT NOT NULL,
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
