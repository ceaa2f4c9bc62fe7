/**
 * `npm run bench`: fan-out benchmarks against a real Herald process.
 *
 * Scenarios, all on one topic with 100-byte bodies: STOMP (N WebSocket
 * subscribers, 1 publisher over TCP) and MQTT (N QoS 0 subscribers over TCP,
 * 1 publisher). Each one measures
 *  1. fixed rate: publishes so that deliveries/s = RATE; reports p50/p99
 *     latency (publish to receive, same clock), lost messages, and the
 *     server's CPU time per delivery (from /proc/<pid>/stat), since on a
 *     small machine the load generator competes for the same cores;
 *  2. max: publishes as fast as the subscribers keep up (at most ~40
 *     messages outstanding) and reports deliveries/s.
 *
 * Then the STOMP scenario once more on a two-node cluster (PostgreSQL +
 * Redis): half the subscribers on each node, the publisher on the first, so
 * half of every message's deliveries cross the Redis bus. The services come
 * from HERALD_TEST_DATABASE_URL / HERALD_TEST_REDIS_URL, or are started
 * with scripts/test-services.sh; BENCH_CLUSTER=0 skips the scenario.
 *
 * Options (environment): BENCH_SUBSCRIBERS (1000), BENCH_RATE (10000
 * deliveries/s), BENCH_SECONDS (10), BENCH_BODY (100 bytes), BENCH_NODE_ARGS
 * (extra node flags for the server, e.g. --cpu-prof).
 */
import { execFileSync, execSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';

const N = Number(process.env['BENCH_SUBSCRIBERS'] ?? 1000);
const RATE = Number(process.env['BENCH_RATE'] ?? 10_000);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 10);
const BODY = Number(process.env['BENCH_BODY'] ?? 100);
const CLK_TCK = Number(execSync('getconf CLK_TCK').toString().trim()) || 100;

function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime + stime
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : 0;
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

interface BenchServer {
  pid: number;
  http: number;
  stomp: number;
  mqtt: number;
  stop(): Promise<void>;
}

