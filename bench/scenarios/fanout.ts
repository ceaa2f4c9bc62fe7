/**
 * fan-out, in the form the benchmark has always had: BENCH_SUBSCRIBERS
 * subscribers on one topic and one publisher, 100-byte bodies, QoS 0.
 *  - STOMP: the subscribers over WebSocket on /v1/ws?__token= (the
 *    media-service client), the publisher over STOMP TCP;
 *  - MQTT: subscribers and publisher over MQTT 3.1.1 TCP.
 * Two measurements: a fixed BENCH_RATE deliveries/s for BENCH_SECONDS
 * (latency publish → receipt, loss, server CPU per delivery), then as fast
 * as the subscribers keep up, with at most 40 messages outstanding.
 *
 * With several servers (the two-node cluster) the subscribers alternate
 * between them, the publisher is on the first, and CPU is all nodes'.
 * The clients all run in this process.
 */
import { openConn, type Conn, type Protocol } from '../gen/clients.js';
import { bodyTemplate, decode, decoded, stamp } from '../gen/payload.js';
import { LatencySample, quantile, Tally } from '../gen/tally.js';
import { cpuBetween, cpuSnapshot, verdict } from '../lib/cpu.js';
import type { Options } from '../lib/options.js';
import type { Measurement, Scenario } from '../lib/results.js';
import { endpointOf, type Target } from '../lib/target.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

