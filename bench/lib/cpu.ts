/**
 * CPU over a measured interval, for the server (all its threads, from
 * /proc), each generator process (the coordinator and its workers, from
 * process.cpuUsage) and the whole machine (/proc/stat, so what other
 * processes took meanwhile shows), and the verdict on what saturated.
 */
import type { WorkerPool } from '../gen/pool.js';
import { CORES, cpuSecondsOf, machineCpuSeconds, nowUs, selfCpuSeconds } from './proc.js';

export interface CpuSnapshot {
  us: number;
  server: number;
  generators: number[];
  machineBusy: number;
}

export interface CpuReport {
  seconds: number;
  serverCpuSeconds: number;
  /** Percent of one core. */
  serverPercent: number;
  /** Each generator process, percent of one core: the coordinator first, then the workers. */
  generatorPercents: number[];
  generatorCpuSeconds: number;
  /** Everything else on the machine meanwhile, percent of one core. */
  otherPercent: number;
  machinePercent: number;
  cores: number;
}

export type Bound = 'server' | 'generator' | 'machine' | 'none';

/** Now: the servers' CPU, this process's, and the workers' (asked of `pool`, or given when just asked). */
export async function cpuSnapshot(serverPids: number[], workers?: WorkerPool | number[]): Promise<CpuSnapshot> {
  if (workers && !Array.isArray(workers)) workers = await workers.cpu();
  return {
    us: nowUs(),
    server: serverPids.reduce((sum, pid) => sum + cpuSecondsOf(pid), 0),
    generators: [selfCpuSeconds(), ...(workers ?? [])],
    machineBusy: machineCpuSeconds().busy,
  };
}

export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot): CpuReport {
  const seconds = (b.us - a.us) / 1e6;
  const pct = (s: number): number => (100 * s) / Math.max(1e-9, seconds);
  const gens = b.generators.map((g, i) => g - (a.generators[i] ?? 0));
  const server = b.server - a.server;
  const gen = gens.reduce((x, y) => x + y, 0);
  const machine = b.machineBusy - a.machineBusy;
  return {
    seconds,
    serverCpuSeconds: server,
    serverPercent: pct(server),
    generatorPercents: gens.map(pct),
    generatorCpuSeconds: gen,
    otherPercent: Math.max(0, pct(machine - server - gen)),
    machinePercent: pct(machine),
    cores: CORES,
  };
}

/** Below this much of one core the server is not the limit; at or above it, it is. */
const SERVER_SATURATED = 90;
/** A generator process at or above this much of one core is the limit. */
const GENERATOR_SATURATED = 95;

/** `limit`: what bounds the rate when nothing saturates (the scenario's in-flight limit). */
export function verdict(c: CpuReport, limit = 'BENCH_WINDOW messages in flight per publisher'): { bound: Bound; text: string } {
  const s = Math.round(c.serverPercent);
  const gens = c.generatorPercents.map(Math.round);
  const others = Math.round(c.otherPercent);
  const detail = `server ${s} %, generator ${gens.join(' + ')} %, other processes ${others} % of a core`;
  if (c.serverPercent >= SERVER_SATURATED) return { bound: 'server', text: `server-bound (${detail})` };
  const hot = Math.max(...c.generatorPercents);
  if (hot >= GENERATOR_SATURATED)
    return {
      bound: 'generator',
      text: `GENERATOR-BOUND: a generator process used ${Math.round(hot)} % of a core while the server used ${s} %; the figure is a lower bound of the server's capacity (${detail})`,
    };
  if (c.machinePercent >= 0.95 * c.cores * 100)
    return { bound: 'machine', text: `MACHINE-BOUND: all ${c.cores} cores were busy, the server got only ${s} % of one (${detail})` };
  return { bound: 'none', text: `nothing saturated: the rate is bounded by latency with ${limit} (${detail})` };
}
