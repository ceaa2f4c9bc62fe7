/**
 * Connections: BENCH_CONNECTIONS idle connections, each a whole login,
 * opened as fast as the server completes them (BENCH_CONNECT_CONCURRENCY
 * under way at once, over BENCH_CONNECT_WORKERS generator processes or more
 * when one process's open-file limit is too small), from several loopback
 * source addresses (127.0.0.2 …) so no address runs out of ephemeral ports.
 * Reports connects/s, the server's CPU µs per connect and RSS per
 * connection; then holds them BENCH_HOLD_SECONDS (60 s for 100,000 or
 * more) while asking /healthz (Herald) and an MQTT PINGREQ every 50 ms,
 * and reports their p99 and how many connections were lost meanwhile.
 */
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { PROTOCOL_LABEL, type Protocol } from '../gen/clients.js';
import { WorkerPool } from '../gen/pool.js';
import type { StormResult } from '../gen/storm.js';
import { quantile } from '../gen/tally.js';
import { cpuBetween, cpuSnapshot, verdict } from '../lib/cpu.js';
import type { Options } from '../lib/options.js';
import { ephemeralRange, nowUs, openFileLimit, rssBytesOf } from '../lib/proc.js';
import type { Measurement } from '../lib/results.js';
import { endpointOf, type Target } from '../lib/target.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One MQTT connection that answers "how long does a PINGREQ take now". */
async function pingProbe(target: Target): Promise<{ ping(): Promise<number>; close(): void }> {
  const socket = connect(target.mqttPort, '127.0.0.1');
  socket.setNoDelay(true);
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  let waiter: ((p: mqttPacket.Packet) => void) | undefined;
  parser.on('packet', (p: mqttPacket.Packet) => waiter?.(p));
  socket.on('data', (d: Buffer) => parser.parse(d));
  socket.on('error', () => undefined);
  const next = (): Promise<mqttPacket.Packet> => new Promise((r) => (waiter = r));
  const account = target.accounts[0]!;
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const connack = next();
  socket.write(
    mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: `bench-probe-${process.pid}`,
      clean: true,
      keepalive: 0,
      username: account.username,
      ...(account.password ? { password: Buffer.from(account.password) } : {}),
    }),
  );
  const ack = (await connack) as mqttPacket.IConnackPacket;
  if (ack.returnCode !== 0) throw new Error(`probe connection refused (CONNACK ${ack.returnCode})`);
  return {
    async ping() {
      const t0 = nowUs();
      const resp = next();
      socket.write(Buffer.from([0xc0, 0x00]));
      const p = await Promise.race([resp, sleep(10_000).then(() => undefined)]);
      if (p?.cmd !== 'pingresp') return NaN;
      return (nowUs() - t0) / 1000;
    },
    close: () => socket.destroy(),
  };
}

function healthz(port: number, agent: Agent): Promise<number> {
  const t0 = nowUs();
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz', agent, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? (nowUs() - t0) / 1000 : NaN));
    });
    req.on('error', () => resolve(NaN));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