async function startServer(extraEnv: Record<string, string> = {}): Promise<BenchServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'herald-bench-'));
  const nodeArgs = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, 'dist/cli.js', 'serve'], {
    env: {
      ...process.env,
      HERALD_HOST: '127.0.0.1',
      HERALD_HTTP_PORT: '0',
      HERALD_STOMP_PORT: '0',
      HERALD_MQTT_PORT: '0',
      HERALD_DATA_DIR: dataDir,
      HERALD_ADMIN_PASSWORD: 'bench-password',
      HERALD_LOG_LEVEL: 'warn',
      HERALD_LOG_PRETTY: 'false',
      HERALD_MAX_CONNECTIONS_PER_USER: '1000000',
      HERALD_PUBLISH_RATE_PER_SECOND: '0',
      HERALD_WS_MESSAGES_PER_SECOND: '0',
      HERALD_SQLITE_SYNCHRONOUS: 'NORMAL',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ports: Record<string, number> = {};
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      for (const m of buf.matchAll(/^listening (\w+) [\d.]+:(\d+)$/gm)) ports[m[1]!] = Number(m[2]);
      if (ports['http'] && ports['stomp'] && ports['mqtt']) resolve();
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return {
    pid: child.pid!,
    http: ports['http']!,
    stomp: ports['stomp']!,
    mqtt: ports['mqtt']!,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** What subscribers report back; a scenario's receive handlers update it. */
class Probe {
  received = 0;
  recording = false;
  latencies: number[] = [];

  /** A delivery arrived whose body starts with `<send time in µs>|`. */
  onBody(body: Buffer, start: number): void {
    this.received++;
    if (this.recording) this.latencies.push(nowUs() - Number(body.toString('latin1', start, body.indexOf(0x7c, start))));
  }
}

interface Figures {
  deliveries: number;
  lost: number;
  p50: number;
  p99: number;
  cpuUsPerDelivery: number;
  maxPerSecond: number;
  maxLost: number;
  maxCpuUs: number;
  maxSeconds: number;
}

/** Body of `BODY` bytes that starts with the send time. */
function stampedBody(): string {
  const stamp = String(nowUs()) + '|';
  return stamp + 'x'.repeat(Math.max(0, BODY - stamp.length));
}

/**
 * The measurement both scenarios share: warm-up, then a fixed rate of
 * RATE deliveries/s for SECONDS, then as fast as the subscribers keep up
 * (at most ~40 messages outstanding), with the server's CPU time for each.
 */
async function measure(probe: Probe, publish: () => void, pids: number[]): Promise<Figures> {
  const cpuSeconds = (): number => pids.reduce((sum, pid) => sum + cpuSecondsOf(pid), 0);
  const drain = async (expected: number): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (probe.received < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  };
  for (let i = 0; i < 20; i++) publish();
  await drain(20 * N);

  const publishRate = RATE / N;
  const total = Math.round(publishRate * SECONDS);
  probe.received = 0;
  probe.latencies = [];
  probe.recording = true;
  const cpu0 = cpuSeconds();
  const t0 = Date.now();
  for (let i = 0; i < total; i++) {
    const wait = t0 + (i * 1000) / publishRate - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    publish();
  }
  await drain(total * N);
  const cpu1 = cpuSeconds();
  probe.recording = false;
  const lat = probe.latencies.sort((a, b) => a - b);
  const pct = (p: number): number => (lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? NaN) / 1000;
  const fixedReceived = probe.received;

  probe.received = 0;
  const maxSeconds = Math.min(SECONDS, 5);
  const cpu2 = cpuSeconds();
  const t2 = Date.now();
  let sent = 0;
  while (Date.now() - t2 < maxSeconds * 1000) {
    for (let i = 0; i < 20; i++, sent++) publish();
    while (probe.received < (sent - 40) * N && Date.now() - t2 < maxSeconds * 1000 + 5000) await new Promise((r) => setImmediate(r));
  }
  await drain(sent * N);
  const elapsed = (Date.now() - t2) / 1000;
  const cpu3 = cpuSeconds();
  return {
    deliveries: fixedReceived,
    lost: total * N - fixedReceived,
    p50: pct(0.5),
    p99: pct(0.99),
    cpuUsPerDelivery: ((cpu1 - cpu0) * 1e6) / Math.max(1, fixedReceived),
    maxPerSecond: probe.received / elapsed,
    maxLost: sent * N - probe.received,
    maxCpuUs: ((cpu3 - cpu2) * 1e6) / Math.max(1, probe.received),
    maxSeconds,
  };
}

function report(title: string, f: Figures): void {
  console.log(`\n  ${title}`);
  console.log(`    fixed rate ${RATE} deliveries/s for ${SECONDS} s: deliveries ${f.deliveries}, lost ${f.lost}`);
  console.log(`      latency p50 ${f.p50.toFixed(2)} ms, p99 ${f.p99.toFixed(2)} ms; server CPU ${f.cpuUsPerDelivery.toFixed(2)} µs per delivery`);
  console.log(`    max rate for ${f.maxSeconds} s: ${Math.round(f.maxPerSecond)} deliveries/s, lost ${f.maxLost}, server CPU ${f.maxCpuUs.toFixed(2)} µs per delivery`);
}

/** N WebSocket STOMP subscribers on one topic (spread over the servers), one STOMP publisher over TCP on the first. */
async function stompFanout(servers: BenchServer[], token: string): Promise<Figures> {
  const server = servers[0]!;
  const probe = new Probe();
  const sockets: WebSocket[] = [];
  const LF2 = Buffer.from('\n\n');
  for (let i = 0; i < N; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${servers[i % servers.length]!.http}/v1/ws?__token=${token}`, ['v12.stomp']);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => ws.send('CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0'));
      ws.once('error', reject);
      ws.on('message', (data: Buffer) => {
        if (data[0] === 0x43 /* CONNECTED */) ws.send('SUBSCRIBE\nid:sub-0\ndestination:/topic/bench\nreceipt:ready\n\n\0');
        else if (data[0] === 0x52 /* RECEIPT */) resolve();
        else if (data[0] === 0x4d /* MESSAGE */) probe.onBody(data, data.indexOf(LF2) + 2);
      });
    });
    sockets.push(ws);
  }
  const pub = connect(server.stomp, '127.0.0.1');
  await new Promise<void>((r) => pub.once('connect', () => r()));
  pub.on('data', () => undefined);
  pub.write('CONNECT\naccept-version:1.2\nlogin:admin\npasscode:bench-password\nheart-beat:0,0\n\n\0');
  await new Promise((r) => setTimeout(r, 300));
  const figures = await measure(
    probe,
    () => pub.write(`SEND\ndestination:/topic/bench\ncontent-type:text/plain\n\n${stampedBody()}\0`),
    servers.map((x) => x.pid),
  );
  for (const ws of sockets) ws.terminate();
  pub.destroy();
  return figures;
}

/** N MQTT 3.1.1 QoS 0 subscribers over TCP, one MQTT publisher (raw mqtt-packet framing keeps the load generator cheap). */
async function mqttFanout(server: { mqtt: number; pid: number }, token: string): Promise<Figures> {
  const mqttPacket = (await import('mqtt-packet')).default;
  // A token as password: a password would cost one scrypt (~100 ms here) per connection.
  const connectPacket = (id: string) =>
    mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: id, clean: true, keepalive: 0, username: 'admin', password: Buffer.from(token) });
  const probe = new Probe();
  const sockets: import('node:net').Socket[] = [];
  for (let i = 0; i < N; i++) {
    const sock = connect(server.mqtt, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    await new Promise<void>((resolve) => {
      parser.on('packet', (p) => {
        if (p.cmd === 'connack') sock.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'bench/fanout', qos: 0 }] }));
        else if (p.cmd === 'suback') resolve();
        else if (p.cmd === 'publish') probe.onBody(p.payload as Buffer, 0);
      });
      sock.on('data', (d: Buffer) => parser.parse(d));
      sock.once('connect', () => sock.write(connectPacket('sub-' + i)));
    });
    sockets.push(sock);
  }
  const pub = connect(server.mqtt, '127.0.0.1');
  await new Promise<void>((r) => pub.once('connect', () => r()));
  pub.write(connectPacket('bench-publisher'));
  pub.on('data', () => undefined);
  await new Promise((r) => setTimeout(r, 300));
  const figures = await measure(
    probe,
    () => pub.write(mqttPacket.generate({ cmd: 'publish', topic: 'bench/fanout', payload: stampedBody(), qos: 0, dup: false, retain: false })),
    [server.pid],
  );
  for (const s of sockets) s.destroy();
  pub.destroy();
  return figures;
}

async function loginToken(server: BenchServer): Promise<string> {
  const login = (await (
    await fetch(`http://127.0.0.1:${server.http}/v1/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'bench-password' }),
    })
  ).json()) as { data: { authToken: string }[] };
  return login.data[0]!.authToken;
}

