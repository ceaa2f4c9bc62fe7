/**
 * PostgreSQL and Redis for the cluster tests. `.ci/run` starts both
 * (scripts/test-services.sh) and exports their URLs; without them the
 * cluster tests are skipped locally, and fail under CI=true, where they must run.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_URL = process.env.HERALD_TEST_DATABASE_URL;
export const REDIS_URL = process.env.HERALD_TEST_REDIS_URL;

/** `skip` option for describe/it: a reason, or false when the services are there. */
export function servicesMissing(...which: ('pg' | 'redis')[]): string | false {
  const missing = which.filter((w) => (w === 'pg' ? !PG_URL : !REDIS_URL));
  if (missing.length === 0) return false;
  const reason = `needs ${missing.join(' and ')}: run under .ci/run or eval "$(scripts/test-services.sh start DIR)"`;
  if (process.env.CI) throw new Error(`CI=true but ${reason}`);
  return reason;
}

/** A new, empty database on the test server; returns its URL. */
export async function freshDatabase(): Promise<string> {
  const name = 'herald_t_' + randomBytes(6).toString('hex');
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(PG_URL!);
  url.pathname = '/' + name;
  return url.toString();
}

/** A cluster name no other test shares, so Redis keys and channels never meet. */
export function freshClusterName(): string {
  return 'ht' + randomBytes(5).toString('hex');
}
