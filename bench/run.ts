/**
 * `npm run bench`: Herald alone, every scenario against a fresh server
 * process on loopback. See docs/benchmark.md for what each scenario does,
 * the options (BENCH_* environment variables) and how to read the output.
 *
 *   fan-out      1 publisher → BENCH_SUBSCRIBERS subscribers, STOMP and MQTT,
 *                at a fixed rate and as fast as they keep up
 *   p2p          BENCH_PAIRS publishers, each to its own subscriber
 *   fan-in       BENCH_PUBLISHERS publishers → 1 subscriber
 *   connections  BENCH_CONNECTIONS idle logged-in connections: connects/s,
 *                CPU per connect, RSS per connection, /healthz while held
 *   durable      POST /api/message/sendMessage to offline users, on SQLite
 *                and (when available) PostgreSQL
 *   cluster      the STOMP fan-out on a two-node cluster (PostgreSQL + Redis)
 */
import { header } from './lib/header.js';
import { readOptions, SCENARIOS } from './lib/options.js';
import { noiseLine, summarise, writeJson } from './lib/results.js';
import { stopServices } from './lib/services.js';
import { jobs, runJobs } from './lib/suite.js';
import { heraldTable } from './lib/table.js';

async function main(): Promise<void> {
  const o = readOptions({ runs: 1, scenarios: SCENARIOS });
  const head = header('Herald benchmark', o);
  try {
    const { measurements, failures } = await runJobs(jobs(o, false), o.runs);
    const summaries = summarise(measurements);
    const table = heraldTable(summaries);
    console.log(`\nSummary\n\n${table}\n`);
    const noise = noiseLine(measurements);
    console.log(noise + '\n');
    for (const f of failures) console.log(`FAILED: ${f}`);
    const file = writeJson('bench', { ...head, noise, measurements, failures, summaries: summaries.map(({ key, figures }) => ({ key, figures })), table });
    console.log(`Every figure: ${file}`);
    if (failures.length) process.exitCode = 1;
  } finally {
    stopServices();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
