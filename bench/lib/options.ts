/** The benchmark's options, all from the environment, checked once. */
import { bodyBytes } from '../gen/payload.js';
import type { Protocol } from '../gen/clients.js';

function num(name: string, fallback: number, min = 0): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number ≥ ${min}, not "${raw}"`);
  return n;
}

function list<T extends string>(name: string, allowed: readonly T[], fallback: readonly T[]): T[] {
  const raw = process.env[name];
  if (!raw) return [...fallback];
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (!allowed.includes(i as T)) throw new Error(`${name}: "${i}" is not one of ${allowed.join(', ')}`);
  return items as T[];
}

export const SCENARIOS = ['fan-out', 'p2p', 'fan-in', 'connections', 'durable', 'cluster'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface Options {
  seconds: number;
  warmupSeconds: number;
  runs: number;
  body: number;
  window: number;
  /** Generator processes for p2p and fan-in; 0 = auto (one, and two again when one saturated). */
  workers: number;
  pairs: number;
  publishers: number;
  subscribers: number;
  rate: number;
  connections: number;
  connectConcurrency: number;
  connectWorkers: number;
  holdSeconds: number;
  httpClients: number;
  httpWorkers: number;
  users: number;
  scenarios: ScenarioName[];
  protocols: Protocol[];
  cluster: boolean;
  postgres: boolean;
}

export function readOptions(defaults: { runs: number; scenarios: readonly ScenarioName[] }): Options {
  const seconds = num('BENCH_SECONDS', 5, 1);
  const connections = num('BENCH_CONNECTIONS', 10_000, 1);
  return {
    seconds,
    warmupSeconds: num('BENCH_WARMUP_SECONDS', 1, 0),
    runs: num('BENCH_RUNS', defaults.runs, 1),
    body: bodyBytes(),
    window: num('BENCH_WINDOW', 16, 1),
    workers: process.env['BENCH_WORKERS'] === 'auto' ? 0 : num('BENCH_WORKERS', 0, 0),
    pairs: num('BENCH_PAIRS', 100, 1),
    publishers: num('BENCH_PUBLISHERS', 100, 1),
    subscribers: num('BENCH_SUBSCRIBERS', 1000, 1),
    rate: num('BENCH_RATE', 10_000, 1),
    connections,
    connectConcurrency: num('BENCH_CONNECT_CONCURRENCY', 64, 1),
    connectWorkers: num('BENCH_CONNECT_WORKERS', 2, 1),
    holdSeconds: num('BENCH_HOLD_SECONDS', connections >= 100_000 ? 60 : seconds, 0),
    httpClients: num('BENCH_HTTP_CLIENTS', 64, 1),
    httpWorkers: num('BENCH_HTTP_WORKERS', 2, 1),
    users: num('BENCH_USERS', 8, 1),
    scenarios: list('BENCH_SCENARIOS', SCENARIOS, defaults.scenarios),
    protocols: list('BENCH_PROTOCOLS', ['mqtt', 'stomp'] as const, ['mqtt', 'stomp']),
    cluster: process.env['BENCH_CLUSTER'] !== '0',
    postgres: process.env['BENCH_POSTGRES'] !== '0',
  };
}
