/**
 * The scenarios as jobs: each starts a fresh server (so no scenario
 * inherits another's memory or state), measures, and stops it by its PID.
 * `runJobs` repeats them BENCH_RUNS times, Herald's and Mosquitto's version
 * of a scenario one after the other so both see the same machine.
 */
import { loadavg } from 'node:os';
import type { Protocol } from '../gen/clients.js';
import { runConnections } from '../scenarios/connections.js';
import { runDurable } from '../scenarios/durable.js';
import { runFanout } from '../scenarios/fanout.js';
import { runFlow } from '../scenarios/flows.js';
import { startHerald } from './herald.js';
import { startMosquitto } from './mosquitto.js';
import type { Options, ScenarioName } from './options.js';
import { printMeasurement, type Measurement } from './results.js';
import { services } from './services.js';
import type { ServerKind, Target } from './target.js';

export interface Job {
  /** Jobs with the same group are one scenario on different servers, run back to back. */
  group: string;
  server: ServerKind;
  run(): Promise<Measurement[]>;
}

async function withServer(start: () => Promise<Target>, body: (t: Target) => Promise<Measurement[]>): Promise<Measurement[]> {
  const t = await start();
  try {
    return await body(t);
  } finally {
    await t.stop();
  }
}

const herald = (o: Options, env?: Record<string, string>) => () => startHerald({ users: o.users, env });
const mosquitto = (o: Options) => () => startMosquitto({ users: o.users });

function skipped(scenario: Measurement['scenario'], wire: Measurement['wire'], title: string, why: string): Measurement {
  return { scenario, wire, server: 'herald', serverLabel: 'Herald', title, figures: {}, notes: [`skipped: ${why}`] };
}

/** The jobs for the chosen scenarios; `withMosquitto` adds Mosquitto's MQTT runs beside Herald's. */
export function jobs(o: Options, withMosquitto: boolean): Job[] {
  const out: Job[] = [];
  const per = (name: ScenarioName, make: (server: ServerKind, p: Protocol) => Job | undefined): void => {
    if (!o.scenarios.includes(name)) return;
    for (const p of o.protocols) {
      for (const server of ['herald', 'mosquitto'] as const) {
        if (server === 'mosquitto' && (!withMosquitto || p !== 'mqtt')) continue;
        const j = make(server, p);
        if (j) out.push(j);
      }
    }
  };
  const start = (server: ServerKind): (() => Promise<Target>) => (server === 'herald' ? herald(o) : mosquitto(o));
  per('fan-out', (server, p) => ({ group: `fan-out ${p}`, server, run: () => withServer(start(server), (t) => runFanout([t], p, o)) }));
  per('p2p', (server, p) => ({ group: `p2p ${p}`, server, run: () => withServer(start(server), async (t) => [await runFlow('p2p', t, p, o)]) }));
  per('fan-in', (server, p) => ({ group: `fan-in ${p}`, server, run: () => withServer(start(server), async (t) => [await runFlow('fan-in', t, p, o)]) }));
  per('connections', (server, p) => ({
    group: `connections ${p}`,
    server,
    run: () => withServer(start(server), async (t) => [await runConnections(t, p, o)]),
  }));
  if (o.scenarios.includes('durable')) {
    out.push({
      group: 'durable sqlite',
      server: 'herald',
      run: () =>
        withServer(herald(o, { HERALD_SQLITE_SYNCHRONOUS: 'FULL' }), async (t) => [
          await runDurable(t, 'sqlite', 'SQLite with sqliteSynchronous=FULL (the default: a commit survives power loss)', o),
        ]),
    });
    if (o.postgres)
      out.push({
        group: 'durable postgres',
        server: 'herald',
        run: async () => {
          const svc = await services();
          const title = 'durable-send · HTTP on PostgreSQL';
          if (!svc) return [skipped('durable-send', 'http', title, 'no PostgreSQL (set HERALD_TEST_DATABASE_URL, or let scripts/test-services.sh install it)')];
          const db = await svc.newDatabase();
          const note = `${await svc.durability()}, from ${svc.origin}`;
          return withServer(herald(o, { HERALD_DATABASE_URL: db }), async (t) => [await runDurable(t, 'postgres', note, o)]);
        },
      });
  }
  if (o.scenarios.includes('cluster') && o.cluster) {
    out.push({
      group: 'fan-out cluster',
      server: 'herald',
      run: async () => {
        const svc = await services();
        const title = 'fan-out · STOMP on a two-node cluster';
        if (!svc) return [skipped('fan-out-cluster', 'stomp', title, 'no PostgreSQL and Redis')];
        const env = { HERALD_DATABASE_URL: await svc.newDatabase(), HERALD_REDIS_URL: svc.redis, HERALD_CLUSTER_NAME: 'bench' + process.pid + Date.now() };
        const a = await startHerald({ users: o.users, env });
        let b: Target | undefined;
        try {
          // The second node logs in the same users: their tokens live in the shared store.
          b = await startHerald({ users: 0, env });
          b.accounts = a.accounts;
          await new Promise((r) => setTimeout(r, 500)); // both nodes on the bus
          return await runFanout([a, b], 'stomp', o);
        } finally {
          await b?.stop();
          await a.stop();
        }
      },
    });
  }
  return out;
}

export interface RunOutcome {
  measurements: Measurement[];
  /** Jobs that threw: what and why. */
  failures: string[];
}

export async function runJobs(list: Job[], runs: number): Promise<RunOutcome> {
  const measurements: Measurement[] = [];
  const failures: string[] = [];
  for (let r = 1; r <= runs; r++) {
    if (runs > 1) console.log(`\n— run ${r} of ${runs} (load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}) —`);
    for (const job of list) {
      try {
        for (const m of await job.run()) {
          printMeasurement(m, r, runs);
          measurements.push({ ...m, run: r });
        }
      } catch (err) {
        console.log(`\n  ${job.group} on ${job.server} FAILED: ${(err as Error).stack ?? String(err)}`);
        failures.push(`run ${r}, ${job.group} on ${job.server}: ${(err as Error).message}`);
      }
    }
  }
  return { measurements, failures };
}
