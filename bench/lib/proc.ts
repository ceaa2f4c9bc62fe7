/**
 * What the kernel says about processes and the machine: CPU time and RSS of
 * a server from /proc/<pid>, the whole machine's busy time from /proc/stat
 * (so the output can say how much other processes used meanwhile), and
 * open-file limits.
 */
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

export const CLK_TCK = Number(execSync('getconf CLK_TCK').toString().trim()) || 100;
export const CORES = cpus().length;

/** User + system CPU seconds of a process, all its threads. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime + stime
}

/** Resident set size in bytes (VmRSS). */
export function rssBytesOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** CPU seconds the whole machine spent busy and in total since boot (all cores). */
export function machineCpuSeconds(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest times are inside user/nice)
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
}

/** Soft and hard limit on open files of a process ('self' for this one). */
export function openFileLimit(pid: number | 'self'): { soft: number; hard: number } {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  const m = /Max open files\s+(\S+)\s+(\S+)/.exec(limits);
  const n = (s: string | undefined): number => (s === undefined || s === 'unlimited' ? Infinity : Number(s));
  return { soft: n(m?.[1]), hard: n(m?.[2]) };
}

/** The kernel's ephemeral port range (ip_local_port_range). */
export function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo && hi && hi > lo) return [lo, hi];
  } catch {
    // the usual default below
  }
  return [32768, 60999];
}

export const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** This process's CPU seconds (user + system) so far. */
export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/**
 * A shell prefix that raises the soft open-file limit to the hard one and
 * then execs the command, so the PID stays the command's own. Used for the
 * servers and the generator's worker processes alike.
 */
export const RAISE_NOFILE = 'ulimit -Sn "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"';