/** PostgreSQL and Redis for the two-node scenario: from the environment, or started here. */
async function clusterServices(): Promise<{ db: string; redis: string; stop(): void } | undefined> {
  let dbBase = process.env['HERALD_TEST_DATABASE_URL'];
  let redis = process.env['HERALD_TEST_REDIS_URL'];
  let dir: string | undefined;
  if (!dbBase || !redis) {
    dir = mkdtempSync(join(tmpdir(), 'herald-bench-services-'));
    try {
      const out = execFileSync('scripts/test-services.sh', ['start', dir], {
        env: { ...process.env, HERALD_TEST_PG_PORT: '55442', HERALD_TEST_REDIS_PORT: '56389' },
        stdio: ['ignore', 'pipe', 'ignore'],
      }).toString();
      dbBase = /HERALD_TEST_DATABASE_URL=(\S+)/.exec(out)?.[1];
      redis = /HERALD_TEST_REDIS_URL=(\S+)/.exec(out)?.[1];
    } catch (err) {
      console.log(`\n  two-node scenario skipped: could not start PostgreSQL and Redis (${(err as Error).message.split('\n')[0]})`);
      rmSync(dir, { recursive: true, force: true });
      return undefined;
    }
  }
  const name = 'herald_bench_' + randomBytes(4).toString('hex');
  const admin = new pg.Client({ connectionString: dbBase });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(dbBase!);
  url.pathname = '/' + name;
  return {
    db: url.toString(),
    redis: redis!,
    stop() {
      if (dir) {
        execFileSync('scripts/test-services.sh', ['stop', dir], { stdio: 'ignore' });
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

async function main(): Promise<void> {
  const server = await startServer();
  const token = await loginToken(server);

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  console.log(`\nHerald benchmark (${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpu}, Node ${process.version}), ${BODY}-byte bodies`);
  report(`STOMP fan-out: ${N} WebSocket STOMP subscribers on one topic, 1 TCP publisher`, await stompFanout([server], token));
  report(`MQTT fan-out: ${N} MQTT 3.1.1 QoS 0 subscribers over TCP on one topic, 1 MQTT publisher`, await mqttFanout(server, token));
  console.log(`\n  server RSS at the end: ${rssMiB(server.pid).toFixed(0)} MiB`);
  await server.stop();

  if (process.env['BENCH_CLUSTER'] === '0') return;
  const services = await clusterServices();
  if (!services) return;
  try {
    const env = { HERALD_DATABASE_URL: services.db, HERALD_REDIS_URL: services.redis, HERALD_CLUSTER_NAME: 'bench' + randomBytes(3).toString('hex') };
    const first = await startServer(env);
    const second = await startServer(env);
    try {
      const clusterToken = await loginToken(first);
      await new Promise((r) => setTimeout(r, 500)); // both nodes on the bus
      report(
        `Two-node cluster (PostgreSQL + Redis), STOMP fan-out: ${N} WebSocket subscribers, half on each node, 1 TCP publisher on the first (CPU: both nodes together)`,
        await stompFanout([first, second], clusterToken),
      );
      console.log(`\n  node RSS at the end: ${rssMiB(first.pid).toFixed(0)} MiB and ${rssMiB(second.pid).toFixed(0)} MiB`);
    } finally {
      await first.stop();
      await second.stop();
    }
  } finally {
    services.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
