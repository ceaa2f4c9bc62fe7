/** Starts a real Herald in this process on port 0 with a temporary data directory. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { Clock } from '../../src/clock.js';
import { loadConfig, type ConfigInput } from '../../src/config.js';
import { HeraldServer } from '../../src/server.js';

export const ADMIN_PASSWORD = 'admin-secret-pw';

export interface TestServer {
  server: HeraldServer;
  url: string;
  dataDir: string;
  lines: string[];
  stop(): Promise<void>;
}

export function tempDir(prefix = 'herald-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startServer(overrides: ConfigInput = {}, clock?: Clock, dataDir = tempDir(), log?: Logger): Promise<TestServer> {
  const config = loadConfig({
    env: {},
    cwd: dataDir,
    overrides: {
      host: '127.0.0.1',
      httpPort: 0,
      stompPort: 0,
      mqttPort: 0,
      dataDir,
      adminPassword: ADMIN_PASSWORD,
      sqliteSynchronous: 'NORMAL',
      logLevel: 'silent',
      // stop() is the fast shutdown unless a test asks for the lame-duck drain.
      drainReadySeconds: 0,
      drainSeconds: 0,
      ...overrides,
    },
  });
  const lines: string[] = [];
  const server = await HeraldServer.start({
    config,
    ...(clock ? { clock } : {}),
    log: log ?? pino({ level: process.env['HERALD_TEST_LOG'] ?? 'silent' }),
    announce: (l) => lines.push(l),
  });
  return {
    server,
    url: server.httpUrl,
    dataDir,
    lines,
    async stop() {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ApiAnswer<T = unknown> {
  status: number;
  headers: Headers;
  body: { code: number; message: string; data: T };
}

/** One HTTP call; `body` is JSON-encoded unless it is already a string. */
export async function api<T = unknown>(
  base: string,
  method: string,
  path: string,
  opts: { body?: unknown; token?: string; headers?: Record<string, string> } = {},
): Promise<ApiAnswer<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers['x-auth-token'] = opts.token;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let parsed: ApiAnswer<T>['body'];
  try {
    parsed = JSON.parse(text) as ApiAnswer<T>['body'];
  } catch {
    throw new Error(`${method} ${path} answered ${res.status} with non-JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

export async function login(base: string, username = 'admin', password = ADMIN_PASSWORD): Promise<string> {
  const r = await api<{ authToken: string }[]>(base, 'POST', '/v1/login', { body: { username, password } });
  if (r.status !== 200) throw new Error(`login failed: ${r.status} ${r.body.message}`);
  return r.body.data[0]!.authToken;
}
