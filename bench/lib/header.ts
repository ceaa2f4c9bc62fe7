/** The lines every run starts with: when, on what, with which options, how busy the machine already was. */
import { loadavg } from 'node:os';
import type { Options } from './options.js';
import { openFileLimit } from './proc.js';
import { machineLine } from './results.js';

export function header(title: string, o: Options): Record<string, unknown> {
  const date = new Date().toISOString();
  const load = loadavg().map((x) => Number(x.toFixed(2)));
  const nofile = openFileLimit('self');
  console.log(`\n${title} — ${date.slice(0, 10)}, ${machineLine()}`);
  console.log(`  load average before starting: ${load.join(' ')} (other processes on the machine add noise; a quiet machine gives steadier figures)`);
  console.log(
    `  ${o.body}-byte bodies, QoS 0; ${o.seconds} s measured per scenario after ${o.warmupSeconds} s warm-up, ${o.runs} run(s); ` +
      `window ${o.window} messages per publisher; generator processes for p2p and fan-in: ${o.workers || 'auto (1, or 2 when 1 saturates)'}; ${o.users} users logged in with tokens`,
  );
  console.log(`  open files: generator ${nofile.soft} (hard ${nofile.hard}); servers and workers start with their soft limit raised to the hard one`);
  return { date, machine: machineLine(), loadAverage: load, options: o, openFiles: nofile };
}
