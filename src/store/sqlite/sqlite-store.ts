/**
 * SQLite Store on better-sqlite3: the connection, its pragmas and
 * migrations. The domains live beside it (users.ts, messages.ts,
 * threads.ts, mqtt.ts, queues.ts); see ../store.ts for how they compose.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { sqliteAudit } from './audit.js';
import { domainsOf } from '../compose.js';
import { sqliteInspect } from './inspect.js';
import { pendingMigrations } from '../migration.js';
import type { Store } from '../store.js';
import { sqliteMessages } from './messages.js';
import { SQLITE_MIGRATIONS } from './migrations.js';
import { sqliteMqtt } from './mqtt.js';
import { sqliteLeases } from './leases.js';
import { sqliteQueues } from './queues.js';
import { sqliteThreads } from './threads.js';
import { sqliteUsers } from './users.js';
import { sqliteWebhooks } from './webhooks.js';
import { groupCommitOf } from './group-commit.js';

export interface SqliteStoreOptions {
  /** Directory holding herald.db; ':memory:' for a throw-away database. */
  dataDir: string;
  synchronous?: 'FULL' | 'NORMAL';
  /** Largest the database may grow, in MiB (0 or absent: no limit). */
  maxSizeMb?: number;
}

/**
 * SQLite Store on better-sqlite3. Calls are synchronous underneath (one
 * connection, WAL), so each promise resolves after the commit, which with
 * synchronous=FULL is also after the fsync.
 */
export class SqliteStore extends domainsOf(sqliteUsers, sqliteMessages, sqliteThreads, sqliteMqtt, sqliteQueues, sqliteLeases, sqliteWebhooks, sqliteAudit, sqliteInspect) implements Store {
  readonly kind = 'sqlite' as const;
  private readonly db: Database.Database;

  constructor(options: SqliteStoreOptions) {
    const db = openDatabase(options);
    super(db);
    this.db = db;
  }

  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (!this.db.open) return;
    groupCommitOf(this.db).flush();
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }
}

/** Opens (creating if need be) and migrates the database, ready for the domains to prepare their statements. */
function openDatabase(options: SqliteStoreOptions): Database.Database {
  let file = ':memory:';
  if (options.dataDir !== ':memory:') {
    mkdirSync(options.dataDir, { recursive: true });
    file = join(options.dataDir, 'herald.db');
  }
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  if (options.maxSizeMb) {
    // Per connection, not stored in the file; SQLite keeps it at least the current size.
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.pragma(`max_page_count = ${Math.max(1, Math.floor((options.maxSizeMb * 1024 * 1024) / pageSize))}`);
  }
  return db;
}

function migrate(db: Database.Database): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
  const row = db.prepare<[], { v: number | null }>('SELECT MAX(version) AS v FROM schema_version').get();
  for (const m of pendingMigrations(SQLITE_MIGRATIONS, row?.v ?? 0)) {
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(m.version);
    })();
  }
}
