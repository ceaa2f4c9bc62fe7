/**
 * The fault-test harness (issue 12, "cluster under faults"): a PostgreSQL and
 * a Redis of the test's own, which it can stop and start again, and three
 * Herald nodes, each the real CLI in a process of its own, which it can kill
 * with SIGKILL and restart under the same name.
 *
 * Every node exit the test did not cause is recorded in `unexpectedExits`
 * (each scenario asserts it is empty). The clients, the ledger that counts
 * what was acknowledged against what arrived, and the report live in
 * fault-clients.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { runHerald, type HeraldProcess } from './process.js';
import { ADMIN_PASSWORD, api, login } from './server.js';
import { freePort, postgresServerMissing, privatePostgres, type PrivatePostgres } from './services.js';
import { randomBytes } from 'node:crypto';

export { ADMIN_PASSWORD };

/** `skip` for the fault tests: they need the PostgreSQL server package and redis-server (under CI=true: fail instead). */
export function faultServicesMissing(): string | false {
  const pg = postgresServerMissing();
  if (pg) return pg;
  const onPath = (process.env['PATH'] ?? '').split(':').some((d) => d && existsSync(join(d, 'redis-server')));
  if (onPath) return false;
  const reason = 'needs redis-server on PATH (apt-get install redis-server)';
  if (process.env['CI']) throw new Error(`CI=true but ${reason}`);
  return reason;
}

export async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface FaultNode {
  name: string;
  /** 1 for the first process under this name, then 2, 3… for each restart. */
  incarnation: number;
  proc: HeraldProcess;
  pid: number;
  dir: string;
  http: string;
  httpPort: number;
  stompPort: number;
  mqttPort: number;
}

export interface NodeExit {
  name: string;
  incarnation: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  at: string;
  stderrTail: string;
  logTail: string[];
}

export interface FaultClusterOptions {
  names?: string[];
  /** presenceTtlSeconds of every node (3 keeps the tests fast). */
  ttl?: number;
  /** More HERALD_* settings for every node. */
  env?: Record<string, string>;
}

