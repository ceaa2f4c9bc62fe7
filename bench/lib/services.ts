/**
 * PostgreSQL and Redis for the cluster fan-out and the PostgreSQL
 * durable-send: from HERALD_TEST_DATABASE_URL / HERALD_TEST_REDIS_URL, or
 * started (and later stopped) through scripts/test-services.sh. Each
 * scenario gets a fresh database.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface Services {
  redis: string;
  /** A new, empty database; its URL. */
  newDatabase(): Promise<string>;
  /** "fsync on, synchronous_commit on" — how durable a commit is on this server. */
  durability(): Promise<string>;
  /** Where they came from, for the output. */
  origin: string;
  stop(): void;
}

let started: Services | undefined;

/** The services, started once per benchmark process; undefined (and says why) when they cannot be had. */
export async function services(): Promise<Services | undefined> {
  if (started) return started;
  let dbBase = process.env['HERALD_TEST_DATABASE_URL'];
  let redis = process.env['HERALD_TEST_REDIS_URL'];
  let dir: string | undefined;
  let origin = 'HERALD_TEST_DATABASE_URL / HERALD_TEST_REDIS_URL';
  if (!dbBase || !redis) {
    dir = mkdtempSync(join(tmpdir(), 'herald-bench-services-'));
    try {
      const out = execFileSync('scripts/test-services.sh', ['start', dir], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
      dbBase = /HERALD_TEST_DATABASE_URL=(\S+)/.exec(out)?.[1];
      redis = /HERALD_TEST_REDIS_URL=(\S+)/.exec(out)?.[1];
      if (!dbBase || !redis) throw new Error('scripts/test-services.sh printed no URLs');
      origin = 'scripts/test-services.sh (fsync=off)';
    } catch (err) {
      console.log(`\n  PostgreSQL and Redis unavailable, their scenarios are skipped: ${(err as Error).message.split('\n')[0]}`);
      rmSync(dir, { recursive: true, force: true });
      return undefined;
    }
  }
  const base = dbBase;
  const stopDir = dir;
  started = {
    redis,
    origin,
    async newDatabase() {
      const name = 'herald_bench_' + randomBytes(4).toString('hex');
      const admin = new pg.Client({ connectionString: base });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.end();
      const url = new URL(base);
      url.pathname = '/' + name;
      return url.toString();
    },
    async durability() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      const fsync = (await c.query<{ fsync: string }>('SHOW fsync')).rows[0]?.fsync;
      const sync = (await c.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]?.synchronous_commit;
      const version = (await c.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version;
      await c.end();
      return `PostgreSQL ${version}, fsync ${fsync}, synchronous_commit ${sync}`;
    },
    stop() {
      if (stopDir) {
        try {
          execFileSync('scripts/test-services.sh', ['stop', stopDir], { stdio: 'ignore' });
        } finally {
          rmSync(stopDir, { recursive: true, force: true });
        }
      }
      started = undefined;
    },
  };
  return started;
}

/** Stops the services if this process started them (and only then). */
export function stopServices(): void {
  started?.stop();
}
