/**
 * What every scenario returns, repeated runs folded into median and spread,
 * the printed lines and the JSON file with every figure.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type { Bound, CpuReport } from './cpu.js';
import type { ServerKind } from './target.js';

export type Scenario = 'fan-out' | 'fan-out-cluster' | 'p2p' | 'fan-in' | 'connections' | 'durable-send';
export type Wire = 'mqtt' | 'stomp' | 'http';

export interface Measurement {
  scenario: Scenario;
  wire: Wire;
  server: ServerKind;
  serverLabel: string;
  /** e.g. "sqlite", "postgres", "fixed rate", "max rate". */
  variant?: string;
  /** One line that says what was measured. */
  title: string;
  figures: Record<string, number>;
  cpu?: CpuReport;
  bound?: Bound;
  verdict?: string;
  notes: string[];
  /** Which of the BENCH_RUNS repetitions. */
  run?: number;
}

export interface Summary {
  key: string;
  first: Measurement;
  runs: Measurement[];
  /** Per figure: median, min, max over the runs. */
  figures: Record<string, { median: number; min: number; max: number }>;
}

export function keyOf(m: Measurement): string {
  return [m.scenario, m.wire, m.server, m.variant ?? ''].join('|');
}

export function median(xs: number[]): number {
  const v = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export function summarise(all: Measurement[]): Summary[] {
  const groups = new Map<string, Measurement[]>();
  for (const m of all) {
    const k = keyOf(m);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(m);
  }
  return [...groups].map(([key, runs]) => {
    const figures: Summary['figures'] = {};
    for (const name of Object.keys(runs[0]!.figures)) {
      const xs = runs.map((r) => r.figures[name] ?? NaN).filter((x) => !Number.isNaN(x));
      figures[name] = { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
    }
    return { key, first: runs[0]!, runs, figures };
  });
}

/** 12345 → "12,345"; small numbers keep `digits` decimals. */
export function fmt(x: number, digits = 1): string {
  if (x === undefined || Number.isNaN(x)) return '–';
  if (!Number.isFinite(x)) return '∞';
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en-US');
  if (Math.abs(x) >= 100) return x.toFixed(0);
  return x.toFixed(digits);
}

/** "86.1k", "3,225", "11.8": compact for tables. */
export function short(x: number): string {
  if (Number.isNaN(x)) return '–';
  if (Number.isInteger(x) && Math.abs(x) < 10_000) return fmt(x, 0);
  if (Math.abs(x) >= 10_000) return `${(x / 1000).toFixed(Math.abs(x) >= 100_000 ? 0 : 1)}k`;
  return fmt(x);
}

/** "(runs 80.1k–90.2k, ±6 %)" for more than one run. */
export function spread(s: Summary, name: string): string {
  const f = s.figures[name];
  if (!f || s.runs.length < 2 || Number.isNaN(f.median)) return '';
  const pct = f.median ? (100 * (f.max - f.min)) / 2 / Math.abs(f.median) : 0;
  return ` (${s.runs.length} runs ${short(f.min)}–${short(f.max)}, ±${pct.toFixed(0)} %)`;
}

/** Prints one measurement as it finishes. */
export function printMeasurement(m: Measurement, run: number, runs: number): void {
  const tag = runs > 1 ? ` [run ${run}/${runs}]` : '';
  console.log(`\n  ${m.title} — ${m.serverLabel}${tag}`);
  if (Object.keys(m.figures).length) for (const line of describe(m)) console.log(`    ${line}`);
  if (m.verdict) console.log(`    CPU: ${m.verdict}`);
  for (const n of m.notes) console.log(`    note: ${n}`);
}

function describe(m: Measurement): string[] {
  const f = m.figures;
  const lat = (): string => (f['latencyP50Ms'] !== undefined ? `; latency p50 ${fmt(f['latencyP50Ms'], 2)} ms, p99 ${fmt(f['latencyP99Ms']!, 2)} ms` : '');
  switch (m.scenario) {
    case 'fan-out':
    case 'fan-out-cluster':
      if (m.variant === 'fixed rate')
        return [
          `${fmt(f['deliveries']!)} deliveries, lost ${fmt(f['lost']!, 0)}, duplicates ${fmt(f['duplicates']!, 0)}${lat()}`,
          `server CPU ${fmt(f['serverCpuUsPerDelivery']!, 2)} µs per delivery`,
        ];
      return [
        `${fmt(f['deliveriesPerSecond']!)} deliveries/s, lost ${fmt(f['lost']!, 0)}, duplicates ${fmt(f['duplicates']!, 0)}`,
        `server CPU ${fmt(f['serverCpuUsPerDelivery']!, 2)} µs per delivery, generator ${fmt(f['generatorCpuUsPerDelivery']!, 2)} µs`,
      ];
    case 'p2p':
    case 'fan-in':
      return [
        `${fmt(f['deliveriesPerSecond']!)} deliveries/s, lost ${fmt(f['lost']!, 0)}, duplicates ${fmt(f['duplicates']!, 0)}, reordered ${fmt(f['reordered']!, 0)}${lat()}`,
        `server CPU ${fmt(f['serverCpuUsPerDelivery']!, 2)} µs per delivery, generator ${fmt(f['generatorCpuUsPerDelivery']!, 2)} µs`,
      ];
    case 'connections':
      return [
        `${fmt(f['connections']!)} connections opened (${fmt(f['failed']!, 0)} failed) at ${fmt(f['connectsPerSecond']!)} connects/s; connect p50 ${fmt(f['connectP50Ms']!, 2)} ms, p99 ${fmt(f['connectP99Ms']!, 2)} ms`,
        `server CPU ${fmt(f['serverCpuUsPerConnect']!)} µs per connect; RSS ${fmt(f['rssKiBPerConnection']!, 2)} KiB per connection (${fmt(f['rssMiBHeld']!)} MiB held)`,
        `held ${fmt(f['holdSeconds']!, 0)} s: ${fmt(f['closedDuringHold']!, 0)} closed meanwhile, server CPU ${fmt(f['holdServerPercent']!)} % of a core` +
          (f['healthzP99Ms'] !== undefined ? `, /healthz p50 ${fmt(f['healthzP50Ms']!, 2)} ms p99 ${fmt(f['healthzP99Ms'], 2)} ms` : '') +
          `, MQTT ping p99 ${fmt(f['pingP99Ms']!, 2)} ms`,
      ];
    case 'durable-send':
      return [
        `${fmt(f['messagesPerSecond']!)} messages/s acknowledged (${fmt(f['errors']!, 0)} errors); stored ${fmt(f['stored']!, 0)} of ${fmt(f['acknowledged']!, 0)} acknowledged${lat()}`,
        `server CPU ${fmt(f['serverCpuUsPerMessage']!)} µs per message, generator ${fmt(f['generatorCpuUsPerMessage']!)} µs`,
      ];
  }
}

/** How busy the rest of the machine was while measuring: other processes' CPU, averaged over the measurements. */
export function noiseLine(ms: Measurement[]): string {
  const other = ms.filter((m) => m.cpu).map((m) => m.cpu!.otherPercent);
  if (!other.length) return '';
  const avg = other.reduce((a, b) => a + b, 0) / other.length;
  const cores = ms.find((m) => m.cpu)!.cpu!.cores;
  const quiet = avg < 10 ? 'a quiet machine' : avg < 30 ? 'some noise' : 'a busy machine: the figures are noisy, re-run on a quiet one for steady figures';
  return `Other processes used ${avg.toFixed(0)} % of a core on average while measuring (least ${Math.min(...other).toFixed(0)} %, most ${Math.max(...other).toFixed(0)} %, of ${cores * 100} %): ${quiet}.`;
}

export function machineLine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
}

/** Writes the JSON file under test-output/ and returns its path. */
export function writeJson(name: string, content: unknown): string {
  mkdirSync('test-output', { recursive: true });
  const stamp = new Date().toISOString().replace(/[:]/g, '-').replace(/\..*/, '');
  const path = join('test-output', `${name}-${stamp}.json`);
  writeFileSync(path, JSON.stringify(content, (_, v: unknown) => (v instanceof Float64Array ? undefined : v), 2) + '\n');
  return path;
}
