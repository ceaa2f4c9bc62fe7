/**
 * Starts a real Herald process (dist/cli.js) on loopback with port 0, reads
 * its ports from the `listening …` lines, creates the benchmark's users and
 * logs each in once (POST /v1/login, as the seeds' clients do), and stops it
 * by its PID.
 *
 * The server runs with the per-connection limits that would otherwise
 * measure themselves (publish rate, WebSocket message rate, connections per
 * user, connections before authentication) lifted, token idle time long
 * enough for a long run, and drain windows at 0 so it stops at once.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RAISE_NOFILE } from './proc.js';
import type { Account, Target } from './target.js';
import { stopProcess } from './stop.js';

export const ADMIN_PASSWORD = 'bench-password';

export interface HeraldOptions {
  /** Extra environment (HERALD_* keys) over the benchmark's defaults. */
  env?: Record<string, string>;
  /** How many users to create and log in (the accounts); 0 = only admin. */
  users: number;
}

export async function startHerald(opts: HeraldOptions): Promise<Target> {
  const dataDir = mkdtempSync(join(tmpdir(), 'herald-bench-'));
  const nodeArgs = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
  // Through sh so the open-file soft limit is raised to the hard one; `exec` keeps the PID Node's.
  const child = spawn('/bin/sh', ['-c', RAISE_NOFILE, process.execPath, ...nodeArgs, 'dist/cli.js', 'serve'], {
    env: {
      ...process.env,
      HERALD_HOST: '127.0.0.1',
      HERALD_HTTP_PORT: '0',
      HERALD_STOMP_PORT: '0',
      HERALD_MQTT_PORT: '0',
      HERALD_DATA_DIR: dataDir,
      HERALD_ADMIN_PASSWORD: ADMIN_PASSWORD,
      HERALD_LOG_LEVEL: 'warn',
      HERALD_LOG_PRETTY: 'false',
      HERALD_MAX_CONNECTIONS_PER_USER: '10000000',
      HERALD_PUBLISH_RATE_PER_SECOND: '0',
      HERALD_WS_MESSAGES_PER_SECOND: '0',
      HERALD_SQLITE_SYNCHRONOUS: 'NORMAL',
      HERALD_DRAIN_READY_SECONDS: '0',
      HERALD_DRAIN_SECONDS: '0',
      HERALD_TOKEN_IDLE_SECONDS: '86400',
      HERALD_MAX_UNAUTHENTICATED_PER_ADDRESS: '10000000',
      HERALD_MAX_UNAUTHENTICATED_CONNECTIONS: '10000000',
      HERALD_MESSAGE_MAX_PER_USER: '100000000',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const pid = child.pid!;
  const ports: Record<string, number> = {};
  try {
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error('Herald did not print its listening lines within 60 s')), 60_000);
      child.stdout!.on('data', (c: Buffer) => {
        buf += c.toString();
        for (const m of buf.matchAll(/^listening (\w+) [\d.]+:(\d+)$/gm)) ports[m[1]!] = Number(m[2]);
        if (ports['http'] && ports['stomp'] && ports['mqtt']) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`Herald exited with ${code} before listening (is dist/ built? run npm run build)`));
      });
    });
  } catch (err) {
    await stopProcess(child);
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const base = `http://127.0.0.1:${ports['http']}`;
  const stop = async (): Promise<void> => {
    await stopProcess(child);
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const adminToken = await login(base, 'admin', ADMIN_PASSWORD);
    const accounts = await createAccounts(base, adminToken, opts.users);
    return {
      kind: 'herald',
      label: `Herald ${await version()}`,
      pid,
      mqttPort: ports['mqtt']!,
      httpPort: ports['http']!,
      stompPort: ports['stomp']!,
      accounts: accounts.length ? accounts : [{ username: 'admin', password: adminToken }],
      adminToken,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return (JSON.parse(await readFile('package.json', 'utf8')) as { version: string }).version;
}

export async function api<T>(base: string, method: string, path: string, token: string | undefined, body?: unknown): Promise<T> {
  const res = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { 'x-auth-token': token } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as { code: number; message: string; data: T };
  if (res.status !== 200) throw new Error(`${method} ${path} answered ${res.status}: ${json.message}`);
  return json.data;
}

export async function login(base: string, username: string, password: string): Promise<string> {
  const data = await api<{ authToken: string }[]>(base, 'POST', '/v1/login', undefined, { username, password });
  return data[0]!.authToken;
}

/** Users bench-1 … bench-n, each logged in once; their tokens are the passwords the generator presents. */
async function createAccounts(base: string, adminToken: string, n: number): Promise<Account[]> {
  const accounts: Account[] = new Array<Account>(n);
  let next = 0;
  // Each creation and login is one scrypt on the server (~100 ms here): four at a time.
  const lane = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) {
      const username = `bench-${i + 1}`;
      const password = `${username}-password`;
      await api(base, 'POST', '/api/users', adminToken, { name: username, password, role: 'user' });
      accounts[i] = { username, password: await login(base, username, password) };
    }
  };
  await Promise.all([lane(), lane(), lane(), lane()]);
  return accounts;
}