export async function runFanout(servers: Target[], protocol: Protocol, o: Options): Promise<Measurement[]> {
  const first = servers[0]!;
  const n = o.subscribers;
  const cluster = servers.length > 1;
  const scenario: Scenario = cluster ? 'fan-out-cluster' : 'fan-out';
  const where = cluster ? `, half on each of ${servers.length} nodes (CPU: all nodes)` : '';
  const title =
    protocol === 'stomp'
      ? `fan-out · STOMP: ${n} WebSocket subscribers on one topic${where}, 1 TCP publisher`
      : `fan-out · MQTT 3.1.1/TCP: ${n} QoS 0 subscribers on one topic${where}, 1 publisher`;
  const topic = ['bench', 'fanout'];
  const tallies: Tally[] = [];
  const latency = new LatencySample();
  const closed: string[] = [];
  let received = 0;
  // Waiting for deliveries without polling: the receive handler wakes the waiter.
  let target = Infinity;
  let wake: (() => void) | undefined;
  const until = (count: number, timeoutMs: number): Promise<void> => {
    if (received >= count) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        target = Infinity;
        wake = undefined;
        resolve();
      }
      target = count;
      wake = done;
    });
  };
  const subs: Conn[] = [];
  const open = (server: Target, index: number, extra: { stompOverTcp?: boolean; stompTokenInUrl?: boolean }): Promise<Conn> =>
    openConn({ endpoint: endpointOf(server), protocol, index, idPrefix: `bench-fanout-${process.pid}`, ...extra });
  try {
    for (let i = 0; i < n; i++) {
      const c = await open(servers[i % servers.length]!, i, { stompTokenInUrl: true });
      const tally = new Tally();
      tallies.push(tally);
      c.onPayload = (buf, at, length) => {
        if (!decode(buf, at, length, o.body)) {
          tally.malformed++;
          return;
        }
        if (!tally.add(decoded.pub, decoded.seq)) return;
        received++;
        latency.add(nowUs() - decoded.timeUs);
        if (received >= target) wake?.();
      };
      c.onClose = (why) => closed.push(`subscriber: ${why}`);
      await c.subscribe(topic);
      subs.push(c);
    }
    const pub = await open(first, n, { stompOverTcp: true });
    pub.onClose = (why) => closed.push(`publisher: ${why}`);
    const enc = pub.encoder(topic, bodyTemplate(o.body));
    let seq = 0;
    const publish = (count: number): void => {
      const buf = Buffer.allocUnsafe(count * enc.bytes);
      const t = nowUs();
      for (let i = 0, at = 0; i < count; i++, at += enc.bytes) {
        stamp(buf, enc.place(buf, at), 0, seq++, t);
        enc.seal(buf, at);
      }
      pub.write(buf);
    };
    const drain = (expected: number): Promise<void> => until(expected, 10_000);
    const pids = servers.map((s) => s.pid);
    const measurement = (variant: string, figures: Record<string, number>, cpu: ReturnType<typeof cpuBetween>): Measurement => {
      const v = verdict(cpu, 'at most 40 messages outstanding');
      const notes = closed.length ? [`${closed.length} connections closed: ${closed.slice(0, 3).join('; ')}`] : [];
      const malformed = tallies.reduce((a, t) => a + t.malformed, 0);
      if (malformed) notes.push(`${malformed} bodies were not the generator's`);
      return { scenario, wire: protocol, server: first.kind, serverLabel: first.label, variant, title, figures, cpu, bound: v.bound, verdict: v.text, notes };
    };
    const unique = (): number => tallies.reduce((a, t) => a + t.unique, 0);
    const dups = (): number => tallies.reduce((a, t) => a + t.duplicates, 0);

    // Warm-up.
    for (let i = 0; i < 20; i++) publish(1);
    await drain(20 * n);

    // Fixed rate.
    const publishRate = o.rate / n;
    const total = Math.round(publishRate * o.seconds);
    const fixedStart = received;
    const dup0 = dups();
    latency.recording = true;
    const a0 = await cpuSnapshot(pids);
    const t0 = Date.now();
    for (let i = 0; i < total; i++) {
      const wait = t0 + (i * 1000) / publishRate - Date.now();
      if (wait > 0) await sleep(wait);
      publish(1);
    }
    await drain(fixedStart + total * n);
    const a1 = await cpuSnapshot(pids);
    latency.recording = false;
    const fixedGot = received - fixedStart;
    const lat = latency.take().sort();
    const fixedCpu = cpuBetween(a0, a1);
    const fixed = measurement(
      'fixed rate',
      {
        deliveries: fixedGot,
        lost: total * n - fixedGot,
        duplicates: dups() - dup0,
        latencyP50Ms: quantile(lat, 0.5) / 1000,
        latencyP99Ms: quantile(lat, 0.99) / 1000,
        serverCpuUsPerDelivery: (fixedCpu.serverCpuSeconds * 1e6) / Math.max(1, fixedGot),
        rate: o.rate,
      },
      fixedCpu,
    );
    fixed.title += `, fixed ${o.rate.toLocaleString('en-US')} deliveries/s`;

    // As fast as the subscribers keep up.
    const maxSeconds = Math.min(o.seconds, 5);
    const maxStart = received;
    const dup1 = dups();
    const unique1 = unique();
    const sentBefore = seq;
    const b0 = await cpuSnapshot(pids);
    const tm = Date.now();
    while (Date.now() - tm < maxSeconds * 1000) {
      publish(20);
      await until(maxStart + (seq - sentBefore - 40) * n, 5000);
    }
    const b1 = await cpuSnapshot(pids);
    const maxGot = received - maxStart;
    await drain(maxStart + (seq - sentBefore) * n);
    const maxCpu = cpuBetween(b0, b1);
    const max = measurement(
      'max rate',
      {
        deliveriesPerSecond: maxGot / maxCpu.seconds,
        lost: (seq - sentBefore) * n - (unique() - unique1),
        duplicates: dups() - dup1,
        serverCpuUsPerDelivery: (maxCpu.serverCpuSeconds * 1e6) / Math.max(1, maxGot),
        generatorCpuUsPerDelivery: (maxCpu.generatorCpuSeconds * 1e6) / Math.max(1, maxGot),
      },
      maxCpu,
    );
    max.title += ', as fast as they keep up';
    pub.close();
    return [fixed, max];
  } finally {
    for (const s of subs) s.close();
  }
}