export async function runConnections(target: Target, protocol: Protocol, o: Options): Promise<Measurement> {
  const n = o.connections;
  const title = `connections · ${PROTOCOL_LABEL[protocol]}: ${n.toLocaleString('en-US')} idle connections, each logged in, opened as fast as they are accepted`;
  const base = { scenario: 'connections' as const, wire: protocol, server: target.kind, serverLabel: target.label, title };
  const notes: string[] = [
    target.kind === 'herald'
      ? `login: a user's token from POST /v1/login, as the MQTT password or the STOMP CONNECT login header (${target.accounts.length} users, round-robin)`
      : `login: ${target.label.includes('anonymous') ? 'anonymous (allow_anonymous true), a user name and no password' : 'user name and password from a password file'}`,
  ];

  // Open files: the server needs one per connection, each generator process one per connection it holds.
  const serverLimit = openFileLimit(target.pid);
  if (serverLimit.soft < n + 256) {
    const text =
      `skipped: the server's open-file limit is ${serverLimit.soft} (hard ${serverLimit.hard}), too low for ${n} connections. ` +
      `Raise it before running (as root: \`ulimit -Hn ${n + 10_000}; ulimit -Sn ${n + 10_000}\` in the shell that runs the benchmark, ` +
      `LimitNOFILE= in a systemd unit, or --ulimit nofile=… for a container, whose own limit bounds even root); the benchmark starts every server with its soft limit raised to the hard one.`;
    return { ...base, figures: {}, notes: [text] };
  }
  const genLimit = openFileLimit('self').hard;
  const workers = Math.max(o.connectWorkers, Math.ceil(n / Math.max(1000, genLimit - 512)));
  if (workers > o.connectWorkers) notes.push(`${workers} generator processes: each may hold only ${genLimit} open files (\`ulimit -Hn\`)`);
  // Source ports: the ephemeral range (nobody binds those on purpose), split between the processes.
  const [lo, hi] = ephemeralRange();
  const perProcess = Math.floor((hi - lo + 1) / workers);
  const nAddresses = Math.max(4, Math.ceil(n / Math.floor((hi - lo + 1) * 0.8)));
  if (nAddresses > 250) throw new Error(`${n} connections need ${nAddresses} source addresses of ${hi - lo + 1} ports each; at most 250 are used`);
  const addresses = Array.from({ length: nAddresses }, (_, i) => `127.0.0.${i + 2}`);

  const probe = await pingProbe(target);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const pool = await WorkerPool.start(workers);
  try {
    await sleep(500);
    const rss0 = rssBytesOf(target.pid);
    const endpoint = endpointOf(target);
    const share = (i: number): number => Math.floor(n / workers) + (i < n % workers ? 1 : 0);
    const first = (i: number): number => Array.from({ length: i }, (_, j) => share(j)).reduce((a, b) => a + b, 0);
    const s0 = await cpuSnapshot([target.pid], pool);
    const results = await pool.all<StormResult>((i) => ({
      t: 'storm',
      spec: {
        protocol,
        endpoint,
        idPrefix: `bench-conn-${process.pid}-${i}`,
        firstIndex: first(i),
        count: share(i),
        concurrency: Math.max(1, Math.ceil(o.connectConcurrency / workers)),
        addresses,
        ports: [lo + i * perProcess, lo + (i + 1) * perProcess - 1],
      },
    }));
    const s1 = await cpuSnapshot([target.pid], pool);
    const opened = results.reduce((a, r) => a + r.opened, 0);
    const failed = results.reduce((a, r) => a + r.failed, 0);
    const seconds = (Math.max(...results.map((r) => r.endUs)) - Math.min(...results.map((r) => r.startUs))) / 1e6;
    const rssConnected = rssBytesOf(target.pid);
    for (const r of results) for (const e of r.errors) notes.push(`connect failed: ${e}`);
    const slow = results.reduce((a, r) => a + r.slow, 0);
    if (slow) notes.push(`${slow} connects took over 1 s (a SYN retransmit when the listen backlog overflowed, or the server stalled)`);

    // Hold: idle connections, while the server is asked how it is.
    const health: number[] = [];
    const pings: number[] = [];
    const h0 = await cpuSnapshot([target.pid], pool);
    const holdEnd = Date.now() + o.holdSeconds * 1000;
    while (Date.now() < holdEnd) {
      const tick = Date.now();
      if (target.httpPort) health.push(await healthz(target.httpPort, agent));
      pings.push(await probe.ping());
      await sleep(Math.max(0, 50 - (Date.now() - tick)));
    }
    const h1 = await cpuSnapshot([target.pid], pool);
    const held = await pool.all<{ alive: number; closed: number; reasons: string[] }>({ t: 'storm-held' });
    const rssHeld = rssBytesOf(target.pid);
    const closed = held.reduce((a, h) => a + h.closed, 0);
    for (const h of held) for (const r of h.reasons) notes.push(`closed while held: ${r}`);
    const failedProbes = health.filter(Number.isNaN).length + pings.filter(Number.isNaN).length;
    if (failedProbes) notes.push(`${failedProbes} /healthz or ping probes failed or timed out while the connections were held`);
    const sorted = (xs: number[]): Float64Array => Float64Array.from(xs.filter((x) => !Number.isNaN(x))).sort();
    const hs = sorted(health);
    const ps = sorted(pings);
    const cpu = cpuBetween(s0, s1);
    const hold = cpuBetween(h0, h1);
    const v = verdict(cpu, `${o.connectConcurrency} connects under way at once (BENCH_CONNECT_CONCURRENCY)`);
    return {
      ...base,
      figures: {
        connections: opened,
        failed,
        connectsPerSecond: opened / seconds,
        serverCpuUsPerConnect: (cpu.serverCpuSeconds * 1e6) / Math.max(1, opened),
        generatorCpuUsPerConnect: (cpu.generatorCpuSeconds * 1e6) / Math.max(1, opened),
        connectP50Ms: quantile(results.map((r) => r.connectP50Ms).sort((a, b) => a - b), 0.5),
        connectP99Ms: Math.max(...results.map((r) => r.connectP99Ms)),
        rssKiBPerConnection: (rssHeld - rss0) / 1024 / Math.max(1, opened),
        rssKiBPerConnectionAtConnect: (rssConnected - rss0) / 1024 / Math.max(1, opened),
        rssMiBHeld: rssHeld / 2 ** 20,
        holdSeconds: o.holdSeconds,
        closedDuringHold: closed,
        holdServerPercent: hold.serverPercent,
        ...(target.httpPort ? { healthzP50Ms: quantile(hs, 0.5), healthzP99Ms: quantile(hs, 0.99) } : {}),
        pingP50Ms: quantile(ps, 0.5),
        pingP99Ms: quantile(ps, 0.99),
        sourceAddresses: nAddresses,
        generatorProcesses: workers,
      },
      cpu,
      bound: v.bound,
      verdict: v.text,
      notes,
    };
  } finally {
    probe.close();
    agent.destroy();
    await pool.all({ t: 'storm-release' }).catch(() => undefined);
    await pool.stop();
  }
}