/** Every child this process started, so that a crash of the test runner still kills them. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

export class FaultCluster {
  readonly unexpectedExits: NodeExit[] = [];
  /** Every stdout line of every node, all incarnations, as `[b#2] {json}`; per node name. */
  readonly logs = new Map<string, string[]>();
  readonly redisUrl: string;
  readonly clusterName = 'hf' + randomBytes(5).toString('hex');
  private readonly nodes = new Map<string, FaultNode>();
  private readonly expected = new Set<number>();
  private readonly dirs: string[] = [];
  private redis: ChildProcess | undefined;
  private stopping = false;
  private readonly incarnations = new Map<string, number>();

  private constructor(
    readonly pg: PrivatePostgres,
    readonly redisPort: number,
    readonly ttl: number,
    private readonly env: Record<string, string>,
    readonly names: string[],
  ) {
    this.redisUrl = `redis://127.0.0.1:${redisPort}`;
  }

  /** PostgreSQL, Redis, then the nodes: the first alone (it creates the schema and admin), the others together. */
  static async start(opts: FaultClusterOptions = {}): Promise<FaultCluster> {
    const pg = await privatePostgres();
    const c = new FaultCluster(pg, await freePort(), opts.ttl ?? 3, opts.env ?? {}, opts.names ?? ['a', 'b', 'c']);
    try {
      await pg.start();
      await c.startRedis();
      const [first, ...rest] = c.names;
      await c.spawnNode(first!);
      await Promise.all(rest.map((n) => c.spawnNode(n)));
      await c.waitReady();
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  node(name: string): FaultNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }
  url(name: string): string {
    return this.node(name).http;
  }
  mqttUrl(name: string): string {
    return `mqtt://127.0.0.1:${this.node(name).mqttPort}`;
  }
  wsUrl(name: string, path: string): string {
    return this.node(name).http.replace(/^http/, 'ws') + path;
  }
  alive(name: string): boolean {
    const n = this.nodes.get(name);
    return !!n && n.proc.child.exitCode === null && n.proc.child.signalCode === null;
  }

  // ---- nodes ----

  private async spawnNode(name: string, wait = true): Promise<FaultNode> {
    const incarnation = (this.incarnations.get(name) ?? 0) + 1;
    this.incarnations.set(name, incarnation);
    const dir = mkdtempSync(join(tmpdir(), `herald-fault-${name}-`));
    this.dirs.push(dir);
    const proc = runHerald(['serve'], {
      HERALD_DATABASE_URL: this.pg.url,
      HERALD_REDIS_URL: this.redisUrl,
      HERALD_NODE_NAME: name,
      HERALD_CLUSTER_NAME: this.clusterName,
      HERALD_PRESENCE_TTL_SECONDS: String(this.ttl),
      HERALD_HOST: '127.0.0.1',
      HERALD_HTTP_PORT: '0',
      HERALD_STOMP_PORT: '0',
      HERALD_MQTT_PORT: '0',
      HERALD_DATA_DIR: dir,
      HERALD_ADMIN_PASSWORD: ADMIN_PASSWORD,
      HERALD_LOG_LEVEL: 'info',
      ...this.env,
    });
    children.add(proc.child);
    const pid = proc.child.pid!;
    const lines = this.logs.get(name) ?? [];
    this.logs.set(name, lines);
    let partial = '';
    proc.child.stdout!.on('data', (chunk: string) => {
      partial += chunk;
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const l of parts) lines.push(`[${name}#${incarnation}] ${l}`);
    });
    proc.child.stderr!.on('data', (chunk: string) => lines.push(`[${name}#${incarnation} stderr] ${chunk.trimEnd()}`));
    void proc.exited.then(({ code, signal }) => {
      children.delete(proc.child);
      if (this.expected.has(pid) || this.stopping) return;
      this.unexpectedExits.push({
        name,
        incarnation,
        pid,
        code,
        signal,
        at: new Date().toISOString(),
        stderrTail: proc.stderr.slice(-2000),
        logTail: lines.filter((l) => l.startsWith(`[${name}#${incarnation}`)).slice(-20),
      });
    });
    const node: FaultNode = { name, incarnation, proc, pid, dir, http: '', httpPort: 0, stompPort: 0, mqttPort: 0 };
    this.nodes.set(name, node);
    if (wait) await this.listening(name);
    return node;
  }

  /** Waits for the node's `listening …` lines and fills in its ports. */
  async listening(name: string, timeoutMs = 60_000): Promise<FaultNode> {
    const node = this.node(name);
    const port = async (what: string): Promise<number> => Number((await node.proc.waitFor(new RegExp(`^listening ${what} \\S+:(\\d+)$`), timeoutMs))[1]);
    node.httpPort = await port('http');
    node.stompPort = await port('stomp');
    node.mqttPort = await port('mqtt');
    node.http = `http://127.0.0.1:${node.httpPort}`;
    return node;
  }

  /** Every running node answers /readyz 200 and counts `expect` live nodes (default: all running ones). */
  async waitReady(timeoutMs = 30_000, expect?: number): Promise<void> {
    const running = [...this.nodes.values()].filter((n) => this.alive(n.name));
    const want = expect ?? running.length;
    await until(
      async () => {
        for (const n of running) {
          if (!n.http) return false;
          try {
            if ((await fetch(n.http + '/readyz')).status !== 200) return false;
            const text = await (await fetch(n.http + '/metrics')).text();
            const m = /^herald_cluster_nodes (\d+)$/m.exec(text);
            if (!m || Number(m[1]) !== want) return false;
          } catch {
            return false;
          }
        }
        return true;
      },
      `${running.map((n) => n.name).join(',')} ready and seeing ${want} live nodes`,
      timeoutMs,
      200,
    );
  }

  /** SIGKILL; resolves once the process is gone. The exit is not counted as unexpected. */
  async kill9(name: string): Promise<number> {
    const node = this.node(name);
    this.expected.add(node.pid);
    node.proc.child.kill('SIGKILL');
    await node.proc.exited;
    return Date.now();
  }

  /** A new process under the same name (new ports). `wait: false` returns as soon as it is spawned. */
  async restart(name: string, opts: { wait?: boolean } = {}): Promise<FaultNode> {
    if (this.alive(name)) throw new Error(`node ${name} is still running; kill9 it first`);
    return this.spawnNode(name, opts.wait ?? true);
  }

  // ---- PostgreSQL ----

  async stopPg(): Promise<void> {
    await this.pg.stop();
  }
  async startPg(): Promise<void> {
    await this.pg.start();
  }

  // ---- Redis ----

  async startRedis(): Promise<void> {
    if (this.redis) return;
    const child = spawn('redis-server', ['--port', String(this.redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    children.add(child);
    void new Promise((r) => child.once('exit', r)).then(() => children.delete(child));
    this.redis = child;
    await until(
      () =>
        new Promise<boolean>((resolve) => {
          const s = createConnection(this.redisPort, '127.0.0.1');
          s.once('connect', () => (s.destroy(), resolve(true)));
          s.once('error', () => resolve(false));
        }),
      'redis-server to listen',
      10_000,
      25,
    );
  }

  async stopRedis(): Promise<void> {
    const child = this.redis;
    if (!child) return;
    this.redis = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
  }

  /** Stops Redis, waits `downMs`, starts it again empty on the same port. */
  async restartRedis(downMs: number): Promise<void> {
    await this.stopRedis();
    await sleep(downMs);
    await this.startRedis();
  }

  /**
   * Keeps Redis busy, as a loaded Redis is: a client runs a Lua loop that
   * blocks the server for a few milliseconds, again and again, so commands of
   * several clients pile up and are served together. Resolves `stop()` with
   * how many blocks ran and how long they took on average.
   */
  busyRedis(iterations = 300_000): { stop(): Promise<{ blocks: number; meanBlockMs: number }> } {
    const client = new Redis(this.redisUrl, { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    let stopped = false;
    let blocks = 0;
    let total = 0;
    const loop = (async () => {
      while (!stopped) {
        const t0 = performance.now();
        try {
          await client.eval(`local i = 0 while i < ${iterations} do i = i + 1 end return i`, 0);
        } catch {
          await sleep(50);
          continue;
        }
        total += performance.now() - t0;
        blocks++;
      }
    })();
    return {
      async stop() {
        stopped = true;
        await loop;
        client.disconnect();
        return { blocks, meanBlockMs: blocks ? Math.round((total / blocks) * 10) / 10 : 0 };
      },
    };
  }

  // ---- users and tokens ----

  async login(name = this.names[0]!, user = 'admin', password = ADMIN_PASSWORD): Promise<string> {
    return login(this.url(name), user, password);
  }

  async addUser(adminToken: string, userName: string, role: 'user' | 'service' | 'admin' = 'user', on = this.names[0]!): Promise<{ id: string; name: string; password: string; token: string }> {
    const password = userName + '-password';
    const r = await api<{ id: string }>(this.url(on), 'POST', '/api/users', { token: adminToken, body: { name: userName, password, role } });
    if (r.status !== 200) throw new Error(`adding user ${userName}: ${r.status} ${r.body.message}`);
    return { id: r.body.data.id, name: userName, password, token: await login(this.url(on), userName, password) };
  }

  // ---- logs ----

  /** Log lines of a node (all incarnations) at or above a pino level (40 warn, 50 error), optionally matching `re`. */
  logLines(name: string, minLevel = 40, re?: RegExp): string[] {
    return (this.logs.get(name) ?? []).filter((l) => {
      if (l.includes(' stderr] ')) return true;
      const m = /"level":(\d+)/.exec(l);
      if (!m || Number(m[1]) < minLevel) return false;
      return !re || re.test(l);
    });
  }

  /** Warn and error lines of every node, for a failure report. */
  problems(max = 40): string[] {
    return this.names.flatMap((n) => this.logLines(n).slice(-max));
  }

  /** When HERALD_FAULT_LOG_DIR is set, writes every node's log there as `{label}-{node}.log`. */
  saveLogs(label: string): void {
    const dir = process.env['HERALD_FAULT_LOG_DIR'];
    if (!dir) return;
    mkdirSync(dir, { recursive: true });
    for (const [name, lines] of this.logs) writeFileSync(join(dir, `${label}-${name}.log`), lines.join('\n') + '\n');
  }

  /** Kills every node, Redis and PostgreSQL this cluster started, and deletes their data. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const n of this.nodes.values()) {
      if (this.alive(n.name)) {
        n.proc.child.kill('SIGKILL');
        await n.proc.exited;
      }
    }
    await this.stopRedis();
    await this.pg.destroy().catch(() => undefined);
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }
}
