/**
 * `npm run bench`: fan-out benchmark against a real Herald process.
 *
 * Scenario "stomp-fanout": 1 publisher (STOMP over TCP), N subscribers
 * (STOMP over WebSocket, all on one topic), 100-byte bodies.
 *  1. fixed rate: publishes so that deliveries/s = RATE; reports p50/p99
 *     latency (publish to receive, same clock), lost messages, and the
 *     server's CPU time per delivery (from /proc/<pid>/stat), since on a
 *     small machine the load generator competes for the same cores.
 *  2. max: publishes as fast as the server keeps up (a receipt every 20
 *     messages bounds the backlog) and reports deliveries/s.
 *
 * Options (environment): BENCH_SUBSCRIBERS (1000), BENCH_RATE (10000
 * deliveries/s), BENCH_SECONDS (10), BENCH_BODY (100 bytes).
 */
import { spawn } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execSync } from 'node:child_process';
import { WebSocket } from 'ws';

const N = Number(process.env['BENCH_SUBSCRIBERS'] ?? 1000);
const RATE = Number(process.env['BENCH_RATE'] ?? 10_000);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 10);
const BODY = Number(process.env['BENCH_BODY'] ?? 100);
const CLK_TCK = Number(execSync('getconf CLK_TCK').toString().trim()) || 100;

