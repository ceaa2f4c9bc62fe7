/**
 * PostgreSQL Store on `pg` (pooled), for cluster mode: every node shares one
 * database. Same contracts and test suites as SQLite. Each call is one
 * statement or one transaction, committed (and so durable, with the default
 * synchronous_commit) before its promise resolves.
 *
 * Claims (queue messages, persistent MQTT sessions) use row locks with
 * SKIP LOCKED, so concurrent nodes never take the same row.
 *
 * This file holds the pool's lifecycle and the migrations; the connection
 * machinery is pool.ts and the domains live beside it (users.ts,
 * messages.ts, threads.ts, mqtt.ts, queues.ts); see ../store.ts for how
 * they compose.
 */
import type pg from 'pg';
import { postgresAudit } from './audit.js';
import { domainsOf } from '../compose.js';
import { postgresInspect } from './inspect.js';
import { pendingMigrations } from '../migration.js';
import type { Store } from '../store.js';
import { postgresMessages } from './messages.js';
import { POSTGRES_MIGRATIONS } from './migrations.js';
import { postgresMqtt } from './mqtt.js';
import { openPool, pgHandle, unavailable, type PgHandle, type PoolOptions } from './pool.js';
import { postgresLeases } from './leases.js';
import { postgresQueues } from './queues.js';
import { postgresThreads } from './threads.js';
import { postgresUsers } from './users.js';
import { postgresWebhooks } from './webhooks.js';

export type PostgresStoreOptions = PoolOptions;

/** Held while migrating, so that nodes starting together migrate one at a time. */
const MIGRATION_LOCK = 7347021;

export class PostgresStore extends domainsOf(postgresUsers, postgresMessages, postgresThreads, postgresMqtt, postgresQueues, postgresLeases, postgresWebhooks, postgresAudit, postgresInspect) implements Store {
  readonly kind = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly handle: PgHandle;
  private closed = false;

  private constructor(pool: pg.Pool) {
    const handle = pgHandle(pool);
    super(handle);
    this.pool = pool;
    this.handle = handle;
  }

  /** Connects, runs pending migrations (one node at a time), and returns the store. */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const pool = openPool(options);
    const store = new PostgresStore(pool);
    try {
      await migrate(pool);
    } catch (err) {
      await pool.end();
      throw unavailable(err);
    }
    return store;
  }

  async ping(): Promise<void> {
    await this.handle.direct.query('SELECT 1');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  const onError = (): void => undefined; // the next statement fails and says why
  client.on('error', onError);
  try {
    await client.query(`SELECT pg_advisory_lock(${MIGRATION_LOCK})`);
    await client.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    const current = Number((await client.query<{ v: number }>('SELECT COALESCE(MAX(version), 0) AS v FROM schema_version')).rows[0]!.v);
    for (const m of pendingMigrations(POSTGRES_MIGRATIONS, current)) {
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_version (version) VALUES ($1)', [m.version]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
    }
  } finally {
    await client.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`).catch(() => undefined);
    client.off('error', onError);
    client.release();
  }
}
