/**
 * `npm run bench:compare`: Herald and Mosquitto on the same machine with the
 * same generator, taking turns scenario by scenario (Mosquitto only where
 * MQTT applies), BENCH_RUNS times (3), then a table of medians, spreads and
 * the ratios Herald ÷ Mosquitto, with the goals of issue 16, and a JSON file
 * with every figure under test-output/. Mosquitto is installed from
 * Debian's packages when missing. See docs/benchmark.md.
 */
import { header } from './lib/header.js';
import { ensureMosquitto, mosquittoAuth, mosquittoVersion } from './lib/mosquitto.js';
import { readOptions } from './lib/options.js';
import { noiseLine, summarise, writeJson } from './lib/results.js';
import { stopServices } from './lib/services.js';
import { jobs, runJobs } from './lib/suite.js';
import { comparisonTable } from './lib/table.js';

async function main(): Promise<void> {
  const o = readOptions({ runs: 3, scenarios: ['fan-out', 'p2p', 'fan-in', 'connections', 'durable'] });
  const bin = ensureMosquitto();
  const head = header('Herald and Mosquitto, side by side', o);
  const mosquitto = { binary: bin, version: mosquittoVersion(bin), auth: mosquittoAuth() };
  console.log(
    `  Mosquitto ${mosquitto.version} (${mosquitto.auth === 'anonymous' ? 'allow_anonymous true' : 'password file'}); Herald's clients log in with tokens from POST /v1/login`,
  );
  try {
    const { measurements, failures } = await runJobs(jobs(o, true), o.runs);
    const summaries = summarise(measurements);
    const { markdown, rows } = comparisonTable(summaries, o.connections);
    console.log(`\nComparison (${o.runs} run(s) each)\n\n${markdown}\n`);
    const noise = noiseLine(measurements);
    console.log(noise + '\n');
    for (const f of failures) console.log(`FAILED: ${f}`);
    const file = writeJson('bench-compare', {
      ...head,
      mosquitto,
      noise,
      measurements,
      failures,
      summaries: summaries.map(({ key, figures }) => ({ key, figures })),
      comparison: rows,
      table: markdown,
    });
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