function cpuSeconds(pid: number): number {
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

async function startServer(): Promise<{ pid: number; http: number; stomp: number; mqtt: number; stop(): Promise<void> }> {
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
      HERALD_SQLITE_SYNCHRONOUS: 'NORMAL',
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

interface Subscriber {
  ws: WebSocket;
}

async function main(): Promise<void> {
  const server = await startServer();
  const login = (await (
    await fetch(`http://127.0.0.1:${server.http}/v1/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'bench-password' }),
    })
  ).json()) as { data: { authToken: string }[] };
  const token = login.data[0]!.authToken;

  let received = 0;
  let latencies: number[] = [];
  let recording = false;
  const subs: Subscriber[] = [];
  const url = `ws://127.0.0.1:${server.http}/v1/ws?__token=${token}`;
  const LF2 = Buffer.from('\n\n');
  for (let i = 0; i < N; i++) {
    const ws = new WebSocket(url, ['v12.stomp']);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => ws.send('CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0'));
      ws.once('error', reject);
      ws.on('message', (data: Buffer) => {
        if (data[0] === 0x43 /* C */) {
          ws.send('SUBSCRIBE\nid:sub-0\ndestination:/topic/bench\nreceipt:ready\n\n\0');
          return;
        }
        if (data[0] === 0x52 /* R */) return resolve();
        if (data[0] !== 0x4d /* M */) return;
        received++;
        if (recording) {
          const start = data.indexOf(LF2) + 2;
          const end = data.indexOf(0x7c /* | */, start);
          latencies.push(nowUs() - Number(data.toString('latin1', start, end)));
        }
      });
    });
    subs.push({ ws });
  }

  const pub = connect(server.stomp, '127.0.0.1');
  await new Promise<void>((r) => pub.once('connect', () => r()));
  let receipts = 0;
  pub.on('data', (d: Buffer) => {
    for (let i = d.indexOf('RECEIPT'); i >= 0; i = d.indexOf('RECEIPT', i + 1)) receipts++;
  });
  pub.write('CONNECT\naccept-version:1.2\nlogin:admin\npasscode:bench-password\nheart-beat:0,0\n\n\0');
  await new Promise((r) => setTimeout(r, 300));
  const frame = (receipt?: string): string => {
    const stamp = String(nowUs()) + '|';
    const body = stamp + 'x'.repeat(Math.max(0, BODY - stamp.length));
    return `SEND\ndestination:/topic/bench\ncontent-type:text/plain\n${receipt ? `receipt:${receipt}\n` : ''}\n${body}\0`;
  };

  const drain = async (expected: number): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (received < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  };

  // Warm-up.
  for (let i = 0; i < 20; i++) pub.write(frame());
  await drain(20 * N);

  // 1. Fixed rate.
  const publishRate = RATE / N;
  const total = Math.round(publishRate * SECONDS);
  received = 0;
  latencies = [];
  recording = true;
  const cpu0 = cpuSeconds(server.pid);
  const t0 = Date.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / publishRate;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pub.write(frame());
  }
  await drain(total * N);
  const cpu1 = cpuSeconds(server.pid);
  recording = false;
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => (latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN) / 1000;
  const fixed = {
    deliveries: received,
    lost: total * N - received,
    p50: pct(0.5),
    p99: pct(0.99),
    cpuUsPerDelivery: ((cpu1 - cpu0) * 1e6) / Math.max(1, received),
  };

  // 2. As fast as it keeps up: at most ~40 messages outstanding.
  received = 0;
  receipts = 0;
  const maxSeconds = Math.min(SECONDS, 5);
  const cpu2 = cpuSeconds(server.pid);
  const t2 = Date.now();
  let sent = 0;
  while (Date.now() - t2 < maxSeconds * 1000) {
    for (let i = 0; i < 20; i++, sent++) pub.write(frame(i === 19 ? 'r' : undefined));
    while (sent - receipts * 20 > 40) await new Promise((r) => setImmediate(r));
    while (received < (sent - 40) * N && Date.now() - t2 < maxSeconds * 1000 + 5000) await new Promise((r) => setImmediate(r));
  }
  await drain(sent * N);
  const elapsed = (Date.now() - t2) / 1000;
  const cpu3 = cpuSeconds(server.pid);
  const max = {
    deliveriesPerSecond: received / elapsed,
    lost: sent * N - received,
    cpuUsPerDelivery: ((cpu3 - cpu2) * 1e6) / Math.max(1, received),
  };
  const rss = rssMiB(server.pid);

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  console.log(`\nHerald benchmark: stomp-fanout (${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpu}, Node ${process.version})`);
  console.log(`  ${N} WebSocket STOMP subscribers on one topic, 1 TCP publisher, ${BODY}-byte bodies`);
  console.log(`  fixed rate ${RATE} deliveries/s for ${SECONDS} s:`);
  console.log(`    deliveries ${fixed.deliveries}, lost ${fixed.lost}`);
  console.log(`    latency p50 ${fixed.p50.toFixed(2)} ms, p99 ${fixed.p99.toFixed(2)} ms`);
  console.log(`    server CPU ${fixed.cpuUsPerDelivery.toFixed(2)} µs per delivery`);
  console.log(`  max rate for ${maxSeconds} s:`);
  console.log(`    ${Math.round(max.deliveriesPerSecond)} deliveries/s, lost ${max.lost}, server CPU ${max.cpuUsPerDelivery.toFixed(2)} µs per delivery`);
  console.log(`  server RSS at the end: ${rss.toFixed(0)} MiB`);

  for (const s of subs) s.ws.terminate();
  pub.destroy();

  const mqttFixed = await mqttFanout(server, cpuSeconds);
  console.log(`\n  MQTT fan-out: ${N} MQTT 3.1.1 subscribers over TCP (QoS 0) on one topic, 1 MQTT publisher:`);
  console.log(`    fixed rate ${RATE} deliveries/s: deliveries ${mqttFixed.deliveries}, lost ${mqttFixed.lost}, p50 ${mqttFixed.p50.toFixed(2)} ms, p99 ${mqttFixed.p99.toFixed(2)} ms, server CPU ${mqttFixed.cpuUsPerDelivery.toFixed(2)} µs per delivery`);
  console.log(`    max rate: ${Math.round(mqttFixed.maxPerSecond)} deliveries/s, server CPU ${mqttFixed.maxCpuUs.toFixed(2)} µs per delivery`);
  await server.stop();
}

/** The same fan-out with MQTT clients (raw mqtt-packet framing, so the load generator stays cheap). */
async function mqttFanout(
  server: { mqtt: number; pid: number },
  cpu: (pid: number) => number,
): Promise<{ deliveries: number; lost: number; p50: number; p99: number; cpuUsPerDelivery: number; maxPerSecond: number; maxCpuUs: number }> {
  const mqttPacket = (await import('mqtt-packet')).default;
  const connectPacket = (id: string) =>
    mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: id, clean: true, keepalive: 0, username: 'admin', password: Buffer.from('bench-password') });
  let received = 0;
  let recording = false;
  let latencies: number[] = [];
  const sockets: import('node:net').Socket[] = [];
  for (let i = 0; i < N; i++) {
    const sock = connect(server.mqtt, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    await new Promise<void>((resolve) => {
      parser.on('packet', (p) => {
        if (p.cmd === 'connack') sock.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'bench/fanout', qos: 0 }] }));
        else if (p.cmd === 'suback') resolve();
        else if (p.cmd === 'publish') {
          received++;
          if (recording) {
            const body = p.payload as Buffer;
            latencies.push(nowUs() - Number(body.toString('latin1', 0, body.indexOf(0x7c))));
          }
        }
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
  const publish = (): void => {
    const stamp = String(nowUs()) + '|';
    pub.write(mqttPacket.generate({ cmd: 'publish', topic: 'bench/fanout', payload: stamp + 'x'.repeat(Math.max(0, BODY - stamp.length)), qos: 0, dup: false, retain: false }));
  };
  const drain = async (expected: number): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (received < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  };
  for (let i = 0; i < 20; i++) publish();
  await drain(20 * N);

  const publishRate = RATE / N;
  const total = Math.round(publishRate * SECONDS);
  received = 0;
  latencies = [];
  recording = true;
  const c0 = cpu(server.pid);
  const t0 = Date.now();
  for (let i = 0; i < total; i++) {
    const wait = t0 + (i * 1000) / publishRate - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    publish();
  }
  await drain(total * N);
  const c1 = cpu(server.pid);
  recording = false;
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => (latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN) / 1000;
  const fixed = { deliveries: received, lost: total * N - received, p50: pct(0.5), p99: pct(0.99), cpuUsPerDelivery: ((c1 - c0) * 1e6) / Math.max(1, received) };

  // As fast as the subscribers keep up (at most ~40 messages outstanding).
  received = 0;
  let sent = 0;
  const c2 = cpu(server.pid);
  const t2 = Date.now();
  const seconds = Math.min(SECONDS, 5);
  while (Date.now() - t2 < seconds * 1000) {
    for (let i = 0; i < 20; i++, sent++) publish();
    while (received < (sent - 40) * N && Date.now() - t2 < seconds * 1000 + 5000) await new Promise((r) => setImmediate(r));
  }
  await drain(sent * N);
  const elapsed = (Date.now() - t2) / 1000;
  const c3 = cpu(server.pid);
  for (const s of sockets) s.destroy();
  pub.destroy();
  return { ...fixed, maxPerSecond: received / elapsed, maxCpuUs: ((c3 - c2) * 1e6) / Math.max(1, received) };
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
