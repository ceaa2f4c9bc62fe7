/**
 * PostgreSQL and Redis for the cluster tests. `.ci/run` starts both
 * (scripts/test-services.sh) and exports their URLs; without them the
 * cluster tests are skipped locally, and fail under CI=true, where they must run.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

/** The bin directory of Debian's PostgreSQL server package, or undefined. */
function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  for (const v of readdirSync(root).sort().reverse()) {
    if (existsSync(`${root}/${v}/bin/initdb`)) return `${root}/${v}/bin`;
  }
  return undefined;
}

/** `skip` for tests that run a PostgreSQL of their own (needs the server package, not a URL). */
export function postgresServerMissing(): string | false {
  if (postgresBin()) return false;
  const reason = 'needs the PostgreSQL server package (apt-get install postgresql; .ci/run installs it)';
  if (process.env.CI) throw new Error(`CI=true but ${reason}`);
  return reason;
}

export interface PrivatePostgres {
  url: string;
  port: number;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stops it and deletes its data. */
  destroy(): Promise<void>;
}

/**
 * A PostgreSQL of one test's own on a free loopback port, so the test can stop
 * and start it. Run as the package's `postgres` user when the tests run as root
 * (PostgreSQL refuses root). `initdb` happens on the first start.
 */
export async function privatePostgres(port?: number): Promise<PrivatePostgres> {
  const bin = postgresBin();
  if (!bin) throw new Error('no PostgreSQL server package');
  const p = port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'herald-pg-'));
  const root = process.getuid?.() === 0;
  const as = (cmd: string, args: string[]): [string, string[]] => (root ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]);
  if (root) {
    chmodSync(dir, 0o755);
    await run('chown', ['postgres', dir]);
  }
  const data = join(dir, 'data');
  let initialised = false;
  let running = false;
  const server = {
    url: `postgres://herald@127.0.0.1:${p}/postgres`,
    port: p,
    async start() {
      if (!initialised) {
        await run(...as(`${bin}/initdb`, ['-D', data, '-U', 'herald', '--auth=trust', '-E', 'UTF8']));
        initialised = true;
      }
      await run(
        ...as(`${bin}/pg_ctl`, ['-D', data, '-l', join(dir, 'log'), '-w', '-o', `-c listen_addresses=127.0.0.1 -c port=${p} -c unix_socket_directories=${dir} -c fsync=off`, 'start']),
      );
      running = true;
    },
    async stop() {
      if (!running) return;
      running = false;
      await run(...as(`${bin}/pg_ctl`, ['-D', data, '-m', 'fast', '-w', 'stop']));
    },
    async destroy() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve();
    });
  });
}
