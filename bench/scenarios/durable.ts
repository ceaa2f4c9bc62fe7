/**
 * durable-send: the message service's POST /api/message/sendMessage to
 * offline users (the benchmark's users, none connected), which Herald
 * answers only after the message is committed. BENCH_HTTP_CLIENTS
 * keep-alive connections over BENCH_HTTP_WORKERS generator processes, one
 * request in flight per connection. Afterwards the store is asked how many
 * messages it holds, so an acknowledged message that was not stored shows
 * as lost.
 */
import { WorkerPool } from '../gen/pool.js';
import type { SendCounts, SendFinal } from '../gen/sender.js';
import { quantile } from '../gen/tally.js';
import { cpuBetween, cpuSnapshot, verdict } from '../lib/cpu.js';
import { api, login } from '../lib/herald.js';
import type { Options } from '../lib/options.js';
import type { Measurement } from '../lib/results.js';
import type { Target } from '../lib/target.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function storedMessages(target: Target): Promise<number> {
  const page = await api<{ total: number }>(`http://127.0.0.1:${target.httpPort}`, 'GET', '/api/message/getMessagePage?page=1&size=1', target.adminToken);
  return page.total;
}

export function httpClientKind(): 'raw' | 'agent' {
  const v = process.env['BENCH_HTTP_CLIENT'] ?? 'raw';
  if (v !== 'raw' && v !== 'agent') throw new Error(`BENCH_HTTP_CLIENT must be raw or agent, not "${v}"`);
  return v;
}

export async function runDurable(target: Target, store: 'sqlite' | 'postgres', storeNote: string, o: Options): Promise<Measurement> {
  if (!target.httpPort || !target.adminToken) throw new Error('durable-send needs Herald');
  const client = httpClientKind();
  const title = `durable-send · HTTP: POST /api/message/sendMessage to offline users, acknowledged after commit, on ${store === 'sqlite' ? 'SQLite' : 'PostgreSQL'}`;
  const workers = Math.min(o.httpWorkers, o.httpClients);
  const receivers = target.accounts.map((a) => a.username);
  const stored0 = await storedMessages(target);
  // A back end sends as a service user, as real ones do (an admin's sends are also written to the audit log).
  const base = `http://127.0.0.1:${target.httpPort}`;
  const name = `bench-service-${Date.now().toString(36)}`;
  await api(base, 'POST', '/api/users', target.adminToken, { name, password: 'bench-service-password', role: 'service' });
  const serviceToken = await login(base, name, 'bench-service-password');
  const pool = await WorkerPool.start(workers);
  try {
    const share = (i: number): number => Math.floor(o.httpClients / workers) + (i < o.httpClients % workers ? 1 : 0);
    await pool.all((i) => ({
      t: 'send-start',
      spec: { port: target.httpPort!, token: serviceToken, receivers, clients: share(i), body: o.body, client, pub: i },
    }));
    await sleep(o.warmupSeconds * 1000);
    const counts = (): Promise<SendCounts[]> => pool.all<SendCounts>({ t: 'send-counts' });
    const c0 = await counts();
    const s0 = await cpuSnapshot([target.pid], c0.map((c) => c.cpuSeconds));
    await pool.all({ t: 'send-record', on: true });
    await sleep(o.seconds * 1000);
    const c1 = await counts();
    const s1 = await cpuSnapshot([target.pid], c1.map((c) => c.cpuSeconds));
    const finals = await pool.all<SendFinal>({ t: 'send-stop' });
    const stored = (await storedMessages(target)) - stored0;

    const acked = c1.reduce((a, c) => a + c.acked, 0) - c0.reduce((a, c) => a + c.acked, 0);
    const acknowledged = finals.reduce((a, f) => a + f.acked, 0);
    const errors = finals.reduce((a, f) => a + f.errors, 0);
    const cpu = cpuBetween(s0, s1);
    const v = verdict(cpu, `${o.httpClients} requests in flight (each waits for its commit)`);
    const lat = Float64Array.from(finals.flatMap((f) => Array.from(f.latenciesUs))).sort();
    const notes = [storeNote + (store === 'postgres' ? ' (PostgreSQL\'s own CPU counts under "other processes")' : ''), `HTTP client: ${client}, ${o.httpClients} keep-alive connections in ${workers} generator processes`];
    for (const f of finals) for (const e of f.errorSamples) notes.push(`send failed: ${e}`);
    if (stored < acknowledged) notes.push(`LOST: ${acknowledged - stored} acknowledged messages are not in the store`);
    return {
      scenario: 'durable-send',
      wire: 'http',
      server: target.kind,
      serverLabel: target.label,
      variant: store,
      title,
      figures: {
        messagesPerSecond: acked / cpu.seconds,
        serverCpuUsPerMessage: (cpu.serverCpuSeconds * 1e6) / Math.max(1, acked),
        generatorCpuUsPerMessage: (cpu.generatorCpuSeconds * 1e6) / Math.max(1, acked),
        acknowledged,
        stored,
        lost: Math.max(0, acknowledged - stored),
        errors,
        latencyP50Ms: quantile(lat, 0.5) / 1000,
        latencyP99Ms: quantile(lat, 0.99) / 1000,
        httpClients: o.httpClients,
      },
      cpu,
      bound: v.bound,
      verdict: v.text,
      notes,
    };
  } finally {
    await pool.stop();
  }
}
